#!/usr/bin/env bash
# Runs every libFuzzer target for FUZZ_SECONDS seconds each, starting from the
# seed corpus in tests/fuzz/corpus/NAME; prints executions per target and ends
# with "fuzz: N passed, N failed". Crashes are kept in build-fuzz/crashes/.
set -u
cd "$(dirname "$0")/../.."
secs=${FUZZ_SECONDS:-60}
passed=0
failed=0
mkdir -p build-fuzz/crashes
for bin in build-fuzz/fuzz/fuzz_*; do
    name=$(basename "$bin")
    work=build-fuzz/corpus/$name
    mkdir -p "$work"
    [ -d "tests/fuzz/corpus/$name" ] && cp -n tests/fuzz/corpus/"$name"/* "$work"/ 2>/dev/null
    log=build-fuzz/$name.log
    if "$bin" "$work" -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
        -artifact_prefix=build-fuzz/crashes/"$name"- >"$log" 2>&1; then
        execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+|Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' | tail -1)
        echo "ok - $name: ${execs:-?} executions in ${secs}s, no crash"
        passed=$((passed + 1))
    else
        echo "not ok - $name: crashed, see $log and build-fuzz/crashes/"
        tail -30 "$log"
        failed=$((failed + 1))
    fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
