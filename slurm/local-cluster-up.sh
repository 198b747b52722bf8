#!/usr/bin/env bash
# Bring up (or health-check) a throw-away single-node Slurm cluster bound to 127.0.0.1:
# munged + MariaDB + slurmdbd + slurmctld + slurmd, from Debian's packages, without systemd.
#
#   sudo slurm/local-cluster-up.sh            # state in $FLUIDPERC_SLURM_DIR (default /tmp/fluidperc-slurm)
#   export SLURM_CONF=/tmp/fluidperc-slurm/etc/slurm.conf
#
# Idempotent: while the cluster is up this is a health check; a changed config restarts the daemons.
# It stops only daemons it started itself (pid files under the state dir, process name checked).
set -euo pipefail

STATE=${FLUIDPERC_SLURM_DIR:-/tmp/fluidperc-slurm}
CLUSTER=${FLUIDPERC_SLURM_CLUSTER:-fluidperc}
CTLD_PORT=${FLUIDPERC_SLURM_PORT:-6817}
SLURMD_PORT=$((CTLD_PORT + 1))
DBD_PORT=$((CTLD_PORT + 2))
DB_PORT=${FLUIDPERC_SLURM_DB_PORT:-3307}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=slurm/lib.sh
source "$HERE/lib.sh"

