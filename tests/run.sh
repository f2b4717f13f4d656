#!/usr/bin/env bash
# Runs Tally's tests and prints one closing line: "tests: N passed, N failed".
#   BUILD=build|build-san  where the test binaries are
#   ONLY=unit|sim|e2e      run one tier
#   SEEDS=N                simulator seeds per scenario
#   CRASH_CYCLES=N         kill -9 cycles of the crash-loop test (default 50)
#   E2E_SKIP="test_a ..."  end-to-end tests not to run
#   E2E_ONLY=test_a        run only this end-to-end test
# Unit and simulation tests are cmocka programs (TAP output); end-to-end tests
# are scripts in tests/e2e/*.sh that exit 0 on success.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ONLY=${ONLY:-all}
export SEEDS=${SEEDS:-500}
export TALLY_BIN_DIR="$PWD/$BUILD"
export CMOCKA_MESSAGE_OUTPUT=TAP
# Leaks inside NNG itself are known and not ours (see tests/lsan.supp).
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
passed=0
failed=0
failed_names=()

run_cmocka() {
    local bin=$1 out
    out=$(mktemp)
    echo "== $bin"
    "$bin" >"$out" 2>&1
    local rc=$?
    cat "$out"
    local ok bad
    ok=$(grep -cE '^ok [0-9]+' "$out")
    bad=$(grep -cE '^not ok [0-9]+' "$out")
    if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi
    passed=$((passed + ok))
    failed=$((failed + bad))
    [ "$bad" -gt 0 ] && failed_names+=("$bin")
    rm -f "$out"
}

if [ "$ONLY" = all ] || [ "$ONLY" = unit ]; then
    for t in "$BUILD"/tests/unit/test_*; do
        [ -x "$t" ] && [ "${t%.o}" = "$t" ] && [ "${t%.d}" = "$t" ] && run_cmocka "$t"
    done
fi
if [ "$ONLY" = all ] || [ "$ONLY" = sim ]; then
    for t in "$BUILD"/tests/sim/test_*; do
        [ -x "$t" ] && [ "${t%.o}" = "$t" ] && [ "${t%.d}" = "$t" ] && run_cmocka "$t"
    done
fi
if [ "$ONLY" = all ] || [ "$ONLY" = e2e ]; then
    for t in tests/e2e/test_*.sh; do
        [ -f "$t" ] || continue
        if [ -n "${E2E_ONLY:-}" ] && [ "$(basename "$t" .sh)" != "$E2E_ONLY" ]; then
            continue
        fi
        case " ${E2E_SKIP:-} " in *" $(basename "$t" .sh) "*)
            echo "== $t: skipped (E2E_SKIP)"
            continue ;;
        esac
        echo "== $t"
        if bash "$t"; then
            echo "ok - $t"
            passed=$((passed + 1))
        else
            echo "not ok - $t"
            failed=$((failed + 1))
            failed_names+=("$t")
        fi
    done
fi

for n in "${failed_names[@]+"${failed_names[@]}"}"; do echo "FAILED: $n"; done
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
