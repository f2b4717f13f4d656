#!/usr/bin/env bash
# Load on 4 real tallyd: 8 concurrent clients submit 2,400 transfers (300 each,
# all outstanding at once), every one must get an ok receipt; invalid ones
# (bad signature, replayed nonce, overdraft) get the right rejection. Then the
# replicas stop and all 4 data directories must audit clean with one head hash.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

D="$E2E_TMP/net"
PORT=$(e2e_base_port)
CLIENTS=8
PER_CLIENT=${E2E_LOAD_PER_CLIENT:-300}
TOTAL=$((CLIENTS * PER_CLIENT))

"$TALLY" init --dir "$D" --base-port "$PORT" --accounts "$CLIENTS" >/dev/null
timeout 60 "$TALLY" testnet start --dir "$D" --json >/dev/null
ok "testnet up on port $PORT"

# --- load: client k pays account k+1 (mod 8), PER_CLIENT transfers of 3 ------
t0=$(date +%s.%N)
pids=()
for k in $(seq 0 $((CLIENTS - 1))); do
    to=$(((k + 1) % CLIENTS))
    timeout 120 "$TALLY" submit --config "$D/cluster.json" --key "$D/accounts/account-$k.key" \
        --to "@$D/accounts/account-$to.key" --amount 3 --count "$PER_CLIENT" --timeout 90 \
        --json >"$E2E_TMP/load-$k.json" 2>"$E2E_TMP/load-$k.err" &
    pids+=($!)
done
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || fail "client $i: $(cat "$E2E_TMP/load-$i.err" "$E2E_TMP/load-$i.json")"
done
t1=$(date +%s.%N)
okc=0
for k in $(seq 0 $((CLIENTS - 1))); do
    n=$(jq -r .ok "$E2E_TMP/load-$k.json")
    expect_eq "client $k ok receipts" "$n" "$PER_CLIENT"
    okc=$((okc + n))
done
expect_eq "ok receipts" "$okc" "$TOTAL"
rate=$(awk -v n="$TOTAL" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
ok "$TOTAL transfers from $CLIENTS clients: all ok in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s ($rate tx/s)"

for k in $(seq 0 $((CLIENTS - 1))); do
    b=$("$TALLY" balance --config "$D/cluster.json" "@$D/accounts/account-$k.key" --json)
    expect_eq "account $k nonce" "$(jq -r .nonce <<<"$b")" "$PER_CLIENT"
    expect_eq "account $k balance" "$(jq -r .balance <<<"$b")" 1000000000
done
ok "balances and nonces after the load"

# --- invalid transactions, concurrently --------------------------------------
A0="$D/accounts/account-0.key"
A1="$D/accounts/account-1.key"
submit_expect() { # NAME WANT_RESULT ARGS...
    local name=$1 want=$2
    shift 2
    local out rc
    set +e
    out=$("$TALLY" submit --config "$D/cluster.json" --json "$@")
    rc=$?
    set -e
    [ $rc -eq 1 ] || fail "$name: exit $rc ($out)"
    expect_eq "$name result" "$(jq -r .result <<<"$out")" "$want"
}
submit_expect "bad signature" bad_signature --key "$A0" --to "@$A1" --amount 1 --corrupt-signature &
p1=$!
submit_expect "replayed nonce" bad_nonce --key "$A1" --to "@$A0" --amount 1 --nonce 7 &
p2=$!
submit_expect "overdraft" insufficient_funds --key "$D/accounts/account-2.key" --to "@$A0" \
    --amount 2000000000 &
p3=$!
wait $p1 || fail "bad signature"
wait $p2 || fail "replayed nonce"
wait $p3 || fail "overdraft"
ok "invalid transactions rejected (bad signature, replayed nonce, overdraft)"

# --- tally bench against the running cluster: closed, then open loop -------
b=$(timeout 60 "$TALLY" bench --config "$D/cluster.json" --accounts-dir "$D/accounts" \
    --outstanding 64 --duration 2 --warmup 0.5 --json --quiet) || fail "bench, closed loop: $b"
expect_eq "bench rejected" "$(jq -r .rejected <<<"$b")" 0
expect_eq "bench without a receipt" "$(jq -r .no_receipt <<<"$b")" 0
expect_eq "bench whole seconds" "$(jq -r '.per_second | length' <<<"$b")" 2
expect_eq "bench receipts per second add up" "$(jq -r '.per_second | add' <<<"$b")" \
    "$(jq -r .window_receipts <<<"$b")"
jq -e '.ok > 0 and .tx_per_s > 0 and .latency.p50_ms > 0 and .ceiling.ceiling_tx_per_s > 0 and
    .ceiling_fraction > 0' <<<"$b" >/dev/null || fail "bench figures: $b"
ok "bench, closed loop: $(jq -r '.tx_per_s | floor' <<<"$b") tx/s, per second $(jq -c .per_second <<<"$b")"
b=$(timeout 60 "$TALLY" bench --config "$D/cluster.json" --accounts-dir "$D/accounts" \
    --rate 200 --duration 1 --warmup 0.2 --json --quiet) || fail "bench, open loop: $b"
expect_eq "open-loop rejected" "$(jq -r .rejected <<<"$b")" 0
expect_eq "open-loop without a receipt" "$(jq -r .no_receipt <<<"$b")" 0
jq -e '.mode == "open" and .ok > 100 and .latency.p99_ms > 0' <<<"$b" >/dev/null ||
    fail "open-loop figures: $b"
ok "bench, open loop at 200 tx/s: p50 $(jq -r .latency.p50_ms <<<"$b") ms"

st=$("$TALLY" status --config "$D/cluster.json" --json)
for i in 0 1 2 3; do
    expect_eq "replica $i bad envelope signatures" \
        "$(jq -r ".replicas[$i].status.dropped.bad_signature" <<<"$st")" 0
done
ok "status: $(jq -c '[.replicas[].status.ledger.height]' <<<"$st") heights"

# --- stop; every data directory audits clean with the same head -------------
# Let the slowest replica catch up first (poll the status with a deadline).
same_height() {
    "$TALLY" status --config "$D/cluster.json" --json |
        jq -e '[.replicas[].status.last_executed] | unique | length == 1' >/dev/null
}
wait_until 20 same_height || fail "replicas did not converge on one height"
"$TALLY" testnet stop --dir "$D" >/dev/null
heads=()
for i in 0 1 2 3; do
    a=$("$TALLY" audit --data "$D/data-$i" --json --quiet) || fail "audit of data-$i: $a"
    expect_eq "audit data-$i intact" "$(jq -r .intact <<<"$a")" true
    heads+=("$(jq -r .head_hash <<<"$a")")
    txs=$(jq -r .transactions <<<"$a")
    [ "$txs" -ge $((TOTAL + 2)) ] || fail "data-$i has $txs transactions"
done
for i in 1 2 3; do expect_eq "head hash of data-$i" "${heads[$i]}" "${heads[0]}"; done
ok "audit: 4 data directories intact, head ${heads[0]:0:16}"
echo "test_load: passed in $(($(date +%s) - E2E_START)) s"
