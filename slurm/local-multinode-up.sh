#!/usr/bin/env bash
# Bring up (or health-check) a throw-away Slurm cluster of three compute nodes on one machine, for testing
# what only breaks across nodes: DDP over two hosts, Ray head and worker on different nodes, arrays spread out.
#
#   sudo slurm/local-multinode-up.sh          # state in $FLUIDPERC_MN_DIR (default /tmp/fluidperc-mn)
#   sudo slurm/local-multinode-up.sh --print-env
#
# Each node is a network namespace plus a UTS namespace (its own hostname and address); the controller,
# slurmdbd and MariaDB share a fourth. They are joined by a bridge that has no address and routes nowhere, so
# nothing the cluster starts can be reached from this machine's own network namespace or from outside it:
#
#   fpctl 10.213.0.10  slurmctld :17817, slurmdbd :17819, MariaDB on its own loopback
#   fpn1  10.213.0.11  slurmd :17818        fpn2 10.213.0.12        fpn3 10.213.0.13
#
# slurmctld and slurmd listen on every address of their namespace, so client commands (sbatch, sacct, and
# everything that calls them, such as submitit and hpc.launch) must run in the controller's namespace:
#
#   nsenter --net=/run/netns/fpctl env SLURM_CONF=/tmp/fluidperc-mn/etc/slurm.conf sinfo
#
# munged runs outside the namespaces with its own socket and key (unix sockets cross network namespaces).
# The node names go into /etc/hosts in a marked block (gloo and Ray resolve their own host name), rewritten in
# place because /etc/hosts may be a bind mount; local-multinode-down.sh removes the block.
set -euo pipefail

STATE=${FLUIDPERC_MN_DIR:-/tmp/fluidperc-mn}
CLUSTER=fluidperc-mn
NET=10.213.0
BRIDGE=fpbr0
CTL=fpctl
NODES=(fpn1 fpn2 fpn3)
CTLD_PORT=17817
SLURMD_PORT=17818
DBD_PORT=17819
HOSTS_MARK="# fluidperc-multinode"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=slurm/lib.sh
source "$HERE/lib.sh"

die() { echo "local-multinode-up: $*" >&2; exit 1; }
addr_of() { case $1 in "$CTL") echo "$NET.10";; fpn*) echo "$NET.$((10 + ${1#fpn}))";; esac; }
in_ns() { local ns=$1; shift; nsenter --net="/run/netns/$ns" "$@"; }

if [ "${1:-}" = --print-env ]; then
    echo "SLURM_CONF=$STATE/etc/slurm.conf"
    echo "FLUIDPERC_MN_NETNS=/run/netns/$CTL"
    exit 0
fi
[ "$(id -u)" = 0 ] || die "must run as root (it creates network namespaces and starts the Slurm daemons)."
for bin in ip nsenter unshare; do command -v "$bin" >/dev/null || die "needs $bin (iproute2, util-linux)."; done
install_slurm_packages local-multinode-up

network() {
    ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
    # No address and no IPv6 on the bridge and the host-side veths: otherwise the nodes could reach every
    # service listening on 0.0.0.0 in this machine's namespace.
    sysctl -qw "net.ipv6.conf.$BRIDGE.disable_ipv6=1"
    ip addr flush dev "$BRIDGE"
    ip link set "$BRIDGE" up
    local i=0 ns veth
    for ns in "$CTL" "${NODES[@]}"; do
        veth=fpv$i; i=$((i + 1))
        [ -e "/run/netns/$ns" ] || ip netns add "$ns"
        if ! ip link show "$veth" >/dev/null 2>&1; then
            ip link add "$veth" type veth peer name eth0 netns "$ns"
        fi
        sysctl -qw "net.ipv6.conf.$veth.disable_ipv6=1"
        ip link set "$veth" master "$BRIDGE" up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr replace "$(addr_of "$ns")/24" dev eth0
        ip -n "$ns" link set eth0 up   # no default route: the namespace reaches the bridge and nothing else
    done
}

