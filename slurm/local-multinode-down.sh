#!/usr/bin/env bash
# Stop the multi-node test cluster that local-multinode-up.sh started, remove its namespaces and bridge, and
# take its block out of /etc/hosts. Only daemons whose pid files it wrote are stopped.
#   slurm/local-multinode-down.sh [--purge]     # --purge also deletes the state dir (database, logs)
set -uo pipefail
STATE=${FLUIDPERC_MN_DIR:-/tmp/fluidperc-mn}
CTL=fpctl
NODES=(fpn1 fpn2 fpn3)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=slurm/lib.sh
source "$HERE/lib.sh"
if [ -d "$STATE/run" ]; then
    if [ -e "/run/netns/$CTL" ] && [ -f "$STATE/etc/slurm.conf" ]; then
        nsenter --net="/run/netns/$CTL" env SLURM_CONF="$STATE/etc/slurm.conf" timeout 5 scancel --user="$(id -un)" >/dev/null 2>&1 || true
    fi
    stop_cluster_daemons "$STATE" "${NODES[@]}"
    stop_daemon "$STATE/run/mariadb.pid" mariadbd
    stop_daemon "$STATE/munge/munged.pid" munged
fi
for ns in "$CTL" "${NODES[@]}"; do
    [ -e "/run/netns/$ns" ] && ip netns delete "$ns"   # takes its end of the veth pair, and so the pair, with it
done
ip link show fpbr0 >/dev/null 2>&1 && ip link delete fpbr0
# a namespace (and with it the host end of its veth) goes away asynchronously: wait, so that an immediate
# local-multinode-up.sh does not find a veth whose peer is gone
wait_for "the namespaces to go" 20 bash -c '! ip -o link show | grep -q " fpv[0-9]"' || true
if grep -q -- "# fluidperc-multinode" /etc/hosts; then
    kept=$(grep -v -- "# fluidperc-multinode" /etc/hosts)
    printf '%s\n' "$kept" > /etc/hosts   # in place: /etc/hosts may be a bind mount
fi
if [ "${1:-}" = --purge ]; then rm -rf "$STATE"; echo "local-multinode-down: removed $STATE"; fi
echo "local-multinode-down: done"
