#!/bin/bash
# Runs one Go fuzz target for a bounded time: scripts/fuzz.sh TARGET PKG TIME
# (e.g. FuzzParse ./internal/config/ 20s).
#
# It fails when the fuzzer finds an input that fails the target (Go writes
# it to PKG/testdata/fuzz/TARGET/). Inputs are not minimized: a failing
# one is written at once, instead of being lost when the time runs out
# during minimization, and new coverage is not minimized for up to a
# minute either. So a bare "context deadline exceeded" with no input
# written is only Go's fuzz coordinator missing its own -fuzztime deadline,
# which busy machines hit (golang/go#75804): that is reported and not
# counted as a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:?usage: $0 TARGET PKG TIME}
pkg=${2:?usage: $0 TARGET PKG TIME}
time=${3:?usage: $0 TARGET PKG TIME}
GO=${GO:-go}
corpus="$pkg/testdata/fuzz/$target"

inputs() { [ -d "$corpus" ] && ls -A "$corpus" | sort || true; }
before=$(inputs)
log=$(mktemp)
trap 'rm -f "$log"' EXIT

status=0
"$GO" test -run '^$' -fuzz "^$target\$" -fuzztime "$time" -fuzzminimizetime 0 "$pkg" 2>&1 | tee "$log" || status=$?
[ "$status" = 0 ] && exit 0

new=$(comm -13 <(echo "$before") <(inputs))
if [ -z "$new" ] && grep -q '^    context deadline exceeded$' "$log" && ! grep -q 'Failing input written' "$log"; then
  echo "fuzz: $target found nothing; the failure above is Go's fuzz coordinator missing its -fuzztime deadline (golang/go#75804), not a finding" >&2
  exit 0
fi
if [ -n "$new" ]; then
  echo "fuzz: $target failed on the input(s) in $corpus/: $new" >&2
  echo "fuzz: replay with: $GO test -run '$target/<name>' $pkg" >&2
fi
exit "$status"
