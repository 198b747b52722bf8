# Helpers shared by local-cluster-up.sh and local-cluster-down.sh.

# pid_alive PIDFILE NAME: the pid in PIDFILE runs a process called NAME (a zombie counts as dead:
# PID 1 reaps slowly here and kill -0 succeeds on a zombie).
pid_alive() {
    local pidfile=$1 name=$2 pid state comm
    [ -s "$pidfile" ] || return 1
    pid=$(tr -dc '0-9' < "$pidfile")
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
