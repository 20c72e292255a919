#!/usr/bin/env bash
# A throw-away single-node Slurm cluster for the Slurm tests (Debian 12's Slurm 22.05 + munge), run
# as root without systemd. Everything lives under DIR; the daemons are stopped by the PIDs in their
# pid files, never by name, so a real Slurm on the machine is left alone.
#   cluster.sh start DIR   -> writes DIR/env (source it: SLURM_CONF) once the node is idle
#   cluster.sh stop DIR
set -euo pipefail
action=${1:?start|stop}
dir=$(realpath -m "${2:?DIR}")

. "$(dirname "$(realpath "$0")")/common.sh"

stop() {
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do stop_pid_file "$pidfile"; done
}

if [ "$action" = stop ]; then
  stop
  exit 0
fi
[ "$action" = start ] || { echo "usage: cluster.sh start|stop DIR" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "cluster.sh: the test cluster runs as root" >&2; exit 2; }
for bin in munged slurmctld slurmd sinfo; do
  command -v "$bin" >/dev/null || { echo "cluster.sh: $bin not installed (scripts/install-deps.sh)" >&2; exit 2; }
done

mkdir -p "$dir"/{state,spool,munge,log}
chmod 755 "$dir"
chown munge:munge "$dir/munge"
chmod 755 "$dir/munge"
port_base=${EVL_SLURM_PORT_BASE:-16817}
cat > "$dir/slurm.conf" <<CONF
ClusterName=evltest
SlurmctldHost=localhost
SlurmctldPort=$port_base
SlurmdPort=$((port_base + 1))
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
$(slurm_conf_common "$dir/munge/munge.socket")
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF="$dir/slurm.conf"
echo "export SLURM_CONF=$SLURM_CONF" > "$dir/env"

start_munge "$dir/munge" "$dir/munge/munge.socket"
slurmctld -i -f "$SLURM_CONF"
slurmd -N localhost -f "$SLURM_CONF"
for _ in $(seq 100); do
  if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
    exit 0
  fi
  sleep 0.2
done
echo "cluster.sh: the node did not become idle; logs in $dir/log" >&2
sinfo >&2 || true
tail -n 20 "$dir/log/"*.log >&2 || true
exit 1
