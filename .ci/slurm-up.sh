#!/usr/bin/env bash
# Start a one-node Slurm (2 CPUs, accounting through slurmdbd + MariaDB) for the `slurm`-marked tests.
#
# Everything lives under $SLURM_CI_DIR (default /tmp/bench-slurm): configuration, state, logs, database.
# Clients find the cluster through SLURM_CONF=$SLURM_CI_DIR/slurm.conf (exported by .ci/run).
# No systemd is assumed: the daemons are started directly, as root. Stop them with .ci/slurm-down.sh.
set -euo pipefail
D="${SLURM_CI_DIR:-/tmp/bench-slurm}"
CTLD_PORT="${SLURM_CI_PORT:-6817}"   # slurmd uses +1, slurmdbd +2, MariaDB +3
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q slurmctld slurmd slurm-client munge slurmdbd mariadb-server >/dev/null \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q slurmctld slurmd slurm-client munge slurmdbd mariadb-server >/dev/null; }
fi

mkdir -p "$D"/{state,spool,log,run,db,munge}
chmod 700 "$D/munge"
HOST="$(hostname -s)"
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))

# munge: a fresh key; the default socket, since slurmctld's link to slurmdbd always uses it.
[ -s "$D/munge/munge.key" ] || dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$D/munge/munge.key"
$SUDO mkdir -p /run/munge
if ! timeout 5 munge -n </dev/null >/dev/null 2>&1; then
  munged --force --key-file="$D/munge/munge.key" --pid-file="$D/munge/munged.pid" \
    --log-file="$D/log/munged.log" --seed-file="$D/munge/munge.seed" </dev/null >/dev/null 2>&1
fi

# MariaDB on 127.0.0.1 only, with its own data folder.
DB_PORT=$((CTLD_PORT + 3))
if [ ! -d "$D/db/mysql" ]; then
  mariadb-install-db --datadir="$D/db" --user=root --auth-root-authentication-method=socket >"$D/log/mariadb-install.log" 2>&1
fi
mariadbd --datadir="$D/db" --user=root --bind-address=127.0.0.1 --port="$DB_PORT" --socket="$D/run/mysqld.sock" \
  --pid-file="$D/run/mysqld.pid" --log-error="$D/log/mariadb.log" --skip-log-bin >/dev/null 2>&1 &
for _ in $(seq 60); do timeout 5 mariadb --socket="$D/run/mysqld.sock" -e 'select 1' >/dev/null 2>&1 && break; sleep 0.5; done
timeout 30 mariadb --socket="$D/run/mysqld.sock" -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm-ci';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"

cat >"$D/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((CTLD_PORT + 2))
SlurmUser=root
LogFile=$D/log/slurmdbd.log
PidFile=$D/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm-ci
StorageLoc=slurm_acct_db
CONF
chmod 600 "$D/slurmdbd.conf"

cat >"$D/slurm.conf" <<CONF
ClusterName=benchci
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$((CTLD_PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((CTLD_PORT + 2))
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_min_interval=0,batch_sched_delay=0
MessageTimeout=10
ReturnToService=2
KillWait=5
MinJobAge=300
JobRequeue=1
EnforcePartLimits=ALL
MpiDefault=none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=2 RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$D/slurm.conf"

# slurmdbd reads slurmdbd.conf from the folder of $SLURM_CONF.
slurmdbd </dev/null >/dev/null 2>&1
for _ in $(seq 60); do timeout 5 sacctmgr -i -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
timeout 10 sacctmgr -i add cluster benchci >/dev/null 2>&1 || true
slurmctld -f "$D/slurm.conf" </dev/null >/dev/null 2>&1
slurmd -f "$D/slurm.conf" </dev/null >/dev/null 2>&1

for _ in $(seq 120); do
  state="$(timeout 5 sinfo -h -n "$HOST" -o %t 2>/dev/null || true)"
  [ "$state" = "idle" ] && { echo "slurm up: SLURM_CONF=$SLURM_CONF, node $HOST idle"; exit 0; }
  sleep 0.5
done
echo "slurm did not come up (node state: ${state:-none}); logs in $D/log" >&2
tail -n 20 "$D"/log/*.log >&2 || true
exit 1
