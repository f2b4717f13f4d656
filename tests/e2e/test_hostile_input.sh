#!/usr/bin/env bash
# Hostile input from a non-replica (issue 7): while one honest client keeps a
# light load going, a stranger (tests/e2e/flood.c, built here with cc; it
# speaks NNG's SP-over-TCP framing with plain sockets)
#   1. floods two replicas' PEER addresses (as push0, to their pull0 listener)
#      with random garbage, envelopes whose header lies about the body length,
#      well-framed PREPAREs with bad signatures claiming to come from replica
#      2, PREPAREs from a sender id that is no replica, client REQUESTs on the
#      peer port, messages above max_message_bytes, and SP frames whose length
#      prefix claims 1 TiB;
#   2. floods two replicas' CLIENT addresses (as pair1) with REQUESTs of
#      garbage transactions, REQUESTs of well-formed transfers with bad
#      signatures, garbage, lying headers, replica messages, oversized messages
#      and lying SP frames.
# Checks: receipts keep flowing before, during each flood and after (no
# submit fails); no replica dies or restarts; each replica's VmRSS grows by
# less than RSS_LIMIT_MB; the drop counters of `tally status --json` count
# every hostile message read (bad_signature, unknown_sender, oversized,
# malformed, queue_full) and the replica closes the connection each came on
# (peer_connections_closed / client_connections_closed: one per reconnect of
# the flood); the replicas end at one height; and no transaction with a bad
# signature sent by the stranger is ever ordered into the ledger.
# Every flood is bounded in count and time; all traffic is to 127.0.0.1.
# KEEP_LOGS=DIR keeps the replica logs, the flood records and the receipts.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

command -v cc >/dev/null || fail "cc is required to build tests/e2e/flood.c"
FLOOD="$E2E_TMP/flood"
cc -O2 -o "$FLOOD" "$(dirname "$0")/flood.c" || fail "cannot build tests/e2e/flood.c"

D="$E2E_TMP/net"
PORT=$(e2e_base_port)
CFG="$D/cluster.json"
RSS_LIMIT_MB=${RSS_LIMIT_MB:-200}
# Checks that fail because of a replica bug are recorded here (and reported at
# the end) so that the rest of the test still runs: see BUG comments.
BUGS=()
bug() { echo "BUG: $*" >&2; BUGS+=("$*"); }
# Background jobs of this test (the load loop, the floods): stopped on exit,
# with their children (timeout forwards the signal to the command it runs).
BG=()
hostile_cleanup() {
    local rc=$? p
    set +e # errexit holds in traps: a failing step here must not skip the rest
    touch "$E2E_TMP/load.stop" 2>/dev/null || true
    for p in "${BG[@]+"${BG[@]}"}"; do
        pkill -TERM -P "$p" 2>/dev/null || true
        kill -TERM "$p" 2>/dev/null || true
    done
    # KEEP_LOGS=DIR: keep the replica logs and the test's records there.
    if [ -n "${KEEP_LOGS:-}" ]; then
        mkdir -p "$KEEP_LOGS" && cp "$D"/replica-*.log "$E2E_TMP"/flood-* "$E2E_TMP"/receipts \
            "$KEEP_LOGS"/ 2>/dev/null || true
    fi
    (exit $rc) # e2e_cleanup reads the test's status from $?
    e2e_cleanup
}
trap hostile_cleanup EXIT
# alive PID: the process runs (not gone, not a zombie). Note that
# [ -s /proc/PID/cmdline ] is always false: procfs reports size 0.
alive() {
    local c
    { c=$(tr -d '\0' <"/proc/$1/cmdline"); } 2>/dev/null && [ -n "$c" ]
}

