#!/bin/sh
# The three nodes of examples/pool.ini (web1, web2, batch1), each a circusd on this machine:
#
#   sh examples/pool/run.sh start     start them in the background (circusd --daemon)
#   sh examples/pool/run.sh status    which of them run, with their pids
#   sh examples/pool/run.sh stop      stop them (SIGTERM to the pid of each pidfile) and wait
#
# Their pidfiles and logs are NODE.pid and NODE.log in examples/pool/run/ (CIRCUS_POOL_RUN
# names another directory). circusd is the repository's .venv/bin/circusd when there is one
# (`make venv` makes it), else the circusd on PATH; CIRCUSD names another. Exit 0 when every
# node did it, 1 when one could not be started or stopped, 2 on a usage error.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
run=${CIRCUS_POOL_RUN:-$here/run}
nodes="web1 web2 batch1"
stop_timeout=30

find_circusd() {
    if [ -n "${CIRCUSD:-}" ]; then
        return
    elif [ -x "$root/.venv/bin/circusd" ]; then
        CIRCUSD=$root/.venv/bin/circusd
    elif command -v circusd >/dev/null 2>&1; then
        CIRCUSD=circusd
    else
        echo "run.sh: no circusd: run 'make venv' in $root first, or set CIRCUSD" >&2
        exit 2
    fi
}

# the pid in NODE's pidfile when that process is a circusd, else nothing
pid_of() {
    [ -f "$run/$1.pid" ] || return 0
    pid=$(cat "$run/$1.pid" 2>/dev/null) || return 0
    case "$pid" in '' | *[!0-9]*) return 0 ;; esac
    if alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q circusd; then
        echo "$pid"
    fi
}

# whether pid $1 is alive (a zombie nobody reaped yet is not)
alive() {
    [ -r "/proc/$1/stat" ] || return 1
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$state" ] && [ "$state" != Z ]
}

start() {
    find_circusd
    mkdir -p "$run"
    cd "$root"                      # the nodes' commands are relative to the repository root
    failed=0
    for node in $nodes; do
        pid=$(pid_of "$node")
        if [ -n "$pid" ]; then
            echo "$node: already running (pid $pid)"
            continue
        fi
        if out=$("$CIRCUSD" --daemon --pidfile "$run/$node.pid" --log-output "$run/$node.log" \
                 "$here/$node.ini"); then
            echo "$node: ${out#circusd: }"
        else
            echo "$node: did not start (see above and $run/$node.log)" >&2
            failed=1
        fi
    done
    return $failed
}

status() {
    down=0
    for node in $nodes; do
        pid=$(pid_of "$node")
        if [ -n "$pid" ]; then
            echo "$node: running (pid $pid)"
        else
            echo "$node: stopped"
            down=1
        fi
    done
    return $down
}

stop() {
    pids=""
    for node in $nodes; do
        pid=$(pid_of "$node")
        if [ -z "$pid" ]; then
            echo "$node: not running"
            continue
        fi
        kill -TERM "$pid" && pids="$pids $node:$pid"
    done
    failed=0
    for entry in $pids; do
        node=${entry%%:*}
        pid=${entry#*:}
        waited=0
        while alive "$pid"; do
            if [ "$waited" -ge $((stop_timeout * 10)) ]; then
                echo "$node: still running after ${stop_timeout} s (pid $pid)" >&2
                failed=1
                break
            fi
            sleep 0.1
            waited=$((waited + 1))
        done
        alive "$pid" || echo "$node: stopped (pid $pid)"
    done
    return $failed
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: sh examples/pool/run.sh start|status|stop" >&2; exit 2 ;;
esac
