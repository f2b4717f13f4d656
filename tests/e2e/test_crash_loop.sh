#!/usr/bin/env bash
# Crash loop (issue 7): 4 real tallyd under continuous load from several
# clients; CRASH_CYCLES times (default 50) kill -9 a random replica (the
# primary included) at a random moment, restart it after a random pause,
# and keep going. At the end: every transfer that got a receipt is in the
# ledger exactly once with result ok, all replicas have the same head, and
# `tally audit` and `tally verify-checkpoint` pass on every data directory.
#   CRASH_CYCLES=N   cycles (default 50)
#   CRASH_SEED=S     the random schedule (default: the time; printed)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

CYCLES=${CRASH_CYCLES:-50}
SEED=${CRASH_SEED:-$(date +%s)}
RANDOM=$SEED
D="$E2E_TMP/net"
PORT=$(e2e_base_port)
CLIENTS=6
CFG="$D/cluster.json"
echo "crash loop: $CYCLES cycles, CRASH_SEED=$SEED"

"$TALLY" init --dir "$D" --base-port "$PORT" --accounts "$CLIENTS" >/dev/null
jq '.checkpoint_interval = 16 | .log_window = 64 | .batch_max_txs = 32 |
    .request_timeout_ms = 500' "$CFG" >"$CFG.new"
mv "$CFG.new" "$CFG"
timeout 60 "$TALLY" testnet start --dir "$D" --json >/dev/null
ok "testnet up on port $PORT"

# Each client submits one transfer at a time and records every receipt.
client_loop() {
    local k=$1 to=$(((k + 1) % CLIENTS)) out
    while [ ! -e "$D/stop" ]; do
        if out=$("$TALLY" submit --config "$CFG" --key "$D/accounts/account-$k.key" \
            --to "@$D/accounts/account-$to.key" --amount 1 --timeout 20 --json 2>/dev/null); then
            jq -r '.tx_hash' <<<"$out" >>"$E2E_TMP/receipts-$k"
        fi
    done
}
for k in $(seq 0 $((CLIENTS - 1))); do
    : >"$E2E_TMP/receipts-$k"
    client_loop "$k" &
    E2E_PIDS+=($!)
done
receipts() { cat "$E2E_TMP"/receipts-* | wc -l; }
more_than() { [ "$(receipts)" -gt "$1" ]; }
wait_until 30 more_than 20 || fail "no receipts under load"

# Milliseconds to seconds for sleep (random moments and pauses, not waits).
ms() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }
for c in $(seq 1 "$CYCLES"); do
    victim=$((RANDOM % 4))
    sleep "$(ms $((RANDOM % 400)))" # a random moment under load
    pid=$(cat "$D/replica-$victim.pid")
    kill -KILL "$pid" 2>/dev/null || true
    while alive "$pid"; do sleep 0.01; done
    sleep "$(ms $((RANDOM % 600)))" # a random pause
    timeout 60 "$TALLY" testnet start --dir "$D" --json >/dev/null ||
        fail "cycle $c: replica $victim did not restart"
    if [ $((c % 10)) -eq 0 ]; then
        echo "  cycle $c: $(receipts) receipts; $("$TALLY" status --config "$CFG" --timeout 1 --json |
            jq -c '[.replicas[] | .status | "v\(.view) e\(.last_executed)"]' 2>/dev/null || echo '?')"
    fi
done
ok "$CYCLES kill -9 cycles done"
# A PRE-PREPARE record of an executed batch names its block instead of
# holding the batch again; restarts must have rebuilt batches from blocks.
from_blocks=$(grep -ho "[0-9]* batches read from their blocks" "$D"/replica-*.log |
    awk '{n += $1} END {print n + 0}')
[ "$from_blocks" -gt 0 ] || fail "no restart read a batch from its block"
ok "restarts read $from_blocks batches from their blocks"

# Let the load run on the healed cluster, then stop it.
before=$(receipts)
wait_until 60 more_than $((before + 20)) || fail "load stalled after the crash loop"
touch "$D/stop"
for p in "${E2E_PIDS[@]}"; do wait "$p" || true; done
E2E_PIDS=()
total=$(receipts)
ok "$total receipts"

status() { "$TALLY" status --config "$CFG" --timeout 1 --json 2>/dev/null || true; }
same_height() { status | jq -e '.up == 4 and ([.replicas[].status.last_executed] | unique |
    length == 1)' >/dev/null; }
wait_until 60 same_height || fail "replicas did not converge: $(status | jq -c \
    '[.replicas[] | .status | {view, last_executed, checkpoints}]')"
"$TALLY" testnet stop --dir "$D" >/dev/null

check_ledgers "$CFG" "$D" 0 1 2 3
ok "same head ${LEDGER_HEAD:0:16} on all 4; audits and certificates verify"

# Every receipted transfer is in the ledger exactly once, with result ok.
check_receipts "$D/data-0" "$E2E_TMP"/receipts-*
# awk, not grep: grep exits 1 when no view was installed (pipefail).
views=$(awk '/L2164/ { n++ } END { print n + 0 }' "$D"/replica-*.log)
ok "all $RECEIPTED receipted transfers in the ledger once ($views view installs)"
echo "test_crash_loop: passed in $(($(date +%s) - E2E_START)) s"