"$TALLY" init --dir "$D" --base-port "$PORT" --accounts 2 >/dev/null
jq '.checkpoint_interval = 16 | .log_window = 64 | .batch_max_txs = 8' "$CFG" >"$CFG.new"
mv "$CFG.new" "$CFG"
timeout 60 "$TALLY" testnet start --dir "$D" --json >/dev/null
MAXB=$(jq -r .max_message_bytes "$CFG")
peer() { jq -r ".replicas[$1].peer_address" "$CFG"; }
client() { jq -r ".replicas[$1].client_address" "$CFG"; }
status() { "$TALLY" status --config "$CFG" --timeout 2 --json 2>/dev/null || true; }
all_linked() { status | jq -e '.up == 4 and ([.replicas[].status.peers_connected] | min) == 3'; }
wait_until 20 all_linked || fail "replicas did not connect to each other"
declare -a PIDS RSS0 RSSMAX
for i in 0 1 2 3; do
    PIDS[$i]=$(cat "$D/replica-$i.pid")
    RSS0[$i]=$(awk '/^VmRSS/ {print $2}' "/proc/${PIDS[$i]}/status")
    RSSMAX[$i]=${RSS0[$i]}
done
ok "testnet up on port $PORT, pids ${PIDS[*]}, VmRSS ${RSS0[*]} kB, max_message_bytes $MAXB"

