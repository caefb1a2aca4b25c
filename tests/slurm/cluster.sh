# A private one-node Slurm cluster for tests (sourced): munged, slurmctld and slurmd run
# as root from a state folder with their own sockets and ports, and are stopped again by
# cluster_stop. Needs Debian's slurm-wlm and munge (installed by cluster_install).
#   cluster_install || skip; cluster_start DIR [CPUS] || skip; ...; cluster_stop DIR
# CPUS: the node's CPU count in slurm.conf (default: nproc).

cluster_install() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && return 0
  [[ $EUID -eq 0 ]] || { echo "slurm-wlm/munge are missing and installing them needs root"; return 1; }
  command -v apt-get >/dev/null || { echo "slurm-wlm/munge are missing and there is no apt-get"; return 1; }
  echo "installing slurm-wlm and munge (apt-get)"
  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y --no-install-recommends slurm-wlm munge \
    >/dev/null 2>&1 || { echo "apt-get install slurm-wlm munge failed"; return 1; }
}

# A free TCP port (the kernel picks one; the tiny window before slurmctld binds it is fine).
cluster_free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("",0)); print(s.getsockname()[1])'; }

cluster_start() {
  local dir=$1 cpus=${2:-} host mem ctld_port slurmd_port
  host=$(hostname -s)
  # nproc without OMP_NUM_THREADS, which it obeys (tests set it to 1).
  [[ -n $cpus ]] || cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
  ctld_port=$(cluster_free_port)
  slurmd_port=$(cluster_free_port)
  mkdir -p "$dir"/{state,spool,log,run}
  chmod 700 "$dir"
  mungekey -c -k "$dir/munge.key" >/dev/null 2>&1 || dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 2>/dev/null
  chmod 600 "$dir/munge.key"
  cat >"$dir/slurm.conf" <<CONF
ClusterName=btmtest
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/run/munge.sock,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
KillWait=10
MinJobAge=600
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
  export SLURM_CONF=$dir/slurm.conf
  munged --force --socket="$dir/run/munge.sock" --key-file="$dir/munge.key" --pid-file="$dir/run/munged.pid" \
    --log-file="$dir/log/munged.log" --seed-file="$dir/run/munge.seed" >/dev/null 2>&1 \
    || { echo "munged did not start: $(tail -3 "$dir/log/munged.log" 2>/dev/null)"; return 1; }
  slurmctld -f "$dir/slurm.conf" >/dev/null 2>&1 || { echo "slurmctld did not start"; return 1; }
  slurmd -f "$dir/slurm.conf" >/dev/null 2>&1 || { echo "slurmd did not start"; return 1; }
  local _
  for _ in $(seq 60); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qx 'idle'; then return 0; fi
    sleep 0.5
  done
  echo "the node did not become idle within 30 s:"
  sinfo 2>&1 | sed 's/^/  /'
  tail -5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" 2>/dev/null | sed 's/^/  /'
  return 1
}

# Stops whatever cluster_start started (by the pid files it wrote), jobs included.
cluster_stop() {
  local dir=$1 f pid _
  [[ -f $dir/slurm.conf ]] || return 0
  SLURM_CONF=$dir/slurm.conf scancel --user="$(id -un)" >/dev/null 2>&1 || true
  for f in slurmd slurmctld munged; do
    pid=$(cat "$dir/run/$f.pid" 2>/dev/null) || continue
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
}
