#!/usr/bin/env bash
# Disk faults on real replicas (issue 7). Root only: skipped (exit 0) when not
# root or when tmpfs cannot be mounted here.
#  1. Disk full: replica 3's data directory is a small tmpfs: the ledger's
#     free-space floor (LEDGER_MIN_FREE_BYTES, 64 MiB) plus RocksDB's MANIFEST
#     preallocation plus 160 KiB (genesis fits, a few hundred transfers do not). Under load its disk fills up to the
#     floor: the ledger refuses the write ("nearly full", nothing written,
#     before RocksDB meets a full disk), the replica logs it (L0501, L0604) and
#     tallyd exits with status 1 within seconds; the other 3 keep committing;
#     started again while the disk is still full it stops again with the same
#     line (at the open, or at its first write: the open needs 4 MiB above the
#     floor, which closing may just have freed); its data directory is not corrupted (audit passes once space is
#     back). Given space again and restarted (`tally testnet start` restarts
#     missing replicas), it catches up to the others.
#  2. Corrupted RocksDB files: replica 2 stopped cleanly (memtables flushed to
#     an .sst), then bytes flipped in (a) the middle of the .sst, (b) its first
#     data block (the oldest blocks, which a start does not read), (c) the
#     MANIFEST: each time tallyd must refuse to start (non-zero exit, a line
#     naming the corruption) and never serve. Then with its data directory
#     cleared it rebuilds from its peers by state transfer, and after a stop
#     `tally audit` and `tally verify-checkpoint` pass on it.
# Every mount is undone on exit, whatever happens.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
    echo "test_disk_faults: skipped (needs root to mount tmpfs)"
    exit 0
fi
D="$E2E_TMP/net"
PORT=$(e2e_base_port)
CLIENTS=8
CFG="$D/cluster.json"
MOUNTS=()
# Checks that fail because of a replica bug are recorded here (and reported at
# the end) so that the rest of the test still runs: see BUG comments.
BUGS=()
bug() { echo "BUG: $*" >&2; BUGS+=("$*"); }
# forget PID: a process we reaped (its pid may be reused) is no longer ours to stop.
forget() {
    local keep=() x
    for x in "${E2E_PIDS[@]+"${E2E_PIDS[@]}"}"; do [ "$x" = "$1" ] || keep+=("$x"); done
    E2E_PIDS=("${keep[@]+"${keep[@]}"}")
}

# On exit: stop our replicas (a tmpfs with open files cannot be unmounted),
# unmount, then the usual cleanup (logs on failure, temp dir removed).
disk_cleanup() {
    local rc=$? f p m deadline
    set +e # errexit holds in traps: a failing step here must not skip the rest
    local pids=("${E2E_PIDS[@]+"${E2E_PIDS[@]}"}")
    for f in "$D"/replica-*.pid; do [ -f "$f" ] && pids+=("$(cat "$f")"); done
    for p in "${pids[@]+"${pids[@]}"}"; do
        if alive "$p" && tr '\0' ' ' <"/proc/$p/cmdline" | grep -q tallyd; then
            kill -TERM "$p" 2>/dev/null || true
        fi
    done
    deadline=$((SECONDS + 10))
    for p in "${pids[@]+"${pids[@]}"}"; do
        while alive "$p" && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
        if alive "$p" && tr '\0' ' ' <"/proc/$p/cmdline" | grep -q tallyd; then
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
    for m in "${MOUNTS[@]+"${MOUNTS[@]}"}"; do
        if mountpoint -q "$m"; then
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null ||
                echo "test_disk_faults: could not unmount $m" >&2
        fi
    done
    (exit $rc) # e2e_cleanup reads the test's status from $?
    e2e_cleanup
}
trap disk_cleanup EXIT

mkdir "$E2E_TMP/probe"
MOUNTS+=("$E2E_TMP/probe")
if ! mount -t tmpfs -o size=64k tmpfs "$E2E_TMP/probe" 2>/dev/null; then
    echo "test_disk_faults: skipped (mount -t tmpfs is not permitted here)"
    exit 0
fi
umount "$E2E_TMP/probe"