# ---- the light load: one client, 4 transfers at a time, one line per batch ----
RECEIPTS="$E2E_TMP/receipts"
: >"$RECEIPTS"
LOAD_END=$((SECONDS + 90))
load_loop() {
    local out="$E2E_TMP/load.out"
    while [ $SECONDS -lt $LOAD_END ] && [ ! -e "$E2E_TMP/load.stop" ]; do
        if timeout 20 "$TALLY" submit --config "$CFG" --key "$D/accounts/account-0.key" \
            --to "@$D/accounts/account-1.key" --amount 1 --count 4 --timeout 15 --json \
            >"$out" 2>>"$E2E_TMP/load.err"; then
            echo "$(date +%s.%N) $(jq -r '.ok' "$out") $(jq -r '.no_receipt' "$out")" >>"$RECEIPTS"
        else
            echo "$(date +%s.%N) FAIL" >>"$RECEIPTS"
        fi
    done
}
load_loop &
LOAD_PID=$!
BG+=("$LOAD_PID")
# receipts_between T0 T1: transfers receipted ok in [T0, T1).
receipts_between() {
    awk -v a="$1" -v b="$2" '$2 != "FAIL" && $1 >= a && $1 < b {n += $2} END {print n + 0}' "$RECEIPTS"
}
# max_gap T0 T1: the longest time (s) without a receipt in [T0, T1].
max_gap() {
    awk -v a="$1" -v b="$2" 'BEGIN {last = a; m = 0}
        $2 != "FAIL" && $1 >= a && $1 < b {if ($1 - last > m) m = $1 - last; last = $1}
        END {if (b - last > m) m = b - last; printf "%.1f", m}' "$RECEIPTS"
}
# rate T0 T1: transfers receipted per second in [T0, T1).
rate() { awk -v n="$(receipts_between "$1" "$2")" -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", n / (b - a)}'; }
MAX_GAP=${MAX_GAP:-10}
has_receipts_after() { [ "$(receipts_between "$1" 9999999999)" -gt 0 ]; }

T_BEFORE=$(date +%s.%N)
wait_until 20 has_receipts_after "$T_BEFORE" || fail "the light load gets no receipts"
wait_until 20 has_receipts_after "$(date +%s.%N)" || fail "the light load stalled"
T_FLOOD1=$(date +%s.%N)
ok "light load running: $(receipts_between "$T_BEFORE" "$T_FLOOD1") transfers receipted before the floods"

dropped() { status | jq -c '[.replicas[] | .status.dropped // {}]'; }
D0=$(dropped)
views() { status | jq -c '[.replicas[].status.view]'; }
V0=$(views)

# watch_floods PID...: until the floods exit (bounded), sample every replica's
# VmRSS and check that none died or was replaced.
watch_floods() {
    local deadline=$((SECONDS + 40)) i p rss alive
    while :; do
        for i in 0 1 2 3; do
            alive "${PIDS[$i]}" ||
                fail "replica $i (pid ${PIDS[$i]}) died during the flood"
            rss=$(awk '/^VmRSS/ {print $2}' "/proc/${PIDS[$i]}/status")
            [ "$rss" -gt "${RSSMAX[$i]}" ] && RSSMAX[$i]=$rss
        done
        alive=0
        for p in "$@"; do alive "$p" && alive=1; done
        [ $alive -eq 1 ] || break
        [ $SECONDS -lt $deadline ] || fail "the floods did not end in time"
        sleep 0.2
    done
    for p in "$@"; do wait "$p" || fail "a flood exited with an error (see $E2E_TMP/flood-*.err)"; done
}

# flood_seq TARGET_NAME SOCKET ADDR KIND:COUNT:SECONDS...: one target, kinds in turn.
flood_seq() {
    local name=$1 sock=$2 addr=$3 spec kind count secs
    shift 3
    for spec in "$@"; do
        IFS=: read -r kind count secs <<<"$spec"
        timeout $((secs + 10)) "$FLOOD" --addr "$addr" --socket "$sock" --kind "$kind" \
            --count "$count" --seconds "$secs" --sender 2 --max-bytes "$MAXB" --txs 8 \
            >>"$E2E_TMP/flood-$name.json" 2>>"$E2E_TMP/flood-$name.err" || return 1
    done
}
sent_total() { jq -s "[.[] | select($2) | .sent] | add // 0" "$E2E_TMP/flood-$1.json"; }

# ---- 1. peer addresses of replica 0 (the primary) and replica 1 ----
PEER_KINDS=(garbage:40000:3 liar:20000:2 badsig:40000:4 unknown:20000:2 clienttype:5000:2
    oversized:20:3 splie:200:2)
flood_seq peer0 push "$(peer 0)" "${PEER_KINDS[@]}" &
f1=$!
BG+=("$f1")
flood_seq peer1 push "$(peer 1)" "${PEER_KINDS[@]}" &
f2=$!
BG+=("$f2")
watch_floods $f1 $f2
T_FLOOD1_END=$(date +%s.%N)
during1=$(receipts_between "$T_FLOOD1" "$T_FLOOD1_END")
D1=$(dropped)
V1=$(views)
ok "peer flood ($(date -d "@${T_FLOOD1%.*}" +%T)..$(date -d "@${T_FLOOD1_END%.*}" +%T), views $V0 -> $V1): $(sent_total peer0 true) + $(sent_total peer1 true) messages in $(jq -s \
    '[.[].seconds] | add | floor' "$E2E_TMP/flood-peer0.json") s; $during1 transfers receipted meanwhile"
[ "$during1" -gt 0 ] || fail "no receipts during the peer flood"
gap1=$(max_gap "$T_FLOOD1" "$T_FLOOD1_END")
awk -v g="$gap1" -v m="$MAX_GAP" 'BEGIN {exit !(g < m)}' ||
    fail "no receipt for $gap1 s during the peer flood"

# Every hostile message a replica reads is counted by a drop counter, and the
# connection it came on is closed (peer_connections_closed): the stranger pays
# a reconnect per forged message instead of streaming them, so most of what it
# sends never reaches the verifier (lost with the closed connection). The
# transport drops the oversized ones, with the connection, before they are
# read, and the lying SP frames: those count as peer_bad_frames instead. The
# verifiers may still be working through what was buffered when the floods
# end: poll until the counters settle (bounded).
# delta I BEFORE AFTER: replica I's drop counters in AFTER minus BEFORE.
delta() {
    jq -n --argjson a "$(jq ".[$1]" <<<"$3")" --argjson b "$(jq ".[$1]" <<<"$2")" \
        '$a | with_entries(.value -= ($b[.key] // 0))'
}
counted_of() { jq -r '.bad_signature + .unknown_sender + .oversized + .malformed + .queue_full'; }
peer_drops_settled() {
    local prev=${D1:-}
    D1=$(dropped)
    [ "$D1" = "$prev" ]
}
D1=
wait_until 30 peer_drops_settled || true
for i in 0 1; do
    d=$(delta "$i" "$D0" "$D1")
    echo "  replica $i drops during the peer flood: $(jq -c . <<<"$d")"
    for k in bad_signature unknown_sender malformed; do
        [ "$(jq -r ".$k" <<<"$d")" -gt 0 ] || fail "replica $i: no $k drops counted"
    done
    sent=$(sent_total "peer$i" '.kind != "oversized" and .kind != "splie"')
    counted=$(counted_of <<<"$d")
    closed=$(jq -r .peer_connections_closed <<<"$d")
    reconnects=$(jq -s '[.[] | select(.kind != "oversized" and .kind != "splie") | .reconnects] | add // 0' \
        "$E2E_TMP/flood-peer$i.json")
    echo "  replica $i: of $sent hostile messages sent, $counted were read and dropped; $closed connections closed, the flood reconnected $reconnects times"
    [ "$closed" -gt 0 ] || fail "replica $i: no hostile connection was closed"
    [ $((closed * 10)) -ge $((reconnects * 9)) ] ||
        fail "replica $i: the flood reconnected $reconnects times but only $closed connections were closed"
    [ "$counted" -ge "$closed" ] || fail "replica $i: $closed connections closed but only $counted drops counted"
    [ "$(jq -r .peer_bad_frames <<<"$d")" -gt 0 ] ||
        fail "replica $i: no oversized or lying frame counted (peer_bad_frames)"
done

# ---- 2. client addresses of the current primary and another replica ----
# (backups do not forward requests: the primary must be among the targets)
P=$(status | jq -r '[.replicas[] | select(.up) | .status.primary] | max // 0')
Q=$(((P + 2) % 4))
T_FLOOD2=$(date +%s.%N)
CLIENT_KINDS=(reqgarbage:20000:3 reqbadsig:300:2 garbage:20000:2 liar:10000:2 badsig:10000:2
    oversized:20:3 splie:200:2)
flood_seq clientP pair "$(client "$P")" "${CLIENT_KINDS[@]}" &
f1=$!
BG+=("$f1")
flood_seq clientQ pair "$(client "$Q")" "${CLIENT_KINDS[@]}" &
f2=$!
BG+=("$f2")
watch_floods $f1 $f2
T_FLOOD2_END=$(date +%s.%N)
during2=$(receipts_between "$T_FLOOD2" "$T_FLOOD2_END")
D2=$(dropped)
V2=$(views)
ok "client flood ($(date -d "@${T_FLOOD2%.*}" +%T)..$(date -d "@${T_FLOOD2_END%.*}" +%T), views $V1 -> $V2): replicas $P (primary) and $Q, $(sent_total clientP true) + $(sent_total clientQ true) messages; $during2 transfers receipted meanwhile"
[ "$during2" -gt 0 ] || fail "no receipts during the client flood"
gap2=$(max_gap "$T_FLOOD2" "$T_FLOOD2_END")
awk -v g="$gap2" -v m="$MAX_GAP" 'BEGIN {exit !(g < m)}' ||
    fail "no receipt for $gap2 s during the client flood"
for i in "$P" "$Q"; do
    d=$(delta "$i" "$D1" "$D2")
    echo "  replica $i drops during the client flood: $(jq -c . <<<"$d")"
    [ "$(jq -r .client_bad_frames <<<"$d")" -gt 0 ] ||
        fail "replica $i: no oversized or lying frame counted (client_bad_frames)"
    if [ "$(jq -r .queue_full <<<"$d")" -eq 0 ]; then
        [ "$(jq -r .malformed <<<"$d")" -gt 0 ] || fail "replica $i: no malformed drops counted"
        [ "$(jq -r .oversized <<<"$d")" -gt 0 ] || fail "replica $i: no oversized drops counted"
        [ "$(jq -r .tx_bad_signature <<<"$d")" -gt 0 ] ||
            fail "replica $i: no client transaction signature failures counted"
    else
        [ "$(jq -r '.malformed + .oversized + .queue_full' <<<"$d")" -gt 0 ] ||
            fail "replica $i: no drops counted"
    fi
done

# ---- after: the load goes on, nobody died, memory bounded, one height ----
T_AFTER=$(date +%s.%N)
wait_until 20 has_receipts_after "$T_AFTER" || fail "no receipts after the floods"
touch "$E2E_TMP/load.stop"
wait "$LOAD_PID" || true
after=$(receipts_between "$T_AFTER" 9999999999)
fails=$(grep -c FAIL "$RECEIPTS" || true)
[ "$fails" -eq 0 ] || fail "$fails submits failed: $(tail -n 3 "$E2E_TMP/load.err")"
T_END=$(date +%s.%N)
ok "receipts (transfers, per s, longest gap): before $(receipts_between "$T_BEFORE" "$T_FLOOD1") \
($(rate "$T_BEFORE" "$T_FLOOD1")/s), peer flood $during1 ($(rate "$T_FLOOD1" "$T_FLOOD1_END")/s, \
gap ${gap1} s), client flood $during2 ($(rate "$T_FLOOD2" "$T_FLOOD2_END")/s, gap ${gap2} s), \
after $after ($(rate "$T_AFTER" "$T_END")/s); no submit failed"

st=$(status)
for i in 0 1 2 3; do
    expect_eq "replica $i pid" "$(cat "$D/replica-$i.pid")" "${PIDS[$i]}"
    alive "${PIDS[$i]}" || fail "replica $i is gone"
    grow=$(((RSSMAX[i] - RSS0[i]) / 1024))
    echo "  replica $i VmRSS: ${RSS0[$i]} kB at start, max ${RSSMAX[$i]} kB (+$grow MB)"
    [ "$grow" -lt "$RSS_LIMIT_MB" ] || fail "replica $i VmRSS grew by $grow MB"
done
same_height() { status | jq -e '.up == 4 and ([.replicas[].status.last_executed] | unique | length == 1)'; }
wait_until 20 same_height || fail "replicas did not converge: $(status | jq -c '[.replicas[].status.last_executed]')"
st=$(status)
ok "4 replicas alive, RSS bounded, all at seq $(jq -r '.replicas[0].status.last_executed' <<<"$st"), views $(jq -c '[.replicas[].status.view]' <<<"$st")"
grep -h " ERROR " "$D"/replica-*.log | head -n 5 | sed 's/^/  log: /' || true

# A stranger's REQUEST of well-formed transfers with bad signatures must never
# be ordered or stored (fixed: the shell answers them at height 0, rejected).
for name in clientP clientQ; do
    tx=$(jq -rs '[.[] | select(.kind == "reqbadsig") | .first_tx] | .[0]' "$E2E_TMP/flood-$name.json")
    h=$(python3 -c 'import hashlib,sys; print(hashlib.sha256(bytes.fromhex(sys.argv[1])).hexdigest())' "$tx")
    q=$("$TALLY" tx --config "$CFG" "$h" --json 2>/dev/null || true)
    if [ "$(jq -r '.found // false' <<<"$q")" = true ]; then
        bug "a transaction with a bad signature from a stranger was ordered and stored: $(jq -c '{tx_hash, height, result}' <<<"$q")"
    fi
done
executed=$(jq -r '[.replicas[].status.counters.txs_executed] | max' <<<"$st")
honest=$(awk '$2 != "FAIL" {n += $2 + $3} END {print n + 0}' "$RECEIPTS")
echo "  transactions executed: $executed; submitted by the honest client: $honest"
[ "$executed" -le "$honest" ] ||
    bug "$((executed - honest)) transactions nobody signed were executed (stored with result bad_signature)"

[ ${#BUGS[@]} -eq 0 ] || fail "${#BUGS[@]} check(s) failed because of replica bugs: ${BUGS[*]}"
echo "test_hostile_input: passed in $(($(date +%s) - E2E_START)) s"
