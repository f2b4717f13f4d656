#!/usr/bin/env bash
# Bad operator input (issue 7 item 6): every tally subcommand and tallyd, given
# a missing file, an unreadable or malformed key, a bad configuration
# (duplicate replica, n != 3f+1, bad address), a data directory of another
# cluster, an unknown or a missing flag, answers with ONE line on stderr naming
# the problem, nothing on stdout, a non-zero exit (2 for usage errors), and
# creates, overwrites or changes nothing. Only one replica runs, for about a
# second, to make a data directory; "unreachable" uses ports nothing listens on.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

W="$E2E_TMP/w" # everything the commands could touch; snapshotted around each case
mkdir -p "$W/cwd"
cd "$W/cwd" # no ./testnet here, and a stray file would show in the snapshot
PORT_A=$(e2e_base_port)
PORT_B=$(e2e_base_port)
A="$W/a"
B="$W/b"
"$TALLY" init --dir "$A" --base-port "$PORT_A" >/dev/null
"$TALLY" init --dir "$B" --base-port "$PORT_B" >/dev/null

# Cluster A's replica 0 writes its genesis into A/data-0, then stops.
"$TALLYD" --config "$A/cluster.json" --id 0 --data "$A/data-0" 2>"$E2E_TMP/r0.log" &
R0=$!
E2E_PIDS+=("$R0")
wait_until 10 grep -q L0602 "$E2E_TMP/r0.log" || fail "replica 0 of A did not start"
kill -TERM "$R0"
wait "$R0" || fail "replica 0 of A did not stop cleanly"
[ -s "$A/data-0/CURRENT" ] || fail "no data directory for A"

