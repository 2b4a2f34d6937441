#!/usr/bin/env bash
# Checks that every library folder includes only the folders of the libraries it links
# (directly or transitively), as docs/architecture.md promises.
#
# Usage: scripts/check-layering.sh MAP [SOURCE_ROOT]
#   MAP: the build's layering.txt (written by CMake: "folder library linked-p2p-libraries..."
#        per line); SOURCE_ROOT defaults to this script's project root.
# Prints every violation as `file:line: folder 'x' (p2p_x) includes "y/..." but does not link
# p2p_y` and exits 1 if there is one; exits 0 when the layering holds, 2 on bad usage.
set -euo pipefail
map=${1:?usage: check-layering.sh MAP [SOURCE_ROOT]}
root=${2:-$(cd "$(dirname "$0")/.." && pwd)}
[ -r "$map" ] || { echo "check-layering.sh: cannot read map '$map' (configure with CMake first)" >&2; exit 2; }

declare -A lib_of_folder folder_of_lib direct
while read -r folder lib deps; do
  [ -n "$folder" ] || continue
  lib_of_folder[$folder]=$lib
  folder_of_lib[$lib]=$folder
  direct[$lib]="$deps"
done <"$map"

# closure LIB: LIB and every p2p library it reaches through links.
closure() {
  local -A seen=()
  local todo=("$1") l
  while [ ${#todo[@]} -gt 0 ]; do
    l=${todo[-1]}; unset 'todo[-1]'
    [ -n "${seen[$l]:-}" ] && continue
    seen[$l]=1
    for d in ${direct[$l]:-}; do todo+=("$d"); done
  done
  echo "${!seen[@]}"
}

# owner PATH: sets OWNER to the library whose folder is the longest prefix of PATH ("" if none).
# No subshell: it runs once per include line.
owner() {
  local path=$1 best="" f
  for f in "${!lib_of_folder[@]}"; do
    if [[ "$path" == "$f/"* ]] && [ ${#f} -gt ${#best} ]; then best=$f; fi
  done
  OWNER=""
  [ -z "$best" ] || OWNER=${lib_of_folder[$best]}
}

violations=0
for folder in "${!lib_of_folder[@]}"; do
  lib=${lib_of_folder[$folder]}
  allowed=" $(closure "$lib") "
  while IFS= read -r file; do
    rel=${file#"$root"/}
    owner "$rel"
    [ "$OWNER" = "$lib" ] || continue  # a nested library's file is checked as its own
    while IFS=: read -r line inc; do
      owner "$inc"
      target=$OWNER
      [ -n "$target" ] || continue  # not one of our library folders
      if [[ "$allowed" != *" $target "* ]]; then
        echo "$rel:$line: folder '$folder' ($lib) includes \"$inc\" but does not link $target"
        violations=$((violations + 1))
      fi
    done < <(grep -n -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" |
               sed -E 's/^([0-9]+):[^"]*"([^"]*)".*/\1:\2/')
  done < <(find "$root/$folder" -type f \( -name '*.h' -o -name '*.cc' \))
done

if [ "$violations" -gt 0 ]; then
  echo "check-layering.sh: $violations include(s) cross the layering; link the library or move the code" >&2
  exit 1
fi
echo "check-layering.sh: ${#lib_of_folder[@]} libraries, layering holds"
