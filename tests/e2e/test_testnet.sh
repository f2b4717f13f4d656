#!/usr/bin/env bash
# A 4-node testnet: start, status, submit, balance, tx, rejections, tallyd's
# start-up errors, stop. All through the tally tool, with --json checks.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

D="$E2E_TMP/net"
PORT=$(e2e_base_port)
A0="$D/accounts/account-0.key"
A1="$D/accounts/account-1.key"

# --- start ------------------------------------------------------------------
out=$(timeout 60 "$TALLY" testnet start --dir "$D" --base-port "$PORT" --json)
expect_eq "testnet start up" "$(jq -r .up <<<"$out")" 4
for i in 0 1 2 3; do [ -s "$D/replica-$i.pid" ] || fail "no pid file for replica $i"; done
ok "testnet start ($PORT)"

out=$("$TALLY" testnet status --dir "$D" --json)
expect_eq "status up" "$(jq -r .up <<<"$out")" 4
expect_eq "status primary" "$(jq -r '.replicas[0].status.primary' <<<"$out")" 0
# Replicas dial each other in the background: poll until every link is up.
all_linked() {
    "$TALLY" testnet status --dir "$D" --json | jq -e '[.replicas[].status.peers_connected] |
        min == 3' >/dev/null
}
wait_until 10 all_linked || fail "peers not all connected: $("$TALLY" testnet status --dir "$D" \
    --json | jq -c '[.replicas[].status.peers_connected]')"
"$TALLY" testnet status --dir "$D" | grep -q "4 of 4 replicas up" || fail "status table"
ok "testnet status"

# --- submit, balance, tx ----------------------------------------------------
B0=$("$TALLY" balance --config "$D/cluster.json" "@$A0" --json)
B1=$("$TALLY" balance --config "$D/cluster.json" "@$A1" --json)
bal0=$(jq -r .balance <<<"$B0")
bal1=$(jq -r .balance <<<"$B1")
expect_eq "initial nonce" "$(jq -r .nonce <<<"$B0")" 0

r=$("$TALLY" submit --config "$D/cluster.json" --key "$A0" --to "@$A1" --amount 250 --json)
expect_eq "submit result" "$(jq -r .result <<<"$r")" ok
expect_eq "submit ok" "$(jq -r .ok <<<"$r")" true
hash=$(jq -r .tx_hash <<<"$r")
height=$(jq -r .height <<<"$r")
[ "$height" -ge 1 ] || fail "height $height"
ok "submit (tx $hash at height $height)"

B0=$("$TALLY" balance --config "$D/cluster.json" "@$A0" --json)
expect_eq "sender balance" "$(jq -r .balance <<<"$B0")" $((bal0 - 250))
expect_eq "sender nonce" "$(jq -r .nonce <<<"$B0")" 1
expect_eq "recipient balance" \
    "$("$TALLY" balance --config "$D/cluster.json" "@$A1" --json | jq -r .balance)" $((bal1 + 250))
ok "balance"

t=$("$TALLY" tx --config "$D/cluster.json" "$hash" --json)
expect_eq "tx found" "$(jq -r .found <<<"$t")" true
expect_eq "tx height" "$(jq -r .height <<<"$t")" "$height"
expect_eq "tx result" "$(jq -r .result <<<"$t")" ok
"$TALLY" tx --config "$D/cluster.json" "$hash" | grep -q "^result  ok" || fail "tx text"
set +e
"$TALLY" tx --config "$D/cluster.json" "$(printf '%064d' 0)" --json >/dev/null
rc=$?
set -e
expect_eq "unknown tx exit" "$rc" 1
ok "tx"

# --- rejections -------------------------------------------------------------
set +e
r=$("$TALLY" submit --config "$D/cluster.json" --key "$A0" --to "@$A1" --amount 999999999999 --json)
rc=$?
set -e
expect_eq "overdraft exit" "$rc" 1
expect_eq "overdraft result" "$(jq -r .result <<<"$r")" insufficient_funds
set +e
txt=$("$TALLY" submit --config "$D/cluster.json" --key "$A0" --to "@$A1" --amount 5 --nonce 1)
rc=$?
set -e
expect_eq "replayed nonce exit" "$rc" 1
grep -q "rejected: wrong nonce" <<<"$txt" || fail "replayed nonce text: $txt"
set +e
r=$("$TALLY" submit --config "$D/cluster.json" --key "$A0" --to "@$A1" --amount 5 \
    --corrupt-signature --json)