# --- inputs -------------------------------------------------------------------
K="$W/keys"
mkdir -p "$K" "$W/cfg" "$W/empty"
ACC0="$A/accounts/account-0.key"
ACC1="$A/accounts/account-1.key"
cp "$ACC0" "$K/open.key" && chmod 644 "$K/open.key"
jq '.seed |= .[0:62]' "$ACC0" >"$K/short.key"         # a 31-byte seed
jq '.seed += "00"' "$ACC0" >"$K/long.key"             # a 33-byte seed
jq '.public_key |= .[0:62]' "$ACC0" >"$K/shortpk.key" # a 31-byte public key
jq --arg pk "$(jq -r .public_key "$ACC1")" '.public_key = $pk' "$ACC0" >"$K/mismatch.key"
head -c 32 /dev/urandom >"$K/raw32.key" # raw bytes, not a key file
echo "not a key" >"$K/garbage.key"
: >"$K/empty.key"
head -c 8192 /dev/zero | tr '\0' ' ' >"$K/huge.key"
chmod 600 "$K"/*.key && chmod 644 "$K/open.key"
mkdir "$K/dir.key"
cp "$ACC0" "$K/locked.key" && chmod 000 "$K/locked.key"

cp "$A/genesis.json" "$W/cfg/genesis.json"
mkcfg() { jq "$2" "$A/cluster.json" >"$W/cfg/$1.json"; }
mkcfg dupkey '.replicas[1].public_key = .replicas[0].public_key'
mkcfg dupaddr '.replicas[2].peer_address = .replicas[1].peer_address'
mkcfg dupid '.replicas[3].id = 1'
mkcfg n3 '.replicas |= .[0:3]'
jq --argjson r "$(jq -c '.replicas[0] | .id = 4 | .peer_address = "tcp://127.0.0.1:9" |
    .client_address = "tcp://127.0.0.1:10" | .public_key = ("ab" * 32)' "$A/cluster.json")" \
    '.replicas += [$r]' "$A/cluster.json" >"$W/cfg/n5.json"
mkcfg noport '.replicas[2].client_address = "tcp://host"'
mkcfg udp '.replicas[2].client_address = "udp://x:1"'
mkcfg port0 '.replicas[1].peer_address = "tcp://127.0.0.1:0"'
mkcfg port70000 '.replicas[1].peer_address = "tcp://127.0.0.1:70000"'
mkcfg nogenesis '.genesis = "missing-genesis.json"'
echo '{"cluster_name": "x",' >"$W/cfg/truncated.json"
for c in dupkey dupaddr n3; do # testnet directories with a bad cluster.json
    mkdir -p "$W/tn-$c"
    cp "$W/cfg/$c.json" "$W/tn-$c/cluster.json"
    cp "$A/genesis.json" "$W/tn-$c/"
done
# A keys-only directory: tally init must not touch what is there.
mkdir -p "$W/partial"
cp "$A/replica-0.key" "$W/partial/replica-0.key"

# --- the check ----------------------------------------------------------------
snap() {
    (cd "$W" && find . -printf '%p %y %m %s\n' | LC_ALL=C sort &&
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
}
CASES=0
MISSED=0
# BAD_INPUT_ALL=1: report every failing case and go on (to list them), instead
# of stopping at the first.
miss() {
    [ "${BAD_INPUT_ALL:-0}" = 1 ] || fail "$@"
    echo "FAIL: $*" >&2
    MISSED=$((MISSED + 1))
    return 1
}
# bad EXIT PATTERN CMD...: CMD exits EXIT, prints nothing on stdout and one line
# on stderr containing PATTERN, and leaves everything under $W as it was.
bad() {
    local want=$1 pat=$2
    shift 2
    local what before after rc lines
    what="$(basename "$1") ${*:2}"
    what=${what//$W\//}
    before=$(snap)
    set +e
    timeout 15 "$@" >"$E2E_TMP/out" 2>"$E2E_TMP/err"
    rc=$?
    set -e
    after=$(snap)
    CASES=$((CASES + 1))
    [ $rc -ne 124 ] || miss "$what: still running after 15 s" || return 0
    [ $rc -eq "$want" ] || miss "$what: exit $rc, want $want; stderr: $(cat "$E2E_TMP/err")" ||
        return 0
    [ ! -s "$E2E_TMP/out" ] || miss "$what: printed on stdout: $(head -c 300 "$E2E_TMP/out")" ||
        return 0
    lines=$(wc -l <"$E2E_TMP/err")
    [ "$lines" -eq 1 ] || miss "$what: $lines lines on stderr, want 1: $(cat "$E2E_TMP/err")" ||
        return 0
    grep -qF -- "$pat" "$E2E_TMP/err" || miss "$what: '$(cat "$E2E_TMP/err")' lacks '$pat'" ||
        return 0
    if [ "$before" != "$after" ]; then
        diff <(echo "$before") <(echo "$after") | head -n 20 >&2
        miss "$what: changed files under the work directory" || return 0
    fi
}

BADCFG=(dupkey "duplicate public key" dupaddr "duplicate address" dupid "duplicate id"
    n3 "n = 3" n5 "n = 5" noport "tcp://host" udp "udp://x:1" port0 "port must be"
    port70000 "port must be" nogenesis "missing-genesis.json" truncated "invalid JSON")
# bad_configs EXIT CMD-BEFORE... -- CMD-AFTER...: the command with --config FILE
# for every bad configuration (and a missing file and a directory).
bad_configs() {
    local want=$1
    shift
    local pre=() post=()
    while [ "$1" != "--" ]; do pre+=("$1") && shift; done
    shift
    post=("$@")
    for ((i = 0; i < ${#BADCFG[@]}; i += 2)); do
        bad "$want" "${BADCFG[i + 1]}" "${pre[@]}" "$W/cfg/${BADCFG[i]}.json" "${post[@]}"
    done
    bad "$want" "nope.json" "${pre[@]}" "$W/cfg/nope.json" "${post[@]}"
    bad "$want" "not a regular file" "${pre[@]}" "$W/cfg" "${post[@]}"
}
# bad_keys EXIT CMD-BEFORE... -- CMD-AFTER...: the command with every bad key file.
bad_keys() {
    local want=$1
    shift
    local pre=() post=()
    while [ "$1" != "--" ]; do pre+=("$1") && shift; done
    shift
    post=("$@")
    bad "$want" "nope.key: cannot open" "${pre[@]}" "$K/nope.key" "${post[@]}"
    bad "$want" "dir.key: not a regular file" "${pre[@]}" "$K/dir.key" "${post[@]}"
    bad "$want" "chmod 600" "${pre[@]}" "$K/open.key" "${post[@]}"
    bad "$want" "short.key: field \"seed\"" "${pre[@]}" "$K/short.key" "${post[@]}"
    bad "$want" "long.key: field \"seed\"" "${pre[@]}" "$K/long.key" "${post[@]}"
    bad "$want" "shortpk.key: field \"public_key\"" "${pre[@]}" "$K/shortpk.key" "${post[@]}"
    bad "$want" "mismatch.key: public_key does not match" "${pre[@]}" "$K/mismatch.key" \
        "${post[@]}"
    bad "$want" "raw32.key: not a tally key file" "${pre[@]}" "$K/raw32.key" "${post[@]}"
    bad "$want" "garbage.key: not a tally key file" "${pre[@]}" "$K/garbage.key" "${post[@]}"
    bad "$want" "empty.key: not a tally key file" "${pre[@]}" "$K/empty.key" "${post[@]}"
    bad "$want" "huge.key: key file is 8192 bytes" "${pre[@]}" "$K/huge.key" "${post[@]}"
    if [ "$(id -u)" != 0 ]; then # root reads a mode-000 file anyway
        bad "$want" "locked.key: cannot open" "${pre[@]}" "$K/locked.key" "${post[@]}"
    fi
}
CA="$A/cluster.json"
CB="$B/cluster.json"

# --- tally (no subcommand) ------------------------------------------------------
bad 2 "unknown command 'frobnicate'" "$TALLY" frobnicate
ok "tally"

# --- keygen -------------------------------------------------------------------
bad 2 "--out FILE is required" "$TALLY" keygen
bad 2 "'--bogus'" "$TALLY" keygen --out "$W/new.key" --bogus
bad 2 "'--out'" "$TALLY" keygen --out
bad 1 "account-0.key: cannot create key file" "$TALLY" keygen --out "$ACC0"
bad 1 "garbage.key: cannot create key file" "$TALLY" keygen --out "$K/garbage.key"
bad 1 "dir.key: cannot create key file" "$TALLY" keygen --out "$K/dir.key"
bad 1 "nodir/new.key" "$TALLY" keygen --out "$W/nodir/new.key"
ok "keygen"

# --- init ---------------------------------------------------------------------
bad 2 "--dir DIR is required" "$TALLY" init
bad 2 "'--bogus'" "$TALLY" init --dir "$W/new" --bogus
bad 1 "already holds a configuration" "$TALLY" init --dir "$A"
bad 2 "--nodes 3: n must be 3f+1" "$TALLY" init --dir "$W/new" --nodes 3
bad 2 "--nodes 5: n must be 3f+1" "$TALLY" init --dir "$W/new" --nodes 5
bad 2 "--base-port 0" "$TALLY" init --dir "$W/new" --base-port 0
bad 2 "--base-port 70000" "$TALLY" init --dir "$W/new" --base-port 70000
bad 2 "--base-port 65530" "$TALLY" init --dir "$W/new" --base-port 65530
bad 2 "--host 'tcp://host'" "$TALLY" init --dir "$W/new" --host tcp://host
bad 2 "--host 'a b'" "$TALLY" init --dir "$W/new" --host "a b"
bad 1 "genesis.json exists and is not a directory" "$TALLY" init --dir "$A/genesis.json"
bad 1 "replica-0.key: cannot create key file: File exists" "$TALLY" init --dir "$W/partial"
ok "init"

# --- testnet ------------------------------------------------------------------
bad 2 "expected an action" "$TALLY" testnet
bad 2 "unknown action 'restart'" "$TALLY" testnet restart --dir "$A"
for act in start status stop; do
    bad 2 "--dir DIR is required" "$TALLY" testnet "$act"
    bad 2 "'--bogus'" "$TALLY" testnet "$act" --dir "$A" --bogus
done
bad 2 "--nodes '5'" "$TALLY" testnet start --dir "$W/new" --nodes 5
bad 2 "--base-port '70000'" "$TALLY" testnet start --dir "$W/new" --base-port 70000
bad 1 "duplicate public key" "$TALLY" testnet start --dir "$W/tn-dupkey" --wait 5
bad 1 "duplicate address" "$TALLY" testnet start --dir "$W/tn-dupaddr" --wait 5
bad 1 "n = 3" "$TALLY" testnet start --dir "$W/tn-n3" --wait 5
bad 1 "genesis.json exists and is not a directory" "$TALLY" testnet start --dir "$A/genesis.json"
bad 1 "nope/cluster.json" "$TALLY" testnet status --dir "$W/nope"
bad 1 "n = 3" "$TALLY" testnet status --dir "$W/tn-n3"
bad 1 "nope: No such file or directory" "$TALLY" testnet stop --dir "$W/nope"
bad 1 "keys is not a testnet directory" "$TALLY" testnet stop --dir "$K"
bad 1 "genesis.json is not a directory" "$TALLY" testnet stop --dir "$A/genesis.json"
ok "testnet start/status/stop"

# --- submit, balance, tx, status ----------------------------------------------
S=(--key "$ACC0" --to "@$ACC1" --amount 1 --timeout 0.5)
bad 2 "--key, --to and --amount are required" "$TALLY" submit --config "$CA" --to "@$ACC1" \
    --amount 1
bad 2 "--key, --to and --amount are required" "$TALLY" submit --config "$CA" --key "$ACC0" \
    --amount 1
bad 2 "'--bogus'" "$TALLY" submit --config "$CA" "${S[@]}" --bogus
bad 2 "--amount 'ten'" "$TALLY" submit --config "$CA" --key "$ACC0" --to "@$ACC1" --amount ten
bad 2 "'1234': an account is 64 hex" "$TALLY" submit --config "$CA" --key "$ACC0" --to 1234 \
    --amount 1
bad 1 "no --config CLUSTER given" "$TALLY" submit "${S[@]}"
bad_configs 1 "$TALLY" submit --config -- "${S[@]}"
bad_keys 1 "$TALLY" submit --config "$CA" --to "@$ACC1" --amount 1 --timeout 0.5 --key --
bad 1 "nope.key: cannot open" "$TALLY" submit --config "$CA" --key "$ACC0" --to "@$K/nope.key" \
    --amount 1
bad 1 "no replica answered within 500 ms" "$TALLY" submit --config "$CA" "${S[@]}"
ok "submit"

bad 2 "expected one ACCOUNT" "$TALLY" balance --config "$CA"
bad 2 "'--bogus'" "$TALLY" balance --config "$CA" "@$ACC0" --bogus
bad 2 "'xyz': an account is 64 hex" "$TALLY" balance --config "$CA" xyz
bad_configs 1 "$TALLY" balance "@$ACC0" --timeout 0.5 --config --
for k in nope dir open short garbage huge; do
    bad 1 "$k.key" "$TALLY" balance --config "$CA" --timeout 0.5 "@$K/$k.key"
done
bad 1 "no replica answered within 500 ms" "$TALLY" balance --config "$CA" --timeout 0.5 "@$ACC0"
ok "balance"

H=$(printf '%064d' 0)
bad 2 "expected one HASH" "$TALLY" tx --config "$CA"
bad 2 "'--bogus'" "$TALLY" tx --config "$CA" "$H" --bogus
bad 2 "'00ff': a transaction hash is 64 hex" "$TALLY" tx --config "$CA" 00ff
bad_configs 1 "$TALLY" tx "$H" --timeout 0.5 --config --
bad 1 "no replica answered within 500 ms" "$TALLY" tx --config "$CA" --timeout 0.5 "$H"
ok "tx"

bad 2 "'--bogus'" "$TALLY" status --config "$CA" --bogus
bad 2 "unexpected argument 'extra'" "$TALLY" status --config "$CA" extra
bad 2 "--timeout 'soon'" "$TALLY" status --config "$CA" --timeout soon
bad_configs 1 "$TALLY" status --timeout 0.3 --config --
# Unreachable: the table, every replica down, exit 1.
set +e
"$TALLY" status --config "$CA" --timeout 0.3 >"$E2E_TMP/out" 2>"$E2E_TMP/err"
rc=$?
set -e
expect_eq "status of a stopped cluster: exit" "$rc" 1
grep -q "^0 of 4 replicas up" "$E2E_TMP/out" || fail "status of a stopped cluster: $(cat "$E2E_TMP/out")"
ok "status"

# --- audit, export, verify-checkpoint -----------------------------------------
D0="$A/data-0"
bad 2 "--data DIR is required" "$TALLY" audit
bad 2 "'--bogus'" "$TALLY" audit --data "$D0" --bogus
bad 1 "nope: No such file or directory" "$TALLY" audit --data "$W/nope"
bad 1 "cluster.json is not a directory" "$TALLY" audit --data "$CA"
bad 1 "empty holds no tally ledger" "$TALLY" audit --data "$W/empty"
bad 1 "keys holds other files and no tally ledger" "$TALLY" audit --data "$K"
bad 1 "data-0 belongs to another cluster" "$TALLY" audit --data "$D0" --config "$CB"
bad_configs 1 "$TALLY" audit --data "$D0" --config --
ok "audit"

bad 2 "--data DIR is required" "$TALLY" export --out "$W/x.jsonl"
bad 2 "'--bogus'" "$TALLY" export --data "$D0" --bogus
bad 1 "nope: No such file or directory" "$TALLY" export --data "$W/nope" --out "$W/x.jsonl"
bad 1 "cluster.json is not a directory" "$TALLY" export --data "$CA"
bad 1 "empty holds no tally ledger" "$TALLY" export --data "$W/empty" --out "$W/x.jsonl"
echo "keep me" >"$W/keep.txt"
bad 1 "keep.txt already exists" "$TALLY" export --data "$D0" --out "$W/keep.txt"
bad 1 "nodir/x.jsonl" "$TALLY" export --data "$D0" --out "$W/nodir/x.jsonl"
ok "export"

V=(verify-checkpoint)
bad 2 "--config CLUSTER is required" "$TALLY" "${V[@]}" --data "$D0"
bad 2 "exactly one of --data DIR and --export FILE" "$TALLY" "${V[@]}" --config "$CA"
bad 2 "exactly one of --data DIR and --export FILE" "$TALLY" "${V[@]}" --config "$CA" \
    --data "$D0" --export "$W/x.jsonl"
bad 2 "'--bogus'" "$TALLY" "${V[@]}" --config "$CA" --data "$D0" --bogus
bad 2 "--height takes a block height" "$TALLY" "${V[@]}" --config "$CA" --data "$D0" --height x
bad 1 "nope: No such file or directory" "$TALLY" "${V[@]}" --config "$CA" --data "$W/nope"
bad 1 "empty holds no tally ledger" "$TALLY" "${V[@]}" --config "$CA" --data "$W/empty"
bad 1 "data-0 belongs to another cluster" "$TALLY" "${V[@]}" --config "$CB" --data "$D0"
bad 1 "nope.jsonl" "$TALLY" "${V[@]}" --config "$CA" --export "$W/nope.jsonl"
bad_configs 1 "$TALLY" "${V[@]}" --data "$D0" --config --
ok "verify-checkpoint"

# --- bench --------------------------------------------------------------------
bad 2 "'--bogus'" "$TALLY" bench --config "$CA" --bogus
bad 2 "--outstanding '0'" "$TALLY" bench --config "$CA" --outstanding 0
bad 1 "no --config CLUSTER given" "$TALLY" bench --quiet
bad 1 "accounts directory $W/nope" "$TALLY" bench --config "$CA" --accounts-dir "$W/nope" --quiet
bad_configs 1 "$TALLY" bench --quiet --config --
bad 1 "no replica answered" "$TALLY" bench --config "$CA" --quiet --duration 0.5 --warmup 0 \
    --timeout 0.5
ok "bench"

# --- tallyd -------------------------------------------------------------------
NEWDATA="$W/new-data" # must not appear
bad 2 "--config, --id and --data are required" "$TALLYD" --id 1 --data "$NEWDATA"
bad 2 "--config, --id and --data are required" "$TALLYD" --config "$CA" --data "$NEWDATA"
bad 2 "--config, --id and --data are required" "$TALLYD" --config "$CA" --id 1
bad 2 "'--bogus'" "$TALLYD" --config "$CA" --id 1 --data "$NEWDATA" --bogus
bad 2 "--id 'x'" "$TALLYD" --config "$CA" --id x --data "$NEWDATA"
bad 2 "--id 7" "$TALLYD" --config "$CA" --id 7 --data "$NEWDATA"
bad_configs 1 "$TALLYD" --id 1 --data "$NEWDATA" --config --
bad_keys 1 "$TALLYD" --config "$CA" --id 1 --data "$NEWDATA" --key --
bad 1 "replica-2.key holds public key" "$TALLYD" --config "$CA" --id 1 --data "$NEWDATA" \
    --key "$A/replica-2.key"
bad 1 "genesis.json is not a directory" "$TALLYD" --config "$CA" --id 1 --data "$A/genesis.json"
bad 1 "keys holds other files and no tally ledger" "$TALLYD" --config "$CA" --id 1 --data "$K" \
    --key "$A/replica-1.key"
bad 1 "nodir/data" "$TALLYD" --config "$CA" --id 1 --data "$W/nodir/data"
bad 1 "data-0 belongs to another cluster" "$TALLYD" --config "$CB" --id 0 --data "$D0"
ok "tallyd"

# testnet start over another cluster's data directory: replica 0 refuses it,
# start says why and stops the replicas it started; data-0 is untouched.
cp -r "$B" "$W/tn-other"
rm -f "$W/tn-other"/replica-*.pid
cp -r "$D0" "$W/tn-other/data-0"
before=$(cd "$W/tn-other/data-0" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
set +e
timeout 30 "$TALLY" testnet start --dir "$W/tn-other" --wait 10 >"$E2E_TMP/out" 2>"$E2E_TMP/err"
rc=$?
set -e
expect_eq "testnet start over another cluster's data: exit" "$rc" 1
expect_eq "testnet start over another cluster's data: stderr lines" "$(wc -l <"$E2E_TMP/err")" 1
grep -q "replica 0 exited: tallyd: data directory .*data-0 belongs to another cluster" \
    "$E2E_TMP/err" || fail "testnet start over another cluster's data: $(cat "$E2E_TMP/err")"
after=$(cd "$W/tn-other/data-0" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
[ "$before" = "$after" ] || fail "testnet start changed another cluster's data directory"
ls "$W/tn-other"/replica-*.pid >/dev/null 2>&1 && fail "pid files left after a failed start"
set +e
up=$("$TALLY" status --config "$CB" --timeout 0.3 --json | jq -r .up)
set -e
expect_eq "replicas answering after a failed start" "$up" 0
ok "testnet start over another cluster's data directory"

[ "$MISSED" -eq 0 ] || fail "$MISSED of $CASES cases failed"
echo "test_bad_input: $CASES cases passed in $(($(date +%s) - E2E_START)) s"
