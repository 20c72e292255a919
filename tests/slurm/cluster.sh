#!/usr/bin/env bash
# A throw-away single-node Slurm cluster for the Slurm tests (Debian 12's Slurm 22.05 + munge), run
# as root without systemd. Everything lives under DIR; the daemons are stopped by the PIDs in their
# pid files, never by name, so a real Slurm on the machine is left alone.
#   cluster.sh start DIR   -> writes DIR/env (source it: SLURM_CONF) once the node is idle
#   cluster.sh stop DIR
set -euo pipefail
action=${1:?start|stop}
dir=$(realpath -m "${2:?DIR}")

stop() {
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
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
# The package's key, or a fresh one when the package was installed without it.
key=/etc/munge/munge.key
if [ ! -s "$key" ]; then
  key="$dir/munge/munge.key"
  mungekey --create --keyfile="$key"
  chown munge:munge "$key"
  chmod 600 "$key"
fi
port_base=${EVL_SLURM_PORT_BASE:-16817}
cat > "$dir/slurm.conf" <<CONF
ClusterName=evltest
SlurmctldHost=localhost
SlurmctldPort=$port_base
SlurmdPort=$((port_base + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=5
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmix
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MailProg=/bin/true
JobRequeue=1
ReturnToService=2
SchedulerParameters=bf_interval=1,sched_interval=1
MinJobAge=600
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF="$dir/slurm.conf"
echo "export SLURM_CONF=$SLURM_CONF" > "$dir/env"

runuser -u munge -- munged --socket="$dir/munge/munge.socket" --pid-file="$dir/munge/munged.pid" \
  --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" --key-file="$key"
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
