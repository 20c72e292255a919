#!/usr/bin/env bash
# Runs a job on the simulated cluster and injects a fault at a step, not at a time:
#   run-with-fault.sh DIR LOG PATTERN FAULT NODE -- CMD...
# starts CMD (output to LOG), waits until LOG shows PATTERN (e.g. "step 12/"), then applies FAULT to
# node NODE: `kill` (SIGKILL every process on it: a node crash) or `link` (its link to the bridge
# down; left down). Then it polls until CMD has exited and no process is left on any node, and prints
#   status=S  exit_s=X  clean_s=Y
# (seconds after the fault). Gives up 180 s after the fault.
set -uo pipefail
dir=$1 log=$2 pattern=$3 fault=$4 node=$5
shift 6
here=$(dirname "$(realpath "$0")")
cluster="$here/netns-cluster.sh"
since() { awk -v t0="$1" -v t="$(date +%s.%N)" 'BEGIN { printf "%.2f", t - t0 }'; }
"$@" > "$log" 2>&1 &
job=$!
for _ in $(seq 1200); do
  grep -q "$pattern" "$log" 2>/dev/null && break
  kill -0 "$job" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q "$pattern" "$log"; then
  wait "$job"
  echo "run-with-fault.sh: the job ended (status $?) before \"$pattern\"" >&2
  exit 3
fi
t0=$(date +%s.%N)
case "$fault" in
  kill) "$cluster" kill-node "$dir" "$node" ;;
  link) "$cluster" link "$dir" "$node" down ;;
  *) echo "run-with-fault.sh: unknown fault $fault" >&2; exit 2 ;;
esac
status="" exit_s="" clean_s=""
nodes=$(cat "$dir/nodes")
while :; do
  now=$(since "$t0")
  if [ -z "$status" ] && ! kill -0 "$job" 2>/dev/null; then
    wait "$job"; status=$?; exit_s=$now
  fi
  left=0
  for i in $(seq 0 $((nodes - 1))); do
    left=$((left + $("$cluster" pids "$dir" "$i" | wc -l)))
  done
  [ -z "$clean_s" ] && [ "$left" -eq 0 ] && clean_s=$now
  [ -n "$status" ] && [ -n "$clean_s" ] && break
  if [ "${now%.*}" -ge 180 ]; then
    echo "run-with-fault.sh: still running 180 s after the fault:" >&2
    for i in $(seq 0 $((nodes - 1))); do "$cluster" pids "$dir" "$i" | xargs -r ps -o pid=,args= -p >&2; done
    kill -9 "$job" 2>/dev/null
    break
  fi
  sleep 0.2
done
echo "status=${status:-none}  exit_s=${exit_s:-none}  clean_s=${clean_s:-none}"
