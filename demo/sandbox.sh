#!/usr/bin/env bash
# The `make demo` sandbox: network namespaces and veth pairs on this machine, nothing else touched.
#   demo/sandbox.sh up       build it (idempotent: rebuilds a half-built sandbox)
#   demo/sandbox.sh traffic  send the demo traffic from the peers (stays inside the namespaces)
#   demo/sandbox.sh down     remove every namespace (and with them their interfaces)
#   demo/sandbox.sh check    fail if anything of the sandbox is left
# SANDBOX_HOSTS="name:N ..." builds other hosts (N: the 10.77.N / 10.78.N networks) than the demo's two.
set -euo pipefail
read -r -a HOSTS <<<"${SANDBOX_HOSTS:-edge1:1 edge2:2}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"

nsexists() { [ -e "/run/netns/$1" ]; }

up_one() {
    local host=$1 n=$2 ns="cnfdemo-$1" peer="cnfdemo-$1-peer"
    nsexists "$ns" && nsexists "$peer" && return 0
    down_one "$host"
    ip netns add "$ns"
    ip netns add "$peer"
    ip -n "$ns" link add ft0 type veth peer name ft0p netns "$peer"
    ip -n "$ns" link add fw0 type veth peer name fw0p netns "$peer"
    ip -n "$ns" addr add "10.77.$n.1/24" dev ft0
    ip -n "$ns" addr add "fd00:77:$n::1/64" dev ft0 nodad
    ip -n "$ns" addr add "10.78.$n.1/24" dev fw0
    ip -n "$ns" addr add "fd00:78:$n::1/64" dev fw0 nodad
    ip -n "$peer" addr add "10.77.$n.2/24" dev ft0p
    ip -n "$peer" addr add "fd00:77:$n::2/64" dev ft0p nodad
    for last in 2 3 4; do ip -n "$peer" addr add "10.78.$n.$last/24" dev fw0p; done
    ip -n "$peer" addr add "fd00:78:$n::2/64" dev fw0p nodad
    ip -n "$peer" addr add "fd00:78:$n::3/64" dev fw0p nodad
    for side in "$ns" "$peer"; do
        ip -n "$side" link set lo up
        for dev in $(ip -n "$side" -o link show type veth | awk -F'[ :@]+' '{print $2}'); do
            ip -n "$side" link set "$dev" up
        done
    done
    # Static neighbours: no packet waits for ARP/NDP, and a deny rule cannot starve address resolution.
    local mac net
    for dev in ft0 fw0; do
        mac=$(ip -n "$ns" -j link show dev "$dev" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])')
        net=78
        if [ "$dev" = ft0 ]; then net=77; fi
        ip -n "$peer" neigh replace "10.$net.$n.1" lladdr "$mac" dev "${dev}p" nud permanent
        ip -n "$peer" neigh replace "fd00:$net:$n::1" lladdr "$mac" dev "${dev}p" nud permanent
        mac=$(ip -n "$peer" -j link show dev "${dev}p" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])')
        for addr in $(ip -n "$peer" -o addr show dev "${dev}p" scope global | awk '{print $4}' | cut -d/ -f1); do
            ip -n "$ns" neigh replace "$addr" lladdr "$mac" dev "$dev" nud permanent
        done
    done
    echo "sandbox $host: namespaces $ns, $peer"
}

down_one() {
    local host=$1 name
    for name in "cnfdemo-$host" "cnfdemo-$host-peer"; do
        if nsexists "$name"; then ip netns del "$name"; fi
    done
}

case "${1:-}" in
    up) for h in "${HOSTS[@]}"; do up_one "${h%%:*}" "${h##*:}"; done ;;
    down) for h in "${HOSTS[@]}"; do down_one "${h%%:*}"; done; echo "sandbox removed" ;;
    traffic) for h in "${HOSTS[@]}"; do
                 "$PYTHON" "$HERE/traffic.py" "${h%%:*}" "${h##*:}"
             done ;;
    check)
        left=$(ip netns list | awk '{print $1}' | grep '^cnfdemo-' || true)
        pins=$(ls -d /sys/fs/bpf/cnf/demo_* 2>/dev/null || true)
        state=$(ls /var/lib/cnf-ebpf/apps/demo_* 2>/dev/null || true)
        if [ -n "$left$pins$state" ]; then
            echo "left behind: $left $pins $state"
            exit 1
        fi
        echo "nothing of the demo is left (namespaces, pins, state)" ;;
    *) echo "usage: $0 up|traffic|down|check" >&2; exit 2 ;;
esac