"$TALLY" init --dir "$D" --base-port "$PORT" --accounts "$CLIENTS" >/dev/null
jq '.checkpoint_interval = 16 | .log_window = 64 | .batch_max_txs = 8' "$CFG" >"$CFG.new"
mv "$CFG.new" "$CFG"
status() { "$TALLY" status --config "$CFG" --timeout 1 --json 2>/dev/null || true; }
executed() { status | jq -r "[.replicas[] | select(.up) | .status.last_executed] | $1"; }

LOAD_TIMEOUT=40 LOAD_KILL_AFTER=60 # s: each submit, and its process (lib.sh load)

# ---------------------------------------------------------------- 1. disk full
# The floor plus 4 MiB (RocksDB preallocates that much MANIFEST at open) plus
# 160 KiB: the genesis (about 15 KiB) fits, the WAL of ~200 transfers does not.
# RocksDB's WAL preallocation (1.1 write buffers, 70 MB) fails quietly on a
# tmpfs this small and takes nothing. tmpfs takes memory only for what is
# written.
FLOOR_KB=$((64 * 1024)) # LEDGER_MIN_FREE_BYTES (ledger/ledger.h)
ROOM_KB=$((4096 + 160))
TMPFS_KB=$((FLOOR_KB + ROOM_KB))
mkdir -p "$D/data-3"
mount -t tmpfs -o "size=${TMPFS_KB}k,mode=0700" tmpfs "$D/data-3"
MOUNTS+=("$D/data-3")
# Replica 3 is started by hand, as our child, so that its exit status is ours
# to read; its pid file makes `tally testnet start` start only the others.
"$TALLYD" --config "$CFG" --id 3 --data "$D/data-3" >>"$D/replica-3.log" 2>&1 &
R3=$!
E2E_PIDS+=("$R3")
echo "$R3" >"$D/replica-3.pid"
timeout 60 "$TALLY" testnet start --dir "$D" --json >/dev/null
ok "testnet up on port $PORT; replica 3 (pid $R3) on a ${TMPFS_KB} KiB tmpfs (${ROOM_KB} KiB above the floor): $(df -k --output=used "$D/data-3" | tail -1 | tr -d ' ') KiB used"

# Load until replica 3's disk is full and it is gone (bounded: 6 rounds).
round=0
while alive "$R3" && [ $round -lt 6 ]; do
    round=$((round + 1))
    load "full-$round" 40
done
r3_gone() { ! alive "$R3"; }
wait_until 20 r3_gone ||
    fail "replica 3 still runs after $((round * CLIENTS * 40)) transfers on a ${TMPFS_KB} KiB disk ($(grep -c 'nearly full' "$D/replica-3.log") 'nearly full' lines, L0604 $(grep -c L0604 "$D/replica-3.log"), L0510 $(grep -c L0510 "$D/replica-3.log"))"
r3rc=0
wait "$R3" || r3rc=$?
forget "$R3"
rm -f "$D/replica-3.pid"
ok "replica 3 stopped (exit status $r3rc) after $round rounds; its disk: $(df -k --output=used,avail "$D/data-3" | tail -1 | tr -s ' ') KiB used/free"
sed 's/^/  log: /' <(grep -E 'L0501|L0604|L0606' "$D/replica-3.log" | tail -n 3)
# L0606: tallyd's bounded shutdown gave up waiting for the network teardown
# (NNG's socket close could block under load; streams should not) and exited
# anyway.
if grep -q L0606 "$D/replica-3.log"; then echo "note: replica 3's shutdown hung in the network teardown (L0606)"; fi
expect_eq "replica 3 answers clients" "$(status | jq -r '.replicas[3].up')" false
# The floor refused the write, not RocksDB: a distinct line, with the floor.
grep -Eq "L0501 .*data directory .*data-3 is nearly full: [0-9]+ KiB free, the ledger keeps $FLOOR_KB KiB free" \
    "$D/replica-3.log" || fail "replica 3 logged no 'nearly full' line (L0501)"
grep -q 'L0604 stopping after a fatal error: .*nearly full' "$D/replica-3.log" ||
    fail "replica 3 did not stop on the full disk (no L0604)"
! grep -q 'No space left' "$D/replica-3.log" || fail "RocksDB met the full disk (the floor did not hold)"
expect_eq "tallyd exit status on a full disk" "$r3rc" 1

