#!/usr/bin/env bash
# Create the peer virtualenvs used by peerbench.py, if they are missing:
#   $PEERS/circus      circus==0.19.0 + psutil
#   $PEERS/supervisor  supervisor==4.3.0
#   $PEERS/bench       psutil (runs the harness) + gunicorn (a server of scenario S6)
# PEERS defaults to ${PEERBENCH_PEERS:-${TMPDIR:-/tmp}/peers}; PYTHON to python3.
# Idempotent: a venv whose packages import at the expected versions is left
# alone; a missing or broken one is (re)created.  Prints one line per venv it
# creates, nothing otherwise (pip's output goes to $PEERS/NAME.log).
# gunicorn is optional: if it cannot be installed, a warning says so (the reason is in
# $PEERS/bench-gunicorn.log) and S6 runs without it.
set -euo pipefail

PEERS=${PEERS:-${PEERBENCH_PEERS:-${TMPDIR:-/tmp}/peers}}
PYTHON=${PYTHON:-python3}
GUNICORN_VERSION=${GUNICORN_VERSION:-27.0.1}
mkdir -p "$PEERS"

# ok VENV CHECK: run CHECK with the venv's python, isolated (-I) so that a
# `circus` package in the current directory cannot shadow the installed one
ok() {
    [ -x "$1/bin/python" ] && "$1/bin/python" -I -c "$2" >/dev/null 2>&1
}

# ensure NAME CHECK PIP-ARGS...
ensure() {
    local name=$1 check=$2
    shift 2
    local venv=$PEERS/$name
    if ok "$venv" "$check"; then
        return 0
    fi
    echo "setup_peers: creating $venv ($*)"
    if ! { "$PYTHON" -m venv "$venv" &&
           "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; } \
            >"$PEERS/$name.log" 2>&1; then
        echo "setup_peers: failed to create $venv, see $PEERS/$name.log" >&2
        tail -n 20 "$PEERS/$name.log" >&2
        exit 1
    fi
    if ! ok "$venv" "$check"; then
        echo "setup_peers: $venv was installed but does not pass: $check" >&2
        exit 1
    fi
}

ensure circus \
    "import importlib.metadata as m, circus, zmq, tornado, psutil; assert m.version('circus') == '0.19.0'" \
    circus==0.19.0 psutil
ensure supervisor \
    "import importlib.metadata as m, supervisor; assert m.version('supervisor') == '4.3.0'" \
    supervisor==4.3.0
ensure bench "import psutil" psutil

# optional NAME CHECK PIP-ARGS...: install PIP-ARGS into the existing bench venv unless
# CHECK passes already; a failure is a warning, not an error
optional() {
    local name=$1 check=$2
    shift 2
    local venv=$PEERS/bench
    if ok "$venv" "$check"; then
        return 0
    fi
    echo "setup_peers: installing $* into $venv"
    if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" \
            >"$PEERS/bench-$name.log" 2>&1 || ! ok "$venv" "$check"; then
        echo "setup_peers: warning: could not install $* into $venv (see" \
             "$PEERS/bench-$name.log); S6 will run without $name" >&2
        tail -n 5 "$PEERS/bench-$name.log" >&2
    fi
}

optional gunicorn \
    "import importlib.metadata as m, gunicorn; assert m.version('gunicorn') == '$GUNICORN_VERSION'" \
    "gunicorn==$GUNICORN_VERSION"
