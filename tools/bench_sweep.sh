#!/usr/bin/env bash
# A short open-loop sweep for `make bench-plot`: start a 4-node testnet of its
# own (temporary directory, free base port in 20000..32000, 1000 funded
# accounts), run `tally bench --rate R` for each rate, stop the testnet, and
# write one line per rate to OUT (default build/bench/sweep.dat):
#   rate tx_per_s p50_ms p90_ms p99_ms p999_ms max_ms ok no_receipt behind_max_ms
# with "# title: ..." and "# ceiling: TX_PER_S" (the median of the crypto
# ceilings the runs measured) header lines for the plot.
#   BUILD=build           where tally and tallyd are
#   RATES="500 1000 ..."  target rates (tx/s)
#   DURATION=4 WARMUP=1   seconds per rate
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
TALLY="$PWD/$BUILD/tally"
OUT=${1:-$BUILD/bench/sweep.dat}
RATES=${RATES:-"500 1000 2000 3000 4000 5000 6000 7000 8000"}
DURATION=${DURATION:-4}
WARMUP=${WARMUP:-1}
NODES=4
[ -x "$TALLY" ] && [ -x "$PWD/$BUILD/tallyd" ] || { echo "bench_sweep: no tally/tallyd in $BUILD (run make)" >&2; exit 1; }
command -v jq >/dev/null || { echo "bench_sweep: jq is required (apt-get install jq)" >&2; exit 1; }

D=$(mktemp -d "${TMPDIR:-/tmp}/tally-bench.XXXXXX")
started=0
cleanup() {
    local rc=$?
    if [ $started = 1 ]; then
        timeout 30 "$TALLY" testnet stop --dir "$D" >/dev/null 2>&1 || true
    fi
    rm -rf "$D"
    exit $rc
}
trap cleanup EXIT INT TERM

# A base port whose 2*NODES ports nobody listens on.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=
for _ in $(seq 1 50); do
    p=$((20000 + (RANDOM % 1200) * 10))
    ok=1
    for i in $(seq 0 $((2 * NODES - 1))); do port_free $((p + i)) || { ok=0; break; }; done
    [ $ok = 1 ] && { PORT=$p; break; }
done
[ -n "$PORT" ] || { echo "bench_sweep: no free ports in 20000..32000" >&2; exit 1; }

echo "bench_sweep: testnet in $D on port $PORT, rates: $RATES" >&2
"$TALLY" init --dir "$D" --nodes $NODES --accounts 1000 --base-port "$PORT" >/dev/null
started=1
timeout 60 "$TALLY" testnet start --dir "$D" >/dev/null

mkdir -p "$(dirname "$OUT")"
rows="$OUT.rows"
: >"$rows"
ceilings=()
title=
for r in $RATES; do
    j=$(timeout $((DURATION + WARMUP + 60)) "$TALLY" bench --config "$D/cluster.json" \
        --accounts-dir "$D/accounts" --rate "$r" --duration "$DURATION" --warmup "$WARMUP" \
        --timeout 5 --json --quiet) || { echo "bench_sweep: rate $r failed" >&2; continue; }
    [ -n "$title" ] || title=$(jq -r '"tally bench open loop, n = \(.n), \(.cores) cores (\(.cpu_model)), point labels: target tx/s"' <<<"$j")
    ceilings+=("$(jq -r '.ceiling.ceiling_tx_per_s | floor' <<<"$j")")
    jq -r '[.rate, .tx_per_s, .latency.p50_ms, .latency.p90_ms, .latency.p99_ms,
            .latency.p999_ms, .latency.max_ms, .ok, .no_receipt, .behind_max_ms]
           | map(tostring) | join(" ")' <<<"$j" >>"$rows"
    jq -r '"bench_sweep: \(.rate) tx/s target: \(.tx_per_s | floor) tx/s, p50 \(.latency.p50_ms) ms, p99 \(.latency.p99_ms) ms"' <<<"$j" >&2
done
[ ${#ceilings[@]} -gt 0 ] || { echo "bench_sweep: no rate completed" >&2; exit 1; }
# Every run measured the crypto ceiling before its load: take the median.
ceiling=$(printf '%s\n' "${ceilings[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
{
    echo "# title: $title"
    echo "# ceiling: $ceiling"
    echo "# rate tx_per_s p50_ms p90_ms p99_ms p999_ms max_ms ok no_receipt behind_max_ms"
    cat "$rows"
} >"$OUT"
rm -f "$rows"
echo "bench_sweep: wrote $OUT (crypto ceiling, median of the runs: $ceiling tx/s)" >&2