die() { echo "local-cluster-up: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it starts munged, MariaDB and the Slurm daemons)."

check_hostname() {
    HOST=$(hostname -s)
    local addr
    addr=$(getent ahostsv4 "$HOST" | awk 'NR==1 {print $1}')
    if [ "$addr" != 127.0.0.1 ]; then
        echo "local-cluster-up: '$HOST' resolves to '${addr:-nothing}'; the daemons bind to it, so it must be 127.0.0.1. Adding '127.0.0.1 $HOST' to the top of /etc/hosts."
        # Rewrite in place: /etc/hosts can be a bind mount that cannot be replaced.
        local old; old=$(cat /etc/hosts)
        printf '127.0.0.1 %s\n%s\n' "$HOST" "$old" > /etc/hosts
        addr=$(getent ahostsv4 "$HOST" | awk 'NR==1 {print $1}')
        [ "$addr" = 127.0.0.1 ] || die "'$HOST' still resolves to '${addr:-nothing}', not 127.0.0.1; fix /etc/hosts (or nsswitch.conf) by hand."
    fi
}

write_configs() {
    mkdir -p "$STATE"/{etc,log,run,ctld,spool,db}
    write_unkillable_probe "$STATE"
    local topo mem
    topo=$(slurmd -C | head -1 | sed -E 's/ RealMemory=[0-9]+//')
    mem=$(slurmd -C | head -1 | sed -E 's/.*RealMemory=([0-9]+).*/\1/')
    mem=$((mem * 9 / 10))   # the full figure drifts below what slurmd reports and the node goes INVAL
    local dbpass_file=$STATE/etc/dbpass
    [ -s "$dbpass_file" ] || { head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$dbpass_file"; chmod 600 "$dbpass_file"; }
    local dbpass; dbpass=$(cat "$dbpass_file")

    cat > "$STATE/etc/slurm.conf.new" <<EOF
# Written by slurm/local-cluster-up.sh; edits are overwritten.
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
# A small array limit, as real clusters have one (default 1001): larger job groups go in as several arrays.
MaxArraySize=${FLUIDPERC_SLURM_MAX_ARRAY:-8}
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
$(slurm_conf_common "$STATE")
AccountingStorageHost=$HOST
AccountingStoragePort=$DBD_PORT
$topo RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
    cat > "$STATE/etc/slurmdbd.conf.new" <<EOF
# Written by slurm/local-cluster-up.sh; edits are overwritten.
AuthType=auth/munge
DbdHost=$HOST
DbdPort=$DBD_PORT
SlurmUser=root
CommunicationParameters=NoInAddrAny
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$dbpass
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$STATE/etc/slurmdbd.conf.new"
    CONFIG_CHANGED=0
    for f in slurm.conf slurmdbd.conf; do
        if ! cmp -s "$STATE/etc/$f.new" "$STATE/etc/$f"; then CONFIG_CHANGED=1; mv "$STATE/etc/$f.new" "$STATE/etc/$f"; else rm "$STATE/etc/$f.new"; fi
    done
    export SLURM_CONF=$STATE/etc/slurm.conf
}

start_munge() {
    # Reuse a munged that already answers (the system's own); otherwise start ours.
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
    [ -s /etc/munge/munge.key ] || { mungekey -c -k /etc/munge/munge.key 2>/dev/null || mungekey --create; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 755 /run/munge
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    cp /run/munge/munged.pid "$STATE/run/munged.pid"
    wait_for "munged" 10 bash -c 'munge -n | unmunge >/dev/null'
}

start_mariadb() {
    local sock=$STATE/run/mariadb.sock
    if pid_alive "$STATE/run/mariadb.pid" mariadbd && mariadb -S "$sock" -e 'select 1' >/dev/null 2>&1; then return 0; fi
    mariadb_init_datadir "$STATE" || die "mariadb-install-db failed"
    setsid /usr/sbin/mariadbd --no-defaults --user=root --datadir="$STATE/db" --socket="$sock" \
        --pid-file="$STATE/run/mariadb.pid" --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve \
        --log-error="$STATE/log/mariadb.log" </dev/null >/dev/null 2>&1 &
    wait_for "mariadbd" 30 mariadb -S "$sock" -e 'select 1' || { tail -20 "$STATE/log/mariadb.log" >&2; die "MariaDB did not start"; }
    local dbpass; dbpass=$(cat "$STATE/etc/dbpass")
    mariadb_grant_slurm "$sock" "$dbpass"
}

start_slurmdbd() {
    pid_alive "$STATE/run/slurmdbd.pid" slurmdbd && return 0
    # slurmdbd has no -f: it reads slurmdbd.conf beside $SLURM_CONF.
    slurmdbd 2>>"$STATE/log/slurmdbd.log" || true
    wait_for "slurmdbd" 20 sacctmgr -n list cluster || { tail -20 "$STATE/log/slurmdbd.log" >&2; die "slurmdbd did not answer"; }
    # The cluster must be registered before slurmctld starts, or accounting stays empty.
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
}

start_slurmctld() {
    pid_alive "$STATE/run/slurmctld.pid" slurmctld && return 0
    slurmctld -f "$STATE/etc/slurm.conf" -i 2>>"$STATE/log/slurmctld.log" || true
    wait_for "slurmctld" 20 scontrol ping || { tail -20 "$STATE/log/slurmctld.log" >&2; die "slurmctld did not answer"; }
}

start_slurmd() {
    pid_alive "$STATE/run/slurmd.pid" slurmd && return 0
    slurmd -f "$STATE/etc/slurm.conf" 2>>"$STATE/log/slurmd.log" || true
    wait_for "slurmd" 20 node_ready || { tail -20 "$STATE/log/slurmd.log" >&2; tail -20 "$STATE/log/slurmctld.log" >&2; die "the node did not become idle"; }
}

node_ready() {
    local st; st=$(sinfo -h -N -o '%t' 2>/dev/null | head -1)
    case "$st" in idle*|mix*|alloc*) return 0;; down*|drain*|inval*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1; return 1;; *) return 1;; esac
}

health() {
    scontrol ping >/dev/null 2>&1 && node_ready && sacct -n -X -S now-1minutes >/dev/null 2>&1
}

install_slurm_packages local-cluster-up
check_hostname
write_configs
if [ "$CONFIG_CHANGED" = 1 ]; then
    for d in slurmd slurmctld slurmdbd; do stop_daemon "$STATE/run/$d.pid" "$d"; done
fi
start_munge
start_mariadb
start_slurmdbd
start_slurmctld
start_slurmd
health || { for l in slurmctld slurmd slurmdbd; do echo "--- $l" >&2; tail -15 "$STATE/log/$l.log" >&2; done; die "the cluster is up but does not pass its health check"; }
echo "local-cluster-up: cluster '$CLUSTER' is up on $HOST (127.0.0.1). export SLURM_CONF=$STATE/etc/slurm.conf"
