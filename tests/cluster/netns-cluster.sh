#!/usr/bin/env bash
# A cluster of N simulated nodes on one machine, for the multi-node tests and by hand (as root).
# Each node is a network namespace with its own address on a private bridge (one veth pair per
# node) and, for every process started in it, its own hostname (a UTS namespace). The filesystem is
# shared, as a cluster's home or scratch filesystem is. Open MPI starts its daemons on the nodes
# through DIR/rsh-agent (no sshd), and with `slurm-up` one slurmctld (on the bridge's host side)
# and one slurmd per node run a Slurm cluster with pmix. Only loopback and the addresses made here
# are used.
#
#   netns-cluster.sh up DIR N          make N nodes (node0..), write DIR/env (source it)
#   netns-cluster.sh slurm-up DIR      munge + slurmctld + one slurmd per node; waits until idle
#   netns-cluster.sh exec DIR I CMD..  run CMD on node I (its namespace and hostname)
#   netns-cluster.sh kill-node DIR I   SIGKILL every process on node I (a node crash)
#   netns-cluster.sh link DIR I up|down  set node I's link to the bridge up or down
#   netns-cluster.sh limit DIR RATE    shape every node's egress to RATE (tc tbf, e.g. 1gbit); "none" clears
#   netns-cluster.sh pids DIR I        processes on node I
#   netns-cluster.sh bytes DIR I       bytes node I has sent over its link
#   netns-cluster.sh down DIR          stop the daemons by PID, delete namespaces, bridge and links
#
# Names derive from DIR, so two clusters (two test processes) do not collide: namespaces
# evl<tag>n<i>, bridge evl<tag>br, subnet 10.<a>.<b>.0/24 with the host side at .1 and node i at .(11+i).
set -euo pipefail
action=${1:?up|slurm-up|exec|kill-node|link|limit|pids|down}
dir=$(realpath -m "${2:?DIR}")
hash=$(printf '%s' "$dir" | md5sum)
tag=${hash:0:4}
net="10.$((16#${hash:4:2} % 200 + 20)).$((16#${hash:6:2}))"
bridge="evl${tag}br"
ns() { echo "evl${tag}n$1"; }
host() { echo "node$1"; }
count() { cat "$dir/nodes" 2>/dev/null || echo 0; }
. "$(dirname "$(realpath "$0")")/../slurm/common.sh"

