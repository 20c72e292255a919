#!/bin/bash
# Start-up at Kinetics-400 list size on one machine: a 240,000-line train list and a 20,000-line val
# list of distinct paths (symlinks to a few synthetic videos), then
#   1. `evl config --check` (preflight reads every line of both lists),
#   2. `evl launch -n NP -- train` until the first step is logged: seconds from launch, each rank's
#      peak RSS at that moment, and how many times each list was opened (inotifywait, if installed).
# What one machine cannot show is the point of reading the lists once (hundreds of ranks on shared
# storage); the opens say how the reads scale with the ranks.
#   bench/k400_startup.sh [--evl build/launcher/evl] [--np 2] [--work /tmp/evl-k400-startup]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
evl=$here/../build/launcher/evl
np=2
work=/tmp/evl-k400-startup
while [[ $# -gt 0 ]]; do
  case $1 in
    --evl) evl=$2; shift 2 ;;
    --np) np=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    *) echo "k400_startup.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -x $evl ]] || { echo "k400_startup.sh: no evl binary at $evl (build first)" >&2; exit 2; }
mkdir -p "$work"
if [[ ! -f $work/lists/train.txt ]]; then
  "$evl" data synth --out "$work/src" --classes 4 --videos 16 --frames 32 --size 48x48 >/dev/null
  /usr/bin/python3 - "$work" <<'PY'
import os, sys
work = sys.argv[1]
src = sorted("videos/" + f for f in os.listdir(work + "/src/videos") if f.endswith(".mp4"))
os.makedirs(work + "/lists", exist_ok=True)
for split, n in (("train", 240000), ("val", 20000)):
    os.makedirs(f"{work}/videos/{split}", exist_ok=True)
    with open(f"{work}/lists/{split}.txt", "w") as out:
        for i in range(n):
            name = f"{split}/v{i:06d}.mp4"
            link = f"{work}/videos/{name}"
            if not os.path.lexists(link):
                os.symlink(f"{work}/src/{src[i % len(src)]}", link)
            out.write(f"{name} {i % 4}\n")
PY
fi
sets="--set data.train_list=$work/lists/train.txt --set data.val_list=$work/lists/val.txt --set data.data_root=$work/videos"
sets+=" --set train.run_dir=$work/run --set train.print_freq=1 --set train.num_steps=1000 --set train.threads=1"
echo "evl k400 start-up: $(wc -l < "$work/lists/train.txt") train + $(wc -l < "$work/lists/val.txt") val lines, np=$np, $("$evl" info | sed -n 2p)"
t0=$(date +%s.%N)
"$evl" config --check $sets >/dev/null 2>&1
echo "config --check: $(echo "$(date +%s.%N) - $t0" | bc) s"

rm -rf "$work/run"
watch_pid=
if command -v inotifywait >/dev/null; then
  inotifywait -m -q -e open --format '%w' "$work/lists/train.txt" "$work/lists/val.txt" > "$work/opens.txt" &
  watch_pid=$!
  sleep 0.5
fi
t0=$(date +%s.%N)
"$evl" launch -n "$np" -- train $sets > "$work/log.txt" 2>&1 &
launch=$!
until grep -q ' step 1/' "$work/log.txt"; do
  kill -0 $launch 2>/dev/null || { cat "$work/log.txt"; echo "k400_startup.sh: the run ended before step 1" >&2; exit 1; }
  sleep 0.05
done
step1=$(echo "$(date +%s.%N) - $t0" | bc)
rss=$(for p in $(pgrep -f "train.run_dir=$work/run" | grep -v "^$launch\$"); do
        grep -q '^VmHWM' /proc/$p/status 2>/dev/null && [[ $(tr '\0' ' ' < /proc/$p/cmdline) == *" train "* ]] &&
          [[ $(tr '\0' ' ' < /proc/$p/cmdline) != *mpirun* ]] && echo "$(awk '/^VmHWM/ {printf "%.0f", $2/1024}' /proc/$p/status) MiB"
      done | paste -sd' ')
kill -TERM $launch; wait $launch || true
echo "step 1 logged after: $step1 s (evl launch to the first step line)"
echo "peak RSS per process at step 1: $rss"
if [[ -n $watch_pid ]]; then
  kill $watch_pid; wait $watch_pid 2>/dev/null || true
  echo "opens: train.txt $(grep -c train.txt "$work/opens.txt" || true), val.txt $(grep -c val.txt "$work/opens.txt" || true)"
fi