hosts_file() {
    # Rewrite in place (a bind-mounted /etc/hosts cannot be replaced), dropping an older block first.
    local kept block ns
    kept=$(grep -v -- "$HOSTS_MARK" /etc/hosts || true)
    block=""
    for ns in "$CTL" "${NODES[@]}"; do block+="$(addr_of "$ns") $ns $HOSTS_MARK"$'\n'; done
    printf '%s\n%s' "$kept" "$block" > /etc/hosts
}

write_configs() {
    mkdir -p "$STATE"/{etc,log,run,ctld,spool,db}
    write_unkillable_probe "$STATE"
    local dbpass_file=$STATE/etc/dbpass nodes_line="" ns
    [ -s "$dbpass_file" ] || { head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$dbpass_file"; chmod 600 "$dbpass_file"; }
    for ns in "${NODES[@]}"; do
        nodes_line+="NodeName=$ns NodeAddr=$(addr_of "$ns") NodeHostname=$ns CPUs=$(nproc) RealMemory=2000 State=UNKNOWN"$'\n'
    done
    cat > "$STATE/etc/slurm.conf.new" <<EOF
# Written by slurm/local-multinode-up.sh; edits are overwritten.
ClusterName=$CLUSTER
SlurmctldHost=$CTL($(addr_of "$CTL"))
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SrunPortRange=60001-60100
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.sock
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool/%n
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.%n.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.%n.log
PlugStackConfig=$STATE/etc/plugstack.conf
$(slurm_conf_common "$STATE")
AccountingStorageHost=$(addr_of "$CTL")
AccountingStoragePort=$DBD_PORT
# clients reach slurmdbd through this munge socket (AuthInfo covers only slurmctld and slurmd)
AccountingStoragePass=$STATE/munge/munge.sock
${nodes_line}PartitionName=debug Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=INFINITE State=UP
EOF
    cat > "$STATE/etc/slurmdbd.conf.new" <<EOF
# Written by slurm/local-multinode-up.sh; edits are overwritten.
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.sock
DbdHost=$CTL
DbdAddr=$(addr_of "$CTL")
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=$(cat "$dbpass_file")
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$STATE/etc/slurmdbd.conf.new"
    : > "$STATE/etc/plugstack.conf"
    CONFIG_CHANGED=0
    local f
    for f in slurm.conf slurmdbd.conf; do
        if ! cmp -s "$STATE/etc/$f.new" "$STATE/etc/$f"; then CONFIG_CHANGED=1; mv "$STATE/etc/$f.new" "$STATE/etc/$f"; else rm "$STATE/etc/$f.new"; fi
    done
    export SLURM_CONF=$STATE/etc/slurm.conf
}

start_munge() {
    local dir=$STATE/munge
    if pid_alive "$dir/munged.pid" munged && munge -S "$dir/munge.sock" -n | unmunge -S "$dir/munge.sock" >/dev/null 2>&1; then
        return 0
    fi
    mkdir -p "$dir"
    [ -s "$dir/munge.key" ] || { head -c 1024 /dev/urandom > "$dir/munge.key"; }
    chown -R munge:munge "$dir"
    chmod 755 "$dir"   # the socket's directory must be readable by the clients
    chmod 400 "$dir/munge.key"
    rm -f "$dir/munge.sock" "$dir/munge.sock.lock"
    runuser -u munge -- /usr/sbin/munged --socket="$dir/munge.sock" --key-file="$dir/munge.key" \
        --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munged.seed"
    wait_for "munged" 10 bash -c "munge -S '$dir/munge.sock' -n | unmunge -S '$dir/munge.sock'"
}

# start_in NS HOSTNAME PIDFILE NAME LOG CMD...: a daemon in the foreground of its own network and UTS namespace.
# nsenter, not `ip netns exec`: the latter remounts /sys and slurmd then finds no cgroup file system.
start_in() {
    local ns=$1 host=$2 pidfile=$3 name=$4 log=$5; shift 5
    pid_alive "$pidfile" "$name" && return 0
    # shellcheck disable=SC2016
    setsid nsenter --net="/run/netns/$ns" unshare --uts sh -c 'hostname "$0"; exec "$@"' "$host" "$@" \
        </dev/null >>"$log" 2>&1 &
    echo $! > "$pidfile"
}

start_mariadb() {
    local sock=$STATE/run/mariadb.sock
    if pid_alive "$STATE/run/mariadb.pid" mariadbd && mariadb -S "$sock" -e 'select 1' >/dev/null 2>&1; then return 0; fi
    mariadb_init_datadir "$STATE" || die "mariadb-install-db failed"
    start_in "$CTL" "$CTL" "$STATE/run/mariadb.pid" mariadbd "$STATE/log/mariadb.out" \
        /usr/sbin/mariadbd --no-defaults --user=root --datadir="$STATE/db" --socket="$sock" \
        --bind-address=127.0.0.1 --port=3306 --skip-name-resolve
    wait_for "mariadbd" 30 mariadb -S "$sock" -e 'select 1' || { tail -20 "$STATE/log/mariadb.out" >&2; die "MariaDB did not start"; }
    local dbpass; dbpass=$(cat "$STATE/etc/dbpass")
    mariadb_grant_slurm "$sock" "$dbpass"
}

start_slurmdbd() {
    # slurmdbd has no -f: it reads slurmdbd.conf beside $SLURM_CONF.
    start_in "$CTL" "$CTL" "$STATE/run/slurmdbd.pid" slurmdbd "$STATE/log/slurmdbd.out" slurmdbd -D
    wait_for "slurmdbd" 20 in_ns "$CTL" sacctmgr -n list cluster || { tail -20 "$STATE/log/slurmdbd.log" >&2; die "slurmdbd did not answer"; }
    if ! in_ns "$CTL" sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        in_ns "$CTL" sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
}

start_slurmctld() {
    start_in "$CTL" "$CTL" "$STATE/run/slurmctld.pid" slurmctld "$STATE/log/slurmctld.out" \
        slurmctld -D -i -f "$STATE/etc/slurm.conf"
    wait_for "slurmctld" 20 in_ns "$CTL" scontrol ping || { tail -20 "$STATE/log/slurmctld.log" >&2; die "slurmctld did not answer"; }
}

start_slurmds() {
    local ns
    for ns in "${NODES[@]}"; do
        mkdir -p "$STATE/spool/$ns"
        start_in "$ns" "$ns" "$STATE/run/slurmd.$ns.pid" slurmd "$STATE/log/slurmd.$ns.out" \
            slurmd -D -N "$ns" -f "$STATE/etc/slurm.conf"
    done
    wait_for "3 idle nodes" 30 nodes_ready || { tail -20 "$STATE/log/slurmctld.log" >&2; die "the nodes did not become idle"; }
}

nodes_ready() {
    local states; states=$(in_ns "$CTL" sinfo -h -N -o '%N %t' 2>/dev/null) || return 1
    [ "$(grep -cE ' (idle|mix|alloc)' <<<"$states")" = "${#NODES[@]}" ] && return 0
    grep -E ' (down|drain|inval)' <<<"$states" | while read -r node _; do
        in_ns "$CTL" scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
    done
    return 1
}

health() {
    in_ns "$CTL" scontrol ping >/dev/null 2>&1 && nodes_ready && in_ns "$CTL" sacct -n -X -S now-1minutes >/dev/null 2>&1
}

network
hosts_file
write_configs
if [ "$CONFIG_CHANGED" = 1 ]; then
    stop_cluster_daemons "$STATE" "${NODES[@]}"
fi
start_munge
start_mariadb
start_slurmdbd
start_slurmctld
start_slurmds
health || { for l in slurmctld slurmdbd; do echo "--- $l" >&2; tail -15 "$STATE/log/$l.log" >&2; done; die "the cluster is up but does not pass its health check"; }
echo "local-multinode-up: cluster '$CLUSTER' is up: ${NODES[*]} on $BRIDGE ($NET.0/24, no route out)." \
     "Run clients with: nsenter --net=/run/netns/$CTL env SLURM_CONF=$STATE/etc/slurm.conf COMMAND"