# The directories directly under /tmp that every node must still see behind its own /tmp: DIR's,
# this checkout's (a clone under /tmp holds the binaries and the tests' files), and those named in
# EVL_CLUSTER_SHARED (colon-separated paths).
repo=$(realpath -m "$(dirname "$(realpath "$0")")/../..")
shared_roots() {
  local p
  { for p in "$dir" "$repo" ${EVL_CLUSTER_SHARED:+${EVL_CLUSTER_SHARED//:/ }}; do
      case "$p/" in /tmp/?*) p=${p#/tmp/}; echo "/tmp/${p%%/*}" ;; esac
    done; } | sort -u | tr '\n' ' '
}

# Runs a command on node I: its network namespace, a fresh UTS namespace named after the node, and
# the node's own /tmp and /run (DIR/nodeI/): Slurm's PMIx and Open MPI's session directories, and
# slurmd's pid file, are per machine. The shared roots (above) are bound into the node's /tmp first,
# at their own paths, so a cluster under /tmp works as one elsewhere does.
# shellcheck disable=SC2016
node_shell='hostname "$1"; node=$2; for r in $3; do mkdir -p "$node/tmp/${r#/tmp/}" && mount --bind "$r" "$node/tmp/${r#/tmp/}" || exit 1; done; mount --bind "$node/run" /run && mount --rbind "$node/tmp" /tmp || exit 1; shift 3; exec "$@"'
# Every step execs, so the PID that starts is the command's own. nsenter rather than `ip netns exec`:
# the latter also remounts /sys, hiding the cgroup tree that slurmd needs.
on_node() {
  local i=$1; shift
  exec nsenter --net="/run/netns/$(ns "$i")" unshare --uts --mount /bin/sh -c "$node_shell" \
    sh "$(host "$i")" "$dir/$(host "$i")" "$(shared_roots)" "$@"
}

down() {
  local n i
  n=$(count)
  for i in $(seq 0 $((n - 1))); do stop_pid_file "$dir/slurm/slurmd$i.pid"; done
  stop_pid_file "$dir/slurm/slurmctld.pid"
  stop_pid_file "$dir/slurm/munge/munged.pid"
  rm -rf "/dev/shm/evl${tag}-munge"
  for i in $(seq 0 $((n - 1))); do
    if ip netns list | grep -qw "$(ns "$i")"; then
      # Whatever a test left running on the node goes with it.
      ip netns pids "$(ns "$i")" | xargs -r kill -9 2>/dev/null || true
      ip netns del "$(ns "$i")" || true
    fi
    ip link del "evl${tag}v$i" 2>/dev/null || true
  done
  ip link del "$bridge" 2>/dev/null || true
  rm -f "$dir/nodes"
}

up() {
  local n=$1 i
  [ "$(id -u)" -eq 0 ] || { echo "netns-cluster.sh: needs root (network namespaces)" >&2; exit 2; }
  case "$dir/" in /tmp/|/run/*) echo "netns-cluster.sh: DIR must not be /tmp itself or under /run: every node mounts its own there" >&2; exit 2 ;; esac
  mkdir -p "$dir"
  down
  # A kernel or container that refuses namespaces is the one reason to skip; say so plainly.
  if ! ip link add "$bridge" type bridge 2>"$dir/why" || ! ip netns add "$(ns 0)" 2>>"$dir/why"; then
    echo "netns-cluster.sh: cannot make network namespaces here: $(cat "$dir/why")" >&2
    ip link del "$bridge" 2>/dev/null || true
    exit 77
  fi
  echo "$n" > "$dir/nodes"
  ip addr add "$net.1/24" dev "$bridge"
  ip link set "$bridge" up
  for i in $(seq 0 $((n - 1))); do
    ip netns list | grep -qw "$(ns "$i")" || ip netns add "$(ns "$i")"
    ip link add "evl${tag}v$i" type veth peer name eth0 netns "$(ns "$i")"
    ip link set "evl${tag}v$i" master "$bridge" up
    ip -n "$(ns "$i")" addr add "$net.$((11 + i))/24" dev eth0
    ip -n "$(ns "$i")" link set eth0 up
    ip -n "$(ns "$i")" link set lo up
    mkdir -p "$dir/$(host "$i")"/{tmp,run}
    chmod 1777 "$dir/$(host "$i")/tmp"
  done
  # Open MPI's launch agent: `rsh-agent HOST CMD...` runs CMD on the node named HOST.
  cat > "$dir/rsh-agent" <<AGENT
#!/bin/sh
host=\$1; shift
case "\$host" in node[0-9]*) ;; *) echo "rsh-agent: unknown host \$host" >&2; exit 255 ;; esac
exec nsenter --net="/run/netns/evl${tag}n\${host#node}" unshare --uts --mount /bin/sh -c '$node_shell' \\
  sh "\$host" "$dir/\$host" "$(shared_roots)" /bin/sh -c "\$*"
AGENT
  chmod +x "$dir/rsh-agent"
  # Open MPI: launch through the agent; daemons and the TCP transport on the bridge's subnet only.
  cat > "$dir/env" <<ENV
export EVL_CLUSTER_DIR=$dir
export EVL_CLUSTER_NODES=$n
export EVL_CLUSTER_HOSTS=$(for i in $(seq 0 $((n - 1))); do printf '%s%s' "$([ "$i" -gt 0 ] && echo ,)" "$(host "$i")"; done)
export OMPI_MCA_plm_rsh_agent=$dir/rsh-agent
export OMPI_MCA_oob_tcp_if_include=$net.0/24
export OMPI_MCA_btl_tcp_if_include=$net.0/24
ENV
}

slurm_up() {
  local n i port_base munge_socket
  n=$(count)
  for bin in munged slurmctld slurmd sinfo; do
    command -v "$bin" >/dev/null || { echo "netns-cluster.sh: $bin not installed (scripts/install-deps.sh --test)" >&2; exit 2; }
  done
  mkdir -p "$dir/slurm"/{state,munge,log}
  chmod 755 "$dir" "$dir/slurm"
  chown munge:munge "$dir/slurm/munge"
  port_base=${EVL_CLUSTER_SLURM_PORT_BASE:-16917}
  # A socket path has at most 108 bytes; /dev/shm is short and every node sees it (their /tmp differ).
  munge_socket=/dev/shm/evl${tag}-munge/munge.socket
  mkdir -p "${munge_socket%/*}"
  chown munge:munge "${munge_socket%/*}"
  {
    cat <<CONF
ClusterName=evlnetns
SlurmctldHost=localhost($net.1)
SlurmctldPort=$port_base
SlurmdPort=$((port_base + 1))
StateSaveLocation=$dir/slurm/state
SlurmdSpoolDir=/run/slurmd-spool
SlurmctldPidFile=$dir/slurm/slurmctld.pid
SlurmctldLogFile=$dir/slurm/log/slurmctld.log
SlurmdLogFile=$dir/slurm/log/slurmd-%n.log
$(slurm_conf_common "$munge_socket")
SlurmdTimeout=30
CONF
    for i in $(seq 0 $((n - 1))); do
      echo "NodeName=$(host "$i") NodeAddr=$net.$((11 + i)) NodeHostname=$(host "$i") CPUs=2 State=UNKNOWN"
    done
    echo "PartitionName=debug Nodes=node[0-$((n - 1))] Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES"
  } > "$dir/slurm/slurm.conf"
  echo "export SLURM_CONF=$dir/slurm/slurm.conf" >> "$dir/env"
  export SLURM_CONF="$dir/slurm/slurm.conf"
  start_munge "$dir/slurm/munge" "$munge_socket"
  slurmctld -i -f "$SLURM_CONF"
  for i in $(seq 0 $((n - 1))); do
    # slurmd in the foreground (-D) under our own PID file: its PidFile setting is one per machine.
    # The spool (its socket paths have at most 108 bytes) lies in the node's own /run.
    mkdir -p "$dir/$(host "$i")/run/slurmd-spool"
    (on_node "$i" slurmd -D -N "$(host "$i")" -f "$SLURM_CONF") </dev/null >"$dir/slurm/log/slurmd$i.out" 2>&1 &
    echo $! > "$dir/slurm/slurmd$i.pid"
  done
  for _ in $(seq 150); do
    if [ "$(sinfo -h -o '%T %D' 2>/dev/null)" = "idle $n" ]; then exit 0; fi
    sleep 0.2
  done
  echo "netns-cluster.sh: the nodes did not become idle; logs in $dir/slurm/log" >&2
  sinfo >&2 || true
  tail -n 20 "$dir/slurm/log/"* >&2 || true
  exit 1
}

case "$action" in
  up) up "${3:?N}" ;;
  slurm-up) slurm_up ;;
  exec) i=${3:?node}; shift 3; on_node "$i" "$@" ;;
  kill-node) ip netns pids "$(ns "${3:?node}")" | xargs -r kill -9 ;;
  pids) ip netns pids "$(ns "${3:?node}")" ;;
  bytes) cat "/sys/class/net/evl${tag}v${3:?node}/statistics/rx_bytes" ;;
  link) ip link set "evl${tag}v${3:?node}" "${4:?up|down}" ;;
  limit)
    rate=${3:?RATE|none}
    # The bucket holds 2 ms at the rate (at least 16 kB): a larger burst lets a whole gradient
    # message of a small model through at line rate and hides the limit (seen with 256 kB).
    burst=$(awk -v r="$rate" 'BEGIN { n = r + 0; u = tolower(substr(r, length(n "") + 1));
      m = (u == "gbit") ? 1e9 : (u == "mbit") ? 1e6 : (u == "kbit") ? 1e3 : 1; b = n * m / 8 / 500;
      printf "%d", (b < 16000 ? 16000 : b) }')
    for i in $(seq 0 $(($(count) - 1))); do
      # Both directions: the node's side of its veth shapes what it sends, the host side what it receives.
      tc -n "$(ns "$i")" qdisc del dev eth0 root 2>/dev/null || true
      tc qdisc del dev "evl${tag}v$i" root 2>/dev/null || true
      [ "$rate" = none ] && continue
      tc -n "$(ns "$i")" qdisc add dev eth0 root tbf rate "$rate" burst "$burst" latency 400ms
      tc qdisc add dev "evl${tag}v$i" root tbf rate "$rate" burst "$burst" latency 400ms
    done ;;
  down) down ;;
  *) echo "netns-cluster.sh: unknown action $action" >&2; exit 2 ;;
esac
