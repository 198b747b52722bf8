# Helpers shared by the local cluster scripts (single-node and multi-node, up and down).

# pid_alive PIDFILE NAME: the pid in PIDFILE runs a process called NAME (a zombie counts as dead:
# PID 1 reaps slowly here and kill -0 succeeds on a zombie).
pid_alive() {
    local pidfile=$1 name=$2 pid state comm
    [ -s "$pidfile" ] || return 1
    # the daemon may remove its pid file as it exits: the redirection then fails, silently
    pid=$( { tr -dc '0-9' < "$pidfile"; } 2>/dev/null )
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ "$state" != Z ] && [ "${comm#"$name"}" != "$comm" ]
}

# stop_daemon PIDFILE NAME: stop the daemon we started (TERM, then KILL after 10 s).
stop_daemon() {
    local pidfile=$1 name=$2 pid i
    if pid_alive "$pidfile" "$name"; then
        pid=$(tr -dc '0-9' < "$pidfile")
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 100); do pid_alive "$pidfile" "$name" || break; sleep 0.1; done
        if pid_alive "$pidfile" "$name"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
        echo "stopped $name ($pid)"
    fi
    rm -f "$pidfile"
}

# wait_for WHAT SECONDS CMD...: poll CMD every 0.2 s until it succeeds.
wait_for() {
    local what=$1 secs=$2 i; shift 2
    for i in $(seq $((secs * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "timed out after ${secs}s waiting for $what" >&2
    return 1
}

# install_slurm_packages WHO: install munge, Slurm and MariaDB from Debian's packages when any is missing.
install_slurm_packages() {
    local who=$1 missing=() bin
    for bin in munged slurmctld slurmd sinfo slurmdbd mariadbd; do
        command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || missing+=("$bin")
    done
    [ ${#missing[@]} = 0 ] && return 0
    command -v apt-get >/dev/null || { echo "$who: missing ${missing[*]} and no apt-get to install them; install munge, slurmctld, slurmd, slurm-client, slurmdbd and mariadb-server by hand." >&2; exit 1; }
    echo "$who: installing munge slurmctld slurmd slurm-client slurmdbd mariadb-server (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q munge slurmctld slurmd slurm-client slurmdbd mariadb-server >/dev/null
}

# stop_cluster_daemons STATE NODE...: stop the multi-node cluster's Slurm daemons in parallel, each waiting for
# its own exit (one after another would add their exit times up); MariaDB and munged stay up.
stop_cluster_daemons() {
    local state=$1 node; shift
    for node in "$@"; do stop_daemon "$state/run/slurmd.$node.pid" slurmd & done
    stop_daemon "$state/run/slurmctld.pid" slurmctld &
    stop_daemon "$state/run/slurmdbd.pid" slurmdbd &
    wait
}

# slurm_conf_common STATE: the slurm.conf lines both local clusters share (process tracking, scheduling, accounting).
# batch_sched_delay=0: the default delays each array task by 3 s; KillWait=5: submitit ignores SIGTERM.
# cred_expire=15: a requeued job (a training job past its time limit) waits this long before it may start again;
# Slurm's default 120 s would make the time-limit test wait minutes per requeue. sched_interval=2: nothing but the
# main scheduling loop starts a requeued job once that wait is over, and it runs every 60 s by default, so each
# requeued piece of the time-limit test sat about 30 s in the queue (12 pieces in one CI run, 2026-12-07).
# UnkillableStepTimeout=180: in one CI run (2026-12-07) a requeued training step outlived its SIGKILL by Slurm's
# default 60 s, once in about 300 requeues (the others ended within 1 to 5.5 s); slurmstepd then gave up, drained
# the only node ("Kill task failed"), and every later Slurm test waited for a node that never came back. Whether
# that step was slow or stuck is unknown: a slow one now has 180 s, and a stuck one leaves a trace (below).
# UnkillableStepProgram: what the step's processes were doing, should it happen again (write_unkillable_probe).
slurm_conf_common() {
    echo "UnkillableStepProgram=$1/etc/unkillable-step.sh"
    cat <<'EOF'
AuthInfo=cred_expire=15
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2
KillWait=5
UnkillableStepTimeout=180
MinJobAge=300
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
EOF
}

# write_unkillable_probe STATE: the program slurmstepd runs when a step outlives its signals by UnkillableStepTimeout,
# just before Slurm drains the node: every process's state and wait channel, appended to STATE/log/unkillable.log.
write_unkillable_probe() {
    local state=$1
    cat > "$state/etc/unkillable-step.sh" <<EOF
#!/bin/sh
# Written by slurm/lib.sh; edits are overwritten. Run by slurmstepd (UnkillableStepProgram).
{ date -u +%FT%TZ; echo "job \${SLURM_JOB_ID:-?} step \${SLURM_STEP_ID:-?}"; ps -eo pid,ppid,stat,wchan:32,etime,args; echo; } \\
    >> "$state/log/unkillable.log" 2>&1
EOF
    chmod 755 "$state/etc/unkillable-step.sh"
}

# mariadb_init_datadir STATE: a fresh MariaDB data directory under STATE/db (once); its log's tail on failure.
mariadb_init_datadir() {
    local state=$1
    [ -d "$state/db/mysql" ] && return 0
    mariadb-install-db --no-defaults --user=root --datadir="$state/db" --auth-root-authentication-method=socket \
        >"$state/log/mariadb-install.log" 2>&1 || { tail -20 "$state/log/mariadb-install.log" >&2; return 1; }
}

# mariadb_grant_slurm SOCKET PASSWORD: the slurm database user slurmdbd logs in as, with its current password.
mariadb_grant_slurm() {
    local sock=$1 dbpass=$2
    mariadb -S "$sock" -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$dbpass';
        ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$dbpass';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
}
