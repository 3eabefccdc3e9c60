#!/bin/bash
# Checks every golden domain XML (what devbox asks libvirt to define, one
# file per arch and accel) against libvirt's own schema, so a template
# change libvirt would refuse fails here, without a daemon or a VM.
# virt-xml-validate comes with libvirt's clients and runs xmllint (Debian:
# libvirt-clients and libxml2-utils; scripts/host-setup.sh installs both).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in virt-xml-validate xmllint; do
  if ! command -v "$tool" >/dev/null; then
    echo "validate-golden: $tool not found (hint: scripts/host-setup.sh installs it: Debian's libvirt-clients and libxml2-utils)" >&2
    exit 1
  fi
done

shopt -s nullglob
files=(vm/libvirt/testdata/domain-*.xml)
if [ ${#files[@]} = 0 ]; then
  echo "validate-golden: no golden domain files in vm/libvirt/testdata (hint: go test ./vm/libvirt/ -update)" >&2
  exit 1
fi

failed=0
for f in "${files[@]}"; do
  if ! out=$(virt-xml-validate "$f" domain 2>&1); then
    echo "$out" >&2
    echo "validate-golden: $f does not validate against libvirt's domain schema (hint: fix templates/domain.xml.tmpl, then go test ./vm/libvirt/ -update)" >&2
    failed=1
  fi
done
if [ "$failed" = 1 ]; then
  exit 1
fi
echo "validate-golden: ${#files[@]} golden domain files validate against libvirt's schema"