# Started again on the still-full disk: it stops again, the same line.
rc=0
timeout 20 "$TALLYD" --config "$CFG" --id 3 --data "$D/data-3" >"$E2E_TMP/full-start.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "tallyd on the full disk: exit status $rc: $(cat "$E2E_TMP/full-start.out")"
grep -q "nearly full" "$E2E_TMP/full-start.out" || fail "tallyd on the full disk: $(cat "$E2E_TMP/full-start.out")"
ok "tallyd started on the full disk stops again (exit $rc): $(grep -m1 'nearly full' "$E2E_TMP/full-start.out" | cut -c1-140)"

# The other three keep committing: another round, every transfer receipted.
before=$(executed max)
load after-full 30
ok "replicas 0-2 keep committing without replica 3: seq $before -> $(executed max)"

# Space back (the tmpfs grows in place), and the data directory is intact.
# (RocksDB preallocates 4 MiB of MANIFEST and 70 MB of WAL when it can.)
mount -o remount,size=$((FLOOR_KB + 256 * 1024))k "$D/data-3"
a=$("$TALLY" audit --data "$D/data-3" --json --quiet) || fail "audit of the full-disk data-3: $a"
expect_eq "data-3 intact after the full disk" "$(jq -r .intact <<<"$a")" true
ok "data-3 audits intact after the full disk: height $(jq -r .head_height <<<"$a"), $(jq -r .certificates <<<"$a") certificates"

# Restart it (testnet start restarts the missing replica): it catches up.
timeout 60 "$TALLY" testnet start --dir "$D" --json >/dev/null
caught_up3() {
    status | jq -e '.up == 4 and ([.replicas[].status.last_executed] | unique | length == 1)'
}
wait_until 60 caught_up3 || fail "replica 3 did not catch up: $(status | jq -c '[.replicas[] | {id, e: .status.last_executed}]')"
st=$(status)
ok "replica 3 restarted with space and caught up to seq $(jq -r '.replicas[3].status.last_executed' <<<"$st") ($(jq -c '.replicas[3].status.checkpoints | {blocks_transferred, state_chunks}' <<<"$st"))"

# ------------------------------------------------------ 2. corrupted RocksDB files
victim=2
R2=$(cat "$D/replica-$victim.pid")
kill -TERM "$R2"
deadline=$((SECONDS + 15))
while alive "$R2"; do
    [ $SECONDS -lt $deadline ] || fail "replica $victim did not stop on SIGTERM"
    sleep 0.05
