#!/bin/bash
# Does XDP on the uplink pay for the reverse path? Replies of masqueraded
# flows (outside -> container) with the TC program only (--xdp off), and
# with the XDP program in generic and in native mode:
#   udp-64: 64-byte frames (18-byte UDP payload) from one sending core
#           (sendmmsg), packets per second delivered to the container's
#           socket over the sending time
#   tcp:    iperf3 -R download into the container, Gbit/s
# Sender pinned to CPU 0, receiver to CPU 1. Rounds alternate the modes.
#
# usage: tests/bench/xdp-revnat.sh [ROUNDS] [SECS]
#   OFFLOAD=1 keeps the outside veth's checksum offload (CHECKSUM_PARTIAL
#   packets, which the XDP program leaves to TC); by default the outside
#   sends complete checksums, as frames off a real wire carry them.
# Needs root, iperf3, ethtool. Creates namespaces xb-*; removes them.
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-5}
cd "$(dirname "$0")/../.."
cargo build -q --release -p ebridge -p ebridge-tests --bin ebridge --bin udpflood
EB=$PWD/target/release/ebridge
FLOOD=$PWD/target/release/udpflood
N=xb-node O=xb-out C=xb-c BR=xbbr0

cleanup() {
    nsenter --net=/run/netns/$N "$EB" down --bridge $BR >/dev/null 2>&1 || true
    for ns in $C $N $O; do ip netns del $ns 2>/dev/null || true; done
}
trap cleanup EXIT

setup() { # mode
    cleanup
    ip netns add $N; ip netns add $O
    ip -n $N link set lo up; ip -n $O link set lo up
    ip -n $N link add uplink0 type veth peer name eth0 netns $O
    ip -n $N addr add 198.51.100.1/24 dev uplink0; ip -n $N link set uplink0 up
    ip -n $O addr add 198.51.100.2/24 dev eth0; ip -n $O link set eth0 up
    ip -n $N route add default via 198.51.100.2
    if [ "${OFFLOAD:-0}" != 1 ]; then
        ip netns exec $O ethtool -K eth0 tx off >/dev/null
    fi
    nsenter --net=/run/netns/$N "$EB" up --bridge $BR --subnet 172.17.0.0/16 --xdp "$1" >/dev/null
    nsenter --net=/run/netns/$N "$EB" endpoint add --bridge $BR $C >/dev/null
    ip netns exec $C ping -c 1 -W 1 198.51.100.2 >/dev/null
}

# Prints packets per second delivered to the container's socket over the
# sender's time (the receive path runs in the sender CPU's softirq, so that
# CPU's budget per packet decides the rate).
udp() {
    local out
    out=$(mktemp)
    ip netns exec $O taskset -c 0 "$FLOOD" send 198.51.100.2:9000 18 "$SECS" >"$out" &
    sleep 0.3
    local got
    got=$(ip netns exec $C taskset -c 1 "$FLOOD" recv 198.51.100.2:9000 $((SECS + 3)))
    wait
    local sent
    sent=$(sed 's/sent=\([0-9]*\).*/\1/' "$out")
    rm -f "$out"
    got=${got#received=}
    got=${got%% *}
    echo "sent $sent delivered $got" >&2
    echo $((got / SECS))
}

tcp() {
    ip netns exec $O taskset -c 0 iperf3 -s -1 -B 198.51.100.2 -D >/dev/null
    sleep 0.3
    ip netns exec $C taskset -c 1 iperf3 -c 198.51.100.2 -R -t "$SECS" -J |
        python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))'
}

xdp_share() {
    nsenter --net=/run/netns/$N "$EB" show stats --bridge $BR --json | python3 -c '
import json, sys
s = {r["reason"]: r["packets"] for r in json.load(sys.stdin)}
x, t = s.get("xdp-revnat-in", 0), s.get("revnat-in", 0)
print("%.0f%%" % (100.0 * x / max(1, x + t)))'
}

declare -A UDP TCP SHARE
for r in $(seq "$ROUNDS"); do
    for mode in off generic native; do
        setup "$mode"
        u=$(udp); t=$(tcp); s=$(xdp_share)
        UDP[$mode]+="$u "; TCP[$mode]+="$t "; SHARE[$mode]="$s"
        echo "round $r $mode: udp-64 ${u} pps, tcp ${t} Gbit/s, replies in XDP ${s}" >&2
    done
done

mean() { tr ' ' '\n' | awk 'NF { s += $1; n++ } END { printf "%.2f", s / n }'; }
base_u=$(echo "${UDP[off]}" | mean); base_t=$(echo "${TCP[off]}" | mean)
echo "| mode | udp-64 kpps (runs) | ratio | tcp Gbit/s (runs) | ratio | replies in XDP |"
echo "|---|---|---|---|---|---|"
for mode in off generic native; do
    u=$(echo "${UDP[$mode]}" | mean); t=$(echo "${TCP[$mode]}" | mean)
    runs_u=$(for v in ${UDP[$mode]}; do printf "%.0f " "$(echo "$v / 1000" | bc -l)"; done)
    printf "| %s | %.0f (%s) | %.2f | %.2f (%s) | %.2f | %s |\n" "$mode" \
        "$(echo "$u / 1000" | bc -l)" "${runs_u% }" "$(echo "$u / $base_u" | bc -l)" \
        "$t" "${TCP[$mode]% }" "$(echo "$t / $base_t" | bc -l)" "${SHARE[$mode]}"
done
