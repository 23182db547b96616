#!/bin/sh
# Make the keys of the CURVE pool example, next to this script:
#
#   keys/node1.key, keys/node1.key_secret     node1's pair (node1.ini: curve_secret_key)
#   keys/node2.key, keys/node2.key_secret     node2's pair
#   keys/proxy.key, keys/proxy.key_secret     circusmeta proxy's pair (pool.ini)
#   keys/admin.key, keys/admin.key_secret     a client allowed everything (pool.ini)
#   keys/readonly.key, keys/readonly.key_secret   a client that may only read (pool-readonly.ini)
#   clients/NODE/admin/admin.key, clients/NODE/readonly/readonly.key   who each node admits
#   clients/proxy/readonly/{admin,readonly}.key   who may subscribe to the proxy
#
# The .key_secret files are created mode 0600: keep them so. Only public .key files are copied
# around; a node never needs a client's secret. Existing keys are never replaced (the script
# stops); remove keys/ and clients/ to start over (git ignores both).
#
# It runs circusctl keygen with the repository's .venv/bin/python when there is one (`make
# venv` makes it), else with python3; PYTHON names another interpreter that has circus.
set -eu
cd "$(dirname "$0")"
if [ -z "${PYTHON:-}" ]; then
    if [ -x ../../.venv/bin/python ]; then
        PYTHON=../../.venv/bin/python
    else
        PYTHON=python3
    fi
fi
if ! "$PYTHON" -c "import circus" 2>/dev/null; then
    echo "make-keys.sh: $PYTHON cannot import circus: run 'make venv' at the repository root," \
         "or set PYTHON to an interpreter that has it" >&2
    exit 2
fi

keygen() {
    "$PYTHON" -m circus.cli.circusctl keygen "$1" --dir keys >/dev/null
}

for name in node1 node2 proxy admin readonly; do
    keygen "$name"
done
for node in node1 node2; do
    mkdir -p "clients/$node/admin" "clients/$node/readonly"
    cp keys/admin.key "clients/$node/admin/"
    cp keys/readonly.key "clients/$node/readonly/"
done
mkdir -p clients/proxy/readonly
cp keys/admin.key keys/readonly.key clients/proxy/readonly/
echo "keys in $(pwd)/keys, authorized public keys in $(pwd)/clients"
