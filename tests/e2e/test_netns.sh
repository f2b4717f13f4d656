#!/usr/bin/env bash
# Separate hosts (issue 7): each replica in its own network namespace, joined
# to a bridge by a veth pair, the client in a fifth one; links shaped with tc
# (netem latency and loss where the kernel has it, else a rate limit). Under
# load: cut the primary off (a view change replaces it), heal it (it rejoins);
# cut the cluster 2-2 (no progress, no divergence), heal it (progress resumes).
# Same end checks as the crash loop. Root only: skipped with a message
# otherwise. Addresses 10.213.N.x exist only inside the namespaces it creates.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ]; then
    echo "test_netns: skipped (needs root for network namespaces)"
    exit 0
fi
TAG="tly$((RANDOM % 90000 + 10000))"
NET="10.213.$((RANDOM % 200 + 20))"
BR="${TAG}br"
if ! ip netns add "${TAG}probe" 2>/dev/null; then
    echo "test_netns: skipped (ip netns add is not permitted here)"
    exit 0
fi
ip netns del "${TAG}probe"

netns_cleanup() {
    for i in 0 1 2 3 c; do ip netns del "$TAG$i" 2>/dev/null || true; done
    ip link del "$BR" 2>/dev/null || true
}
trap 'rc=$?; netns_cleanup; e2e_cleanup_rc $rc' EXIT
e2e_cleanup_rc() {
    set +e
    (exit "$1")
    e2e_cleanup
}

ip link add "$BR" type bridge
ip link set "$BR" up
host() { # NAME LAST-OCTET
    ip netns add "$TAG$1"
    ip link add "${TAG}h$1" type veth peer name "${TAG}n$1"
    ip link set "${TAG}n$1" netns "$TAG$1"
    ip link set "${TAG}h$1" master "$BR" up
    ip netns exec "$TAG$1" ip link set lo up
    ip netns exec "$TAG$1" ip addr add "$NET.$2/24" dev "${TAG}n$1"
    ip netns exec "$TAG$1" ip link set "${TAG}n$1" up
}
for i in 0 1 2 3; do host "$i" $((i + 1)); done
host c 100
# Shape every replica's link: netem delay and loss when the kernel has it.
if ip netns exec "${TAG}0" tc qdisc add dev "${TAG}n0" root netem delay 5ms 2ms loss 1% 2>/dev/null; then
    for i in 1 2 3; do
        ip netns exec "$TAG$i" tc qdisc add dev "${TAG}n$i" root netem delay 5ms 2ms loss 1%
    done
    ok "links: netem 5 ms +- 2 ms, 1 % loss"
else
    for i in 0 1 2 3; do
        ip netns exec "$TAG$i" tc qdisc add dev "${TAG}n$i" root tbf rate 50mbit burst 64kbit \
            latency 20ms
    done
    ok "links: rate-limited with tbf (tc netem is not available in this kernel: no latency/loss)"
fi

D="$E2E_TMP/net"
PORT=27100
CFG="$D/cluster.json"
"$TALLY" init --dir "$D" --base-port "$PORT" --accounts 4 >/dev/null
jq --arg net "$NET" --argjson p "$PORT" '.checkpoint_interval = 16 | .log_window = 64 |
    .request_timeout_ms = 500 |
    .replicas |= [.[] | .peer_address = "tcp://\($net).\(.id + 1):\($p)" |
                        .client_address = "tcp://\($net).\(.id + 1):\($p + 1)"]' \
    "$CFG" >"$CFG.new"
mv "$CFG.new" "$CFG"
start_replica() {
    ip netns exec "$TAG$1" "$TALLYD" --config "$CFG" --id "$1" --data "$D/data-$1" \
        >>"$D/replica-$1.log" 2>&1 &
    echo $! >"$D/replica-$1.pid"
}
for i in 0 1 2 3; do start_replica "$i"; done
inc() { ip netns exec "${TAG}c" "$@"; }
status() { inc "$TALLY" status --config "$CFG" --timeout 1 --json 2>/dev/null || true; }
all_up() { status | jq -e '.up == 4 and ([.replicas[].status.peers_connected] | min) == 3' \
    >/dev/null; }
