#!/usr/bin/env bash
# Stop the throw-away cluster that local-cluster-up.sh started; only daemons whose pid files it wrote.
#   slurm/local-cluster-down.sh [--purge]     # --purge also deletes the state dir (database, logs)
set -uo pipefail
STATE=${FLUIDPERC_SLURM_DIR:-/tmp/fluidperc-slurm}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=slurm/lib.sh
source "$HERE/lib.sh"
[ -d "$STATE/run" ] || { echo "local-cluster-down: nothing to stop in $STATE"; exit 0; }
if [ -f "$STATE/etc/slurm.conf" ] && command -v scancel >/dev/null; then
    SLURM_CONF=$STATE/etc/slurm.conf timeout 5 scancel --user="$(id -un)" >/dev/null 2>&1 || true
fi
stop_daemon "$STATE/run/slurmd.pid" slurmd
stop_daemon "$STATE/run/slurmctld.pid" slurmctld
stop_daemon "$STATE/run/slurmdbd.pid" slurmdbd
stop_daemon "$STATE/run/mariadb.pid" mariadbd
stop_daemon "$STATE/run/munged.pid" munged
if [ "${1:-}" = --purge ]; then rm -rf "$STATE"; echo "local-cluster-down: removed $STATE"; fi
echo "local-cluster-down: done"
