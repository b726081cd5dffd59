#!/usr/bin/env bash
# Stop the one-node Slurm started by .ci/slurm-up.sh: cancel every job, wait for the queue to empty,
# then stop slurmd, slurmctld, slurmdbd, MariaDB and munged (by their pid files under $SLURM_CI_DIR).
set -uo pipefail
D="${SLURM_CI_DIR:-/tmp/bench-slurm}"
export SLURM_CONF="$D/slurm.conf"
[ -d "$D" ] || exit 0
if [ -f "$D/run/slurmctld.pid" ] && timeout 10 squeue -h >/dev/null 2>&1; then
  timeout 10 scancel --full --user="$(id -un)" 2>/dev/null
  for _ in $(seq 120); do
    [ -z "$(timeout 10 squeue -h -o %i 2>/dev/null)" ] && break
    sleep 0.5
  done
fi
stop() {  # stop <pid file>: TERM, wait up to 15 s, then KILL
  local pid
  [ -f "$1" ] || return 0
  pid="$(cat "$1" 2>/dev/null)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || { rm -f "$1"; return 0; }
  kill -TERM "$pid"
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$1"
}
stop "$D/run/slurmd.pid"
stop "$D/run/slurmctld.pid"
stop "$D/run/slurmdbd.pid"
stop "$D/run/mysqld.pid"
stop "$D/munge/munged.pid"
echo "slurm down"
