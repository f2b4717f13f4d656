# Shared helpers for the end-to-end tests (sourced, not run).
#   TALLY_BIN_DIR  where tally and tallyd are (tests/run.sh sets it)
# Every test gets its own temporary directory and random base port, stops the
# replicas it started (by PID) on exit, and bounds every wait with a deadline.

: "${TALLY_BIN_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build}"
TALLY="$TALLY_BIN_DIR/tally"
TALLYD="$TALLY_BIN_DIR/tallyd"
[ -x "$TALLY" ] && [ -x "$TALLYD" ] || { echo "e2e: no tally/tallyd in $TALLY_BIN_DIR (run make)"; exit 1; }
command -v jq >/dev/null || { echo "e2e: jq is required (apt-get install jq)"; exit 1; }

E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/tally-e2e.XXXXXX")
E2E_PIDS=()
E2E_START=$(date +%s)

# alive PID: a thread of the process runs (exists and is not a zombie). Not from
# /proc/PID/cmdline: it reads empty for a moment while a just-started child
# execs (the new mm has no arguments yet), which took a starting tallyd for
# one that had exited.
alive() {
    local t st
    # Every thread: after kill -9 the leader can be a zombie while a thread
    # still finishes (say, an fsync), holding the data directory's lock.
    for t in /proc/"$1"/task/*/status; do
        st=$(sed -n 's/^State:[[:space:]]*\([A-Za-z]\).*/\1/p' "$t" 2>/dev/null) || continue
        [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ] && return 0
    done
    return 1
}

e2e_cleanup() {
    local rc=$?
    # Stop what this test started: pid files under E2E_TMP and E2E_PIDS.
    local pids=("${E2E_PIDS[@]+"${E2E_PIDS[@]}"}")
    for f in "$E2E_TMP"/*/replica-*.pid "$E2E_TMP"/replica-*.pid; do
        [ -f "$f" ] && pids+=("$(cat "$f")")
    done
    for p in "${pids[@]+"${pids[@]}"}"; do
        if [ -r "/proc/$p/cmdline" ] && tr '\0' ' ' <"/proc/$p/cmdline" | grep -q tallyd; then
            kill -TERM "$p" 2>/dev/null || true
        fi
    done
    local deadline=$((SECONDS + 10))
    for p in "${pids[@]+"${pids[@]}"}"; do
        while alive "$p" && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
        kill -KILL "$p" 2>/dev/null || true
    done
    if [ $rc -ne 0 ]; then
        echo "e2e: FAILED (rc $rc) after $(($(date +%s) - E2E_START)) s; replica logs:"
        for l in "$E2E_TMP"/*/replica-*.log "$E2E_TMP"/*.log; do
            [ -f "$l" ] || continue
            echo "--- $l"
            # A sanitizer's report whole (its legend would push it out of the tail).
            if grep -q -e "ERROR: AddressSanitizer" -e "runtime error:" -e "ERROR: LeakSanitizer" "$l"; then
                grep -m1 -A 60 -e "ERROR: AddressSanitizer" -e "runtime error:" -e "ERROR: LeakSanitizer" "$l"
            else
                tail -n 15 "$l"
            fi
        done
    fi
    rm -rf "$E2E_TMP"
    exit $rc
}
trap e2e_cleanup EXIT
trap 'exit 130' INT TERM

# A random base port in 20000..32000 (below the ephemeral range) whose first 8 ports look free.
e2e_base_port() {
    local p i busy
    for _ in $(seq 1 50); do
        p=$((20000 + (RANDOM % 600) * 20))
        busy=0
        for i in $(seq 0 7); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$((p + i))") 2>/dev/null; then busy=1; break; fi
        done
        [ $busy -eq 0 ] && { echo "$p"; return 0; }
    done
    echo "e2e: no free ports" >&2
    return 1
}

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# expect_eq WHAT GOT WANT
expect_eq() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; }

# wait_until SECONDS CMD...: poll CMD every 0.1 s until it succeeds.
wait_until() {
    local limit=$1
    shift
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.1
    done
}

# check_ledgers CFG DIR ID...: each DIR/data-ID audits intact (certificate
# signatures included), its last checkpoint certificate verifies, and all
# have one head hash, left in LEDGER_HEAD.
# load ROUND PER_CLIENT: each of the first CLIENTS accounts of $D pays the next
# one PER_CLIENT times at once (`tally submit --count`, --timeout
# $LOAD_TIMEOUT, killed after $LOAD_KILL_AFTER s); every transfer must be
# receipted ok. Outputs in $E2E_TMP/load-ROUND-K.{json,err}.
load() {
    local round=$1 per=$2 pids=() k
    for k in $(seq 0 $((CLIENTS - 1))); do
        timeout "$LOAD_KILL_AFTER" "$TALLY" submit --config "$CFG" \
            --key "$D/accounts/account-$k.key" \
            --to "@$D/accounts/account-$(((k + 1) % CLIENTS)).key" --amount 1 --count "$per" \
            --timeout "$LOAD_TIMEOUT" --json >"$E2E_TMP/load-$round-$k.json" \
            2>"$E2E_TMP/load-$round-$k.err" &
        pids+=($!)
    done
    for k in "${!pids[@]}"; do
        wait "${pids[$k]}" || fail "round $round client $k: $(cat "$E2E_TMP/load-$round-$k.err")"
        expect_eq "round $round client $k ok" "$(jq -r .ok "$E2E_TMP/load-$round-$k.json")" "$per"
    done
}

check_ledgers() {
    local cfg=$1 dir=$2 a v h i
    shift 2
    LEDGER_HEAD=""
    for i in "$@"; do
        a=$("$TALLY" audit --data "$dir/data-$i" --config "$cfg" --json --quiet) ||
            fail "audit of data-$i: $a"
        expect_eq "audit data-$i intact" "$(jq -r .intact <<<"$a")" true
        v=$("$TALLY" verify-checkpoint --config "$cfg" --data "$dir/data-$i" 2>&1) ||
            fail "verify-checkpoint data-$i: $v"
        h=$(jq -r .head_hash <<<"$a")
        [ -n "$LEDGER_HEAD" ] || LEDGER_HEAD=$h
        expect_eq "head hash of data-$i" "$h" "$LEDGER_HEAD"
    done
}

# check_receipts DATA-DIR RECEIPT-FILE...: no transaction executed ok twice in
# that ledger, and every receipted hash is there with result ok. Leaves the
# number of receipted transfers in RECEIPTED.
check_receipts() {
    local data=$1
    shift
    rm -f "$E2E_TMP/export.jsonl"
    "$TALLY" export --data "$data" --out "$E2E_TMP/export.jsonl" || fail "export of $data"
    jq -r 'select(.type == "tx" and .result == "ok") | .hash' "$E2E_TMP/export.jsonl" |
        sort >"$E2E_TMP/ledger-ok"
    expect_eq "transactions executed ok twice" "$(uniq -d "$E2E_TMP/ledger-ok" | wc -l)" 0
    sort -u "$@" >"$E2E_TMP/receipted"
    expect_eq "receipted transfers missing from the ledger" \
        "$(comm -23 "$E2E_TMP/receipted" "$E2E_TMP/ledger-ok" | wc -l)" 0
    RECEIPTED=$(wc -l <"$E2E_TMP/receipted")
}
