#!/usr/bin/env bash
# Every source with code behind a CUDA/NCCL guard is in cmake/gpu_guarded.cmake's list, and the
# list was compiled on this build (the configure step writes what it did to LIST_FILE).
#   gpu_guarded_test.sh SOURCE_DIR LIST_FILE SCRATCH_DIR
# The check first proves on a scratch tree that it fails when a guarded file is missing from the
# list, so a broken check cannot pass.
set -uo pipefail
src=$1 list=$2 scratch=$3

guarded_files() {  # the sources under $1 with an #if/#ifdef/#ifndef/#elif on a GPU guard
  (cd "$1" && grep -rlE --include='*.cpp' --include='*.cc' --include='*.h' --include='*.cu' \
     '^[[:space:]]*#[[:space:]]*(if|ifdef|ifndef|elif)\b.*\b(EVL_HAVE_NCCL|EVL_TORCH_CUDA)\b' \
     --exclude-dir=build --exclude-dir='build-*' --exclude-dir=.git --exclude-dir=.gpu-bundle --exclude-dir=tests . |
   sed 's|^\./||' | sort)
}
missing_from_list() {  # guarded files of tree $1 not listed in $2
  comm -23 <(guarded_files "$1") <(grep -v '^#' "$2" | sed '/^$/d' | sort)
}

# The check on a tree made to break it.
rm -rf "$scratch" && mkdir -p "$scratch/tree/a"
printf '#ifdef EVL_HAVE_NCCL\nint x;\n#endif\n' > "$scratch/tree/a/listed.cpp"
printf '  #  if defined(EVL_TORCH_CUDA)\nint y;\n#endif\n' > "$scratch/tree/a/unlisted.cpp"
printf '# compiled\na/listed.cpp\n' > "$scratch/list.txt"
if [ "$(missing_from_list "$scratch/tree" "$scratch/list.txt")" != "a/unlisted.cpp" ]; then
  echo "FAIL: the check does not find a guarded file missing from the list"; exit 1
fi

status=0
missing=$(missing_from_list "$src" "$list")
if [ -n "$missing" ]; then
  echo "FAIL: sources with CUDA/NCCL guards that cmake/gpu_guarded.cmake does not compile:"
  echo "$missing" | sed 's/^/  /'
  status=1
fi
for f in $(grep -v '^#' "$list"); do
  [ -f "$src/$f" ] || { echo "FAIL: cmake/gpu_guarded.cmake lists $f, which does not exist"; status=1; }
done
state=$(head -1 "$list")
case "$state" in
  "# compiled"*) ;;
  *) if [ "${EVL_ALLOW_SKIPS:-}" = 1 ]; then echo "allowed skip: ${state#\# }"; exit 77; fi
     echo "FAIL: the guarded code was ${state#\# } (the CUDA toolkit's headers belong on every build machine;" \
          "EVL_ALLOW_SKIPS=1 to allow)"; status=1 ;;
esac
[ $status -eq 0 ] && echo "ok: $(grep -vc '^#' "$list") guarded sources, all listed; ${state#\# }"
exit $status