rc=$?
set -e
expect_eq "bad signature exit" "$rc" 1
expect_eq "bad signature result" "$(jq -r .result <<<"$r")" bad_signature
# Re-submitting an executed transaction answers from the ledger (same receipt).
r2=$("$TALLY" submit --config "$D/cluster.json" --key "$A0" --to "@$A1" --amount 250 --nonce 1 --json)
expect_eq "resubmit hash" "$(jq -r .tx_hash <<<"$r2")" "$hash"
expect_eq "resubmit height" "$(jq -r .height <<<"$r2")" "$height"
ok "rejections"

st=$("$TALLY" status --config "$D/cluster.json" --json)
expect_eq "status up" "$(jq -r .up <<<"$st")" 4
h=$(jq -r '[.replicas[].status.ledger.height] | min' <<<"$st")
[ "$h" -ge "$height" ] || fail "ledger height $h < $height"
ok "status"

# --- tallyd start-up errors -------------------------------------------------
expect_fail() { # WHAT PATTERN CMD...
    local what=$1 pat=$2
    shift 2
    local out rc
    set +e
    out=$(timeout 10 "$@" 2>&1)
    rc=$?
    set -e
    [ $rc -ne 0 ] || fail "$what: exit 0"
    grep -qi -- "$pat" <<<"$out" || fail "$what: '$out' lacks '$pat'"
    ok "tallyd: $what"
}
expect_fail "data dir in use" "in use" "$TALLYD" --config "$D/cluster.json" --id 0 --data "$D/data-0"
expect_fail "bad id" "replicas 0..3" "$TALLYD" --config "$D/cluster.json" --id 7 --data "$E2E_TMP/x"
expect_fail "missing key" "replica-1.key" "$TALLYD" --config "$D/cluster.json" --id 1 \
    --data "$E2E_TMP/y" --key "$E2E_TMP/nope/replica-1.key"
expect_fail "wrong key" "public key" "$TALLYD" --config "$D/cluster.json" --id 1 \
    --data "$E2E_TMP/y" --key "$D/replica-2.key"
expect_fail "bad config" "none.json" "$TALLYD" --config "$E2E_TMP/none.json" --id 0 --data "$E2E_TMP/z"
"$TALLYD" --help | grep -q -- "--config FILE" || fail "tallyd --help"

# --- stop -------------------------------------------------------------------
pids=$(cat "$D"/replica-*.pid)
out=$("$TALLY" testnet stop --dir "$D" --json)
expect_eq "stopped" "$(jq -r .stopped <<<"$out")" 4
expect_eq "killed" "$(jq -r .killed <<<"$out")" 0
for p in $pids; do ! alive "$p" || fail "pid $p still running"; done
grep -q "stopped cleanly" "$D/replica-0.log" || fail "no clean shutdown line"
set +e
"$TALLY" status --config "$D/cluster.json" --timeout 0.3 --json >"$E2E_TMP/st.json"
rc=$?
set -e
expect_eq "status after stop exit" "$rc" 1
expect_eq "status after stop up" "$(jq -r .up "$E2E_TMP/st.json")" 0
ok "testnet stop"

# A data directory of another cluster is refused (genesis mismatch).
"$TALLY" init --dir "$E2E_TMP/other" --base-port "$PORT" >/dev/null
expect_fail "other cluster's data" "another cluster" "$TALLYD" --config "$E2E_TMP/other/cluster.json" \
    --id 0 --data "$D/data-0"

# Restart: the replicas come back with their ledgers and keep serving.
out=$(timeout 60 "$TALLY" testnet start --dir "$D" --json)
expect_eq "restart up" "$(jq -r .up <<<"$out")" 4
t=$("$TALLY" tx --config "$D/cluster.json" "$hash" --json)
expect_eq "tx after restart" "$(jq -r .height <<<"$t")" "$height"
r=$("$TALLY" submit --config "$D/cluster.json" --key "$A1" --to "@$A0" --amount 1 --json)
expect_eq "submit after restart" "$(jq -r .result <<<"$r")" ok
"$TALLY" testnet stop --dir "$D" >/dev/null
ok "restart"
echo "test_testnet: passed in $(($(date +%s) - E2E_START)) s"
