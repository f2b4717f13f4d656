#!/usr/bin/env bash
# The main job (`make demo`): start a 4-node testnet on 127.0.0.1 in ./testnet
# (or $TALLY_DEMO_DIR), submit a few transfers, print their receipts, the
# balances and the cluster status, and say how to stop it. Re-running it
# reuses the running testnet.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${TALLY_BIN_DIR:-$PWD/build}
TALLY="$BIN/tally"
D=${TALLY_DEMO_DIR:-$PWD/testnet}
CFG="$D/cluster.json"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "starting a 4-node testnet in $D"
"$TALLY" testnet start --dir "$D" --nodes 4

A0="$D/accounts/account-0.key"
A1="$D/accounts/account-1.key"
A2="$D/accounts/account-2.key"

step "balances before"
for k in "$A0" "$A1" "$A2"; do "$TALLY" balance --config "$CFG" "@$k"; done

step "three signed transfers, each receipted by f+1 = 2 matching replies"
"$TALLY" submit --config "$CFG" --key "$A0" --to "@$A1" --amount 250
"$TALLY" submit --config "$CFG" --key "$A1" --to "@$A2" --amount 100
"$TALLY" submit --config "$CFG" --key "$A2" --to "@$A0" --amount 40

step "an overdraft is rejected (and recorded in the ledger)"
"$TALLY" submit --config "$CFG" --key "$A2" --to "@$A0" --amount 999999999999 || true

step "a burst: 200 transfers from account 3, all outstanding at once"
"$TALLY" submit --config "$CFG" --key "$D/accounts/account-3.key" \
    --to "@$D/accounts/account-4.key" --amount 1 --count 200

step "balances after"
for k in "$A0" "$A1" "$A2"; do "$TALLY" balance --config "$CFG" "@$k"; done

step "cluster status"
"$TALLY" testnet status --dir "$D"

cat <<MSG

The testnet keeps running in the background (logs: $D/replica-I.log).
  $TALLY status --config $CFG
  $TALLY submit --config $CFG --key $A0 --to @$A1 --amount 5
  $TALLY audit --data $D/data-0          (after stopping, or on a copy)
Stop it with:
  $TALLY testnet stop --dir $D
MSG
