#!/bin/bash
# np=2 / np=1 training throughput on one machine, one compute thread per rank.
# Runs `evl launch -n 1` and `-n 2` alternately (so drift in a shared VM hits both alike), REPEAT
# times each, and prints the medians of the steady-state clips/s (the last print window) and their ratio.
#   bench/dist_scaling.sh [--evl build/launcher/evl] [--config bench/dist_scaling.pbtxt]
#                         [--steps 100] [--repeat 3] [--work /tmp/evl-dist-scaling] [-- extra --set args]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
evl=$here/../build/launcher/evl
config=$here/dist_scaling.pbtxt
steps=100
repeat=3
work=/tmp/evl-dist-scaling
while [[ $# -gt 0 ]]; do
  case $1 in
    --evl) evl=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "dist_scaling.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -x $evl ]] || { echo "dist_scaling.sh: no evl binary at $evl (build first)" >&2; exit 2; }
mkdir -p "$work"
if [[ ! -f $work/data/train.txt ]]; then
  "$evl" data synth --out "$work/data" --classes 4 --videos 160 --frames 32 --size 48x48 >/dev/null
fi

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

declare -A cps wait
for ((i = 1; i <= repeat; ++i)); do
  for np in 1 2; do
    run=$work/run-np$np-$i
    rm -rf "$run"
    line=$("$evl" launch -n "$np" -- train --config "$config" --set train.num_steps="$steps" \
             --set train.print_freq=$((steps / 2)) --set train.run_dir="$run" \
             --set data.train_list="$work/data/train.txt" --set data.data_root="$work/data" \
             --set data.val_list= "$@" 2>&1 | grep "step $steps/$steps" || true)
    [[ -n $line ]] || { echo "dist_scaling.sh: np=$np run $i printed no final step line (see $run)" >&2; exit 1; }
    c=$(sed -E 's/.*clips\/s ([0-9.]+).*/\1/' <<<"$line")
    w=$(sed -E 's/.*comm-wait ([0-9.]+)%.*/\1/' <<<"$line")
    d=$(sed -E 's/.*data-wait ([0-9.]+)%.*/\1/' <<<"$line")
    printf 'run %d  np=%d  clips/s %6.1f  comm-wait %5.1f%%  data-wait %5.1f%%\n' "$i" "$np" "$c" "$w" "$d"
    cps[$np]+="$c "
    wait[$np]+="$w "
  done
done
c1=$(tr ' ' '\n' <<<"${cps[1]}" | grep . | median)
c2=$(tr ' ' '\n' <<<"${cps[2]}" | grep . | median)
w2=$(tr ' ' '\n' <<<"${wait[2]}" | grep . | median)
awk -v a="$c1" -v b="$c2" -v w="$w2" -v r="$repeat" 'BEGIN {
  printf "median of %d: np=1 %.1f clips/s, np=2 %.1f clips/s (comm-wait %.1f%%)  np=2/np=1 = %.2fx\n", r, a, b, w, b / a }'
