# Shared by the test clusters: tests/slurm/cluster.sh (one node) and tests/cluster/netns-cluster.sh
# (a slurmd per simulated node). Source it; it defines functions only.

# Stops the process named in a pid file: SIGTERM, then SIGKILL after 5 s; removes the file.
stop_pid_file() {
  local pidfile=$1 pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

# Prints the munge key to use: the package's, or a fresh one in DIR when the package was installed
# without it.
munge_key() {
  local dir=$1 key=/etc/munge/munge.key
  if [ ! -s "$key" ]; then
    key="$dir/munge.key"
    [ -s "$key" ] || { mungekey --create --keyfile="$key" && chown munge:munge "$key" && chmod 600 "$key"; }
  fi
  echo "$key"
}

# Starts munged on SOCKET with its state in DIR (owned by munge).
start_munge() {
  local dir=$1 socket=$2
  runuser -u munge -- munged --socket="$socket" --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" \
    --seed-file="$dir/munged.seed" --key-file="$(munge_key "$dir")"
}

# The slurm.conf lines every test cluster shares: root daemons, munge on SOCKET, no cgroups or
# accounting, pmix, fast scheduling, requeue allowed, quick restarts (cred_expire=5).
slurm_conf_common() {
  local socket=$1
  cat <<CONF
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket,cred_expire=5
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
CONF
}
