#!/bin/bash
# Fails when a file tracked by git is a compiled binary (ELF, Mach-O, PE),
# naming each one: built programs belong in bin/ (ignored), not in git.
set -euo pipefail
cd "$(dirname "$0")/.."

found=0
while IFS= read -r -d '' f; do
  # Deleted in the work tree, or a symlink (its target is checked itself).
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  magic=$(head -c 4 -- "$f" | od -An -tx1 | tr -d ' \n')
  kind=
  case "$magic" in
    7f454c46) kind=ELF ;;
    feedface | feedfacf | cefaedfe | cffaedfe) kind=Mach-O ;;
    cafebabe) kind="Mach-O universal (or Java class)" ;;
    4d5a*) kind="PE (Windows)" ;;
  esac
  if [ -n "$kind" ]; then
    echo "check-tracked: $f is a compiled $kind binary (hint: git rm --cached '$f', and ignore it in .gitignore)" >&2
    found=1
  fi
done < <(git ls-files -z)

if [ "$found" = 1 ]; then
  exit 1
fi
echo "check-tracked: no compiled binaries among $(git ls-files | wc -l) tracked files"
