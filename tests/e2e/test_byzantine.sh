#!/usr/bin/env bash
# A Byzantine primary as a real process (issue 5): replica 0 runs
# build/tallyd-faulty with TALLY_FAULT=equivocate (f backups get one batch,
# the others a different, validly signed one for the same sequence number). Under load
# the backups catch it, replace it by a view change, and every transfer still
# gets its receipt; the three correct replicas end with the same head and
# their ledgers audit clean with verified checkpoints.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

FAULTY="$TALLY_BIN_DIR/tallyd-faulty"
[ -x "$FAULTY" ] || fail "no $FAULTY (make build/tallyd-faulty)"
D="$E2E_TMP/net"
PORT=$(e2e_base_port)
CLIENTS=6
PER_CLIENT=150
CFG="$D/cluster.json"

"$TALLY" init --dir "$D" --base-port "$PORT" --accounts "$CLIENTS" >/dev/null
jq '.checkpoint_interval = 16 | .log_window = 64 | .batch_max_txs = 8' "$CFG" >"$CFG.new"
mv "$CFG.new" "$CFG"
timeout 60 "$TALLY" testnet start --dir "$D" --json >/dev/null

# Replace replica 0 (the primary of view 0) by the equivocating build.
pid=$(cat "$D/replica-0.pid")
kill -TERM "$pid"
while alive "$pid"; do sleep 0.05; done
TALLY_FAULT=equivocate "$FAULTY" --config "$CFG" --id 0 --data "$D/data-0" \
    >>"$D/replica-0.log" 2>&1 &
echo $! >"$D/replica-0.pid"
E2E_PIDS+=($!)
status() { "$TALLY" status --config "$CFG" --timeout 1 --json 2>/dev/null || true; }
all_up() { status | jq -e '.up == 4' >/dev/null; }
wait_until 20 all_up || fail "the faulty replica did not come up"
grep -q "TALLY_FAULT=equivocate" "$D/replica-0.log" || fail "no fault injection line"
ok "replica 0 runs TALLY_FAULT=equivocate (port $PORT)"

pids=()
for k in $(seq 0 $((CLIENTS - 1))); do
    timeout 120 "$TALLY" submit --config "$CFG" --key "$D/accounts/account-$k.key" \
        --to "@$D/accounts/account-$(((k + 1) % CLIENTS)).key" --amount 2 --count "$PER_CLIENT" \
        --timeout 90 --json >"$E2E_TMP/load-$k.json" 2>"$E2E_TMP/load-$k.err" &
    pids+=($!)
done
# A Byzantine primary may order a client's pipelined transfers against their
# nonces (that is its prerogative): some could get a "bad nonce" receipt.
# Every transfer must get a receipt all the same, and exactly the ok ones
# execute.
declare -a oks
for k in "${!pids[@]}"; do
    wait "${pids[$k]}" || true
    j="$E2E_TMP/load-$k.json"
    [ -s "$j" ] || fail "client $k: $(cat "$E2E_TMP/load-$k.err")"
    expect_eq "client $k receipts" "$(jq -r '.submitted - .no_receipt' "$j")" "$PER_CLIENT"
    oks[$k]=$(jq -r .ok "$j")
done
ok "$((CLIENTS * PER_CLIENT)) transfers, every one with a receipt (ok: ${oks[*]})"

grep -h "L2160" "$D"/replica-[123].log | sed -n 1p | sed 's/^/  log: /' || true
grep -qh "two different pre-prepares" "$D"/replica-[123].log || fail "nobody caught the equivocation"
st=$(status)
view=$(jq -r '[.replicas[1:][] | .status.view] | min' <<<"$st")
[ "$view" -ge 1 ] || fail "still in view $view"
ok "equivocation caught, view changed to $view (primary $(jq -r '.replicas[1].status.primary' <<<"$st"))"

for k in $(seq 0 $((CLIENTS - 1))); do
    b=$("$TALLY" balance --config "$CFG" "@$D/accounts/account-$k.key" --json)
    prev=$(((k + CLIENTS - 1) % CLIENTS))
    expect_eq "account $k nonce" "$(jq -r .nonce <<<"$b")" "${oks[$k]}"
    expect_eq "account $k balance" "$(jq -r .balance <<<"$b")" \
        $((1000000000 - 2 * ${oks[$k]} + 2 * ${oks[$prev]}))
done
ok "every ok transfer executed exactly once, nothing else moved"

same_height() {
    status | jq -e '[.replicas[1:][] | .status.last_executed] | unique | length == 1' >/dev/null
}
wait_until 30 same_height || fail "correct replicas did not converge"
"$TALLY" testnet stop --dir "$D" >/dev/null
check_ledgers "$CFG" "$D" 1 2 3
ok "3 correct data directories: same head ${LEDGER_HEAD:0:16}, audits and certificates verify"
echo "test_byzantine: passed in $(($(date +%s) - E2E_START)) s"