done
rm -f "$D/replica-$victim.pid"
grep -q "L0605" "$D/replica-$victim.log" || fail "replica $victim did not stop cleanly"
DV="$D/data-$victim"
ls "$DV"/*.sst >/dev/null 2>&1 || fail "no .sst in $DV after a clean stop: $(ls "$DV")"
cp -a "$DV" "$E2E_TMP/data-clean"
ok "replica $victim stopped cleanly; $(ls "$DV"/*.sst | wc -l) .sst file(s), largest $(ls -S "$DV"/*.sst | head -1 | xargs stat -c %s) bytes"

# flip FILE OFFSET_PERCENT [BYTES]: invert BYTES bytes (default 64) at that point.
flip() {
    python3 - "$1" "$2" "${3:-64}" <<'EOF'
import sys
path, pct, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
b = bytearray(open(path, 'rb').read())
if not b:
    sys.exit("empty file")
at = min(len(b) * pct // 100, max(0, len(b) - n))
for i in range(at, min(len(b), at + n)):
    b[i] ^= 0xFF
open(path, 'wb').write(b)
EOF
}
# must_refuse WHAT: tallyd on the corrupted $DV must exit non-zero within 20 s
# with a line naming the corruption, and never answer a client meanwhile.
must_refuse() {
    local what=$1 out rc=0 served=0 p
    "$TALLYD" --config "$CFG" --id $victim --data "$DV" >"$E2E_TMP/refuse.out" 2>&1 &
    p=$!
    E2E_PIDS+=("$p")
    local deadline=$((SECONDS + 20))
    while alive "$p" && [ $SECONDS -lt $deadline ]; do
        if status | jq -e ".replicas[$victim].up" >/dev/null; then served=1; break; fi
    done
    if alive "$p"; then
        kill -TERM "$p"
        wait "$p" || true
        forget "$p"
        bug "$what: tallyd started on a corrupted data directory$([ $served -eq 1 ] && echo " and served clients"): $(tail -n 3 "$E2E_TMP/refuse.out" | cut -c1-200)"
        return 0
    fi
    wait "$p" || rc=$?
    forget "$p"
    out=$(cat "$E2E_TMP/refuse.out")
    [ "$served" -eq 0 ] || fail "$what: tallyd answered a client before exiting"
    [ "$rc" -ne 0 ] || fail "$what: tallyd exited 0 on a corrupted data directory"
    grep -qi "corrupt" <<<"$out" || fail "$what: no line names the corruption: $out"
    ok "$what: refused (exit $rc): $(grep -i -m1 corrupt <<<"$out" | cut -c1-160)"
}
restore_clean() { rm -rf "$DV" && cp -a "$E2E_TMP/data-clean" "$DV"; }

sst=$(ls -S "$DV"/*.sst | head -1)
flip "$sst" 50
must_refuse "64 bytes flipped in the middle of $(basename "$sst")"

restore_clean
sst=$(ls -S "$DV"/*.sst | head -1)
# BUG (replica, reported): a start reads only what it needs (genesis, head,
# protocol records), so corruption in the first data block (account records
# and the oldest ledger blocks sort first) is found only when something reads
# it: the replica starts, connects and answers clients (balance queries fail
# with L0505), and dies at its first execution (L0501). A checksum pass over
# the files at start (e.g. rocksdb_verify_checksum) would refuse at once.
flip "$sst" 2
must_refuse "64 bytes flipped in the first data block of $(basename "$sst")"

restore_clean
flip "$(ls "$DV"/MANIFEST-* | head -1)" 50 16
must_refuse "16 bytes flipped in the MANIFEST"

# Cleared, it rebuilds from its peers. Make sure the others are far enough
# ahead that their logs no longer hold the start (state transfer, not replay).
rm -rf "$DV"
round=0
while [ "$(executed 'min // 0')" -le 160 ] && [ $round -lt 6 ]; do
    round=$((round + 1))
    load "ahead-$round" 40
done
[ "$(executed min)" -gt 160 ] || fail "the cluster did not get past seq 160"
timeout 60 "$TALLY" testnet start --dir "$D" --json >/dev/null
rebuilt() {
    local st
    st=$(status)
    jq -e '.up == 4 and ([.replicas[].status.last_executed] | unique | length == 1)' <<<"$st" &&
        jq -e ".replicas[$victim].status.checkpoints.blocks_transferred > 0" <<<"$st"
}
wait_until 60 rebuilt || fail "replica $victim did not rebuild: $(status | jq -c \
    '[.replicas[] | {id, e: .status.last_executed, c: .status.checkpoints.blocks_transferred}]')"
st=$(status)
ok "replica $victim rebuilt from its peers: seq $(jq -r ".replicas[$victim].status.last_executed" <<<"$st"), $(jq -c ".replicas[$victim].status.checkpoints | {blocks_transferred, state_chunks, state_bad_chunks}" <<<"$st")"

load final 10
same_height() { status | jq -e '.up == 4 and ([.replicas[].status.last_executed] | unique | length == 1)'; }
wait_until 30 same_height || fail "replicas did not converge after the last round"
"$TALLY" testnet stop --dir "$D" >/dev/null
heads=()
for i in 0 1 2 3; do
    a=$("$TALLY" audit --data "$D/data-$i" --config "$CFG" --json --quiet) ||
        fail "audit of data-$i: $a"
    expect_eq "audit data-$i intact" "$(jq -r .intact <<<"$a")" true
    heads+=("$(jq -r .head_hash <<<"$a")")
    v=$("$TALLY" verify-checkpoint --config "$CFG" --data "$D/data-$i" --json) ||
        fail "verify-checkpoint data-$i: $v"
    expect_eq "verify-checkpoint data-$i" "$(jq -r .valid <<<"$v")" true
done
for i in 1 2 3; do expect_eq "head hash of data-$i" "${heads[$i]}" "${heads[0]}"; done
ok "4 data directories (data-3 on the regrown tmpfs, data-2 rebuilt): same head ${heads[0]:0:16}, audits and certificates verify"

[ ${#BUGS[@]} -eq 0 ] || fail "${#BUGS[@]} check(s) failed because of replica bugs: $(printf '[%s] ' "${BUGS[@]}")"
echo "test_disk_faults: passed in $(($(date +%s) - E2E_START)) s"