wait_until 30 all_up || fail "replicas in namespaces did not connect"
ok "4 replicas in namespaces ${TAG}0..3 on $NET.0/24, client in ${TAG}c"

client_loop() {
    local k=$1 out
    while [ ! -e "$D/stop" ]; do
        if out=$(inc "$TALLY" submit --config "$CFG" --key "$D/accounts/account-$k.key" \
            --to "@$D/accounts/account-$(((k + 1) % 4)).key" --amount 1 --timeout 10 \
            --json 2>/dev/null); then
            jq -r '.tx_hash' <<<"$out" >>"$E2E_TMP/receipts-$k"
        fi
    done
}
for k in 0 1 2 3; do
    : >"$E2E_TMP/receipts-$k"
    client_loop "$k" &
    E2E_PIDS+=($!)
done
receipts() { cat "$E2E_TMP"/receipts-* | wc -l; }
more_than() { [ "$(receipts)" -gt "$1" ]; }
wait_until 30 more_than 20 || fail "no receipts across namespaces"
ok "load flowing: $(receipts) receipts"

# --- cut the primary off, heal it -------------------------------------------
link() { ip netns exec "$TAG$1" ip link set "${TAG}n$1" "$2"; }
view_of() { status | jq -r "[.replicas[] | select(.id != $1 and .up) | .status |
    select(.view_change.view_active) | .view] | min // 0"; }
link 0 down
before=$(receipts)
moved() { [ "$(view_of 0)" -ge 1 ]; }
wait_until 20 moved || fail "no view change with the primary cut off"
wait_until 20 more_than "$before" || fail "no receipts with the primary cut off"
ok "primary cut off: view $(view_of 0), receipts flowing ($(receipts))"
link 0 up
back() { status | jq -e '.up == 4 and ([.replicas[].status.view] | unique | length == 1)' \
    >/dev/null; }
wait_until 30 back || fail "the old primary did not rejoin"
ok "healed: all 4 in view $(view_of 9)"

# --- cut the cluster 2-2 ------------------------------------------------------
blackhole() { # A B: A stops reaching B's address, both ways
    ip netns exec "$TAG$1" ip route "$3" blackhole "$NET.$(($2 + 1))/32"
    ip netns exec "$TAG$2" ip route "$3" blackhole "$NET.$(($1 + 1))/32"
}
for a in 0 1; do for b in 2 3; do blackhole "$a" "$b" add; done; done
# No quorum on either side: nothing can commit. Absence of progress can only
# be observed over a window: let what was already delivered settle for 1 s,
# then watch 3 s (observation windows, not waits for an event).
settled=$(status | jq -r '[.replicas[].status.last_executed] | max')
sleep 1
h1=$(status | jq -r '[.replicas[].status.last_executed] | max')
sleep 3
h2=$(status | jq -r '[.replicas[].status.last_executed] | max')
expect_eq "progress while split 2-2" "$h2" "$h1"
ok "split 2-2: no progress (executed stays at $h2; $settled when cut)"
for a in 0 1; do for b in 2 3; do blackhole "$a" "$b" del; done; done
before=$(receipts)
wait_until 60 more_than $((before + 10)) || fail "no progress after healing the split"
ok "healed: receipts flowing again ($(receipts))"

touch "$D/stop"
for p in "${E2E_PIDS[@]}"; do wait "$p" || true; done
E2E_PIDS=()
same_height() { status | jq -e '.up == 4 and ([.replicas[].status.last_executed] | unique |
    length == 1)' >/dev/null; }
wait_until 60 same_height || fail "replicas did not converge"
for i in 0 1 2 3; do kill -TERM "$(cat "$D/replica-$i.pid")"; done
for i in 0 1 2 3; do
    p=$(cat "$D/replica-$i.pid")
    dead() { ! alive "$1"; }
    wait_until 10 dead "$p" || kill -KILL "$p" 2>/dev/null || true
done
check_ledgers "$CFG" "$D" 0 1 2 3
check_receipts "$D/data-0" "$E2E_TMP"/receipts-*
ok "same head ${LEDGER_HEAD:0:16}; audits, certificates and $RECEIPTED receipts check"
echo "test_netns: passed in $(($(date +%s) - E2E_START)) s"
