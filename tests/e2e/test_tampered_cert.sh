#!/usr/bin/env bash
# Tampered checkpoint certificates (issue 4), through `tally verify-checkpoint`
# on an export of a real replica's ledger: one signature flipped, a signer
# duplicated, signers removed below 2f+1, the state digest changed. Each is
# rejected (exit 1) with the right reason; the untouched export verifies.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

D="$E2E_TMP/net"
PORT=$(e2e_base_port)
CFG="$D/cluster.json"
"$TALLY" init --dir "$D" --base-port "$PORT" --accounts 2 >/dev/null
jq '.checkpoint_interval = 4 | .log_window = 16 | .batch_max_txs = 4' "$CFG" >"$CFG.new"
mv "$CFG.new" "$CFG"
timeout 60 "$TALLY" testnet start --dir "$D" --json >/dev/null
"$TALLY" submit --config "$CFG" --key "$D/accounts/account-0.key" \
    --to "@$D/accounts/account-1.key" --amount 1 --count 60 --json >/dev/null
stable() { "$TALLY" status --config "$CFG" --json |
    jq -e '[.replicas[].status.last_stable_checkpoint] | min >= 4' >/dev/null; }
wait_until 20 stable || fail "no stable checkpoint"
"$TALLY" testnet stop --dir "$D" >/dev/null
"$TALLY" export --data "$D/data-0" --out "$E2E_TMP/good.jsonl"
H=$(jq -r 'select(.type == "checkpoint") | .height' "$E2E_TMP/good.jsonl" | tail -1)
out=$("$TALLY" verify-checkpoint --config "$CFG" --export "$E2E_TMP/good.jsonl" --height "$H")
grep -q "OK" <<<"$out" || fail "untouched export: $out"
ok "checkpoint $H verifies: $out"

# tamper NAME JQ-FILTER-ON-THE-CERTIFICATE-LINE EXPECTED-TEXT
tamper() {
    local name=$1 filter=$2 want=$3 f="$E2E_TMP/$1.jsonl" out rc
    jq -c --argjson h "$H" "if .type == \"checkpoint\" and .height == \$h then $filter else . end" \
        "$E2E_TMP/good.jsonl" >"$f"
    set +e
    out=$("$TALLY" verify-checkpoint --config "$CFG" --export "$f" --height "$H" 2>&1)
    rc=$?
    set -e
    expect_eq "$name: exit" "$rc" 1
    grep -qi -- "$want" <<<"$out" || fail "$name: '$out' lacks '$want'"
    ok "$name: $out"
}
flip='(.[0:10]) + (if .[10:11] == "0" then "1" else "0" end) + .[11:]'
tamper "signature flipped" ".signatures[0].sig |= ($flip)" "does not verify"
tamper "signer duplicated" ".signatures[1] = .signatures[0]" "signed twice"
tamper "signers removed" ".signatures |= .[0:2]" "too few signatures"
tamper "digest changed" ".state_digest |= ($flip)" "does not verify"
echo "test_tampered_cert: passed in $(($(date +%s) - E2E_START)) s"
