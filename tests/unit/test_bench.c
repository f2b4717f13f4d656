/* tally bench's pure parts: percentiles, the crypto ceiling, the open loop's
 * schedule, nonces and how many transactions to sign ahead. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypto/crypto.h"
#include "tools/lib/bench.h"

static int setup(void **state)
{
    (void)state;
    return tc_init() == TALLY_OK ? 0 : -1;
}

static void test_percentile_nearest_rank(void **state)
{
    (void)state;
    uint64_t v[100];
    for (size_t i = 0; i < 100; i++)
        v[i] = i + 1; /* 1..100 */
    assert_int_equal(bench_percentile(v, 100, 50), 50);
    assert_int_equal(bench_percentile(v, 100, 90), 90);
    assert_int_equal(bench_percentile(v, 100, 99), 99);
    assert_int_equal(bench_percentile(v, 100, 99.9), 100); /* rank ceil(99.9) = 100 */
    assert_int_equal(bench_percentile(v, 100, 100), 100);
    assert_int_equal(bench_percentile(v, 100, 0.5), 1);
    assert_int_equal(bench_percentile(v, 100, 0), 1);

    /* p99.9 of 1000 values is exactly rank 999, not 1000 (no float drift). */
    uint64_t *w = malloc(1000 * sizeof(*w));
    assert_non_null(w);
    for (size_t i = 0; i < 1000; i++)
        w[i] = i + 1;
    assert_int_equal(bench_percentile(w, 1000, 99.9), 999);
    assert_int_equal(bench_percentile(w, 1000, 99), 990);
    assert_int_equal(bench_percentile(w, 1000, 50), 500);
    free(w);

    /* Small and empty inputs. */
    uint64_t one = 7;
    assert_int_equal(bench_percentile(&one, 1, 50), 7);
    assert_int_equal(bench_percentile(&one, 1, 99.9), 7);
    assert_int_equal(bench_percentile(NULL, 0, 50), 0);
    uint64_t three[3] = {10, 20, 30};
    assert_int_equal(bench_percentile(three, 3, 50), 20); /* rank ceil(1.5) = 2 */
    assert_int_equal(bench_percentile(three, 3, 34), 20); /* rank ceil(1.02) = 2 */
    assert_int_equal(bench_percentile(three, 3, 33), 10); /* rank ceil(0.99) = 1 */
}

static void test_latency_summary_sorts(void **state)
{
    (void)state;
    uint64_t v[10] = {900, 100, 500, 300, 700, 200, 1000, 400, 800, 600};
    struct bench_latency l;
    bench_latency_summary(v, 10, &l);
    assert_int_equal(l.n, 10);
    assert_int_equal(v[0], 100); /* sorted in place */
    assert_int_equal(v[9], 1000);
    assert_int_equal(l.p50, 500);
    assert_int_equal(l.p90, 900);
    assert_int_equal(l.p99, 1000);
    assert_int_equal(l.p999, 1000);
    assert_int_equal(l.max, 1000);
    assert_true(l.mean > 549.9 && l.mean < 550.1);

    bench_latency_summary(NULL, 0, &l);
    assert_int_equal(l.n, 0);
    assert_int_equal(l.max, 0);
}

static void test_per_second_buckets(void **state)
{
    (void)state;
    /* start 10 s: 9.999999 s is before the window, 13.0 s past its 3 buckets. */
    uint64_t at[] = {9999999, 10000000, 10999999, 11000000, 12500000, 12999999, 13000000, 10500000};
    uint64_t c[3] = {7, 7, 7};
    bench_per_second(at, sizeof(at) / sizeof(at[0]), 10000000, c, 3);
    assert_int_equal(c[0], 3);
    assert_int_equal(c[1], 1);
    assert_int_equal(c[2], 2);
    bench_per_second(NULL, 0, 0, c, 3);
    assert_int_equal(c[0] + c[1] + c[2], 0);
}

static void test_ceiling_arithmetic(void **state)
{
    (void)state;
    /* MEASURED.md: 2 cores x 23,500 verifies/s / 4 replicas = 11,750 tx/s. */
    double c = bench_ceiling_tx_per_s(2, 23500.0, 4);
    assert_true(c > 11749.9 && c < 11750.1);
    /* More replicas on the same cores: proportionally less. */
    c = bench_ceiling_tx_per_s(2, 23500.0, 7);
    assert_true(c > 6714.2 && c < 6714.3);
    c = bench_ceiling_tx_per_s(16, 20000.0, 4);
    assert_true(c > 79999.9 && c < 80000.1);
    assert_true(bench_ceiling_tx_per_s(2, 23500.0, 0) == 0);
    assert_true(bench_ceiling_tx_per_s(0, 23500.0, 4) == 0);
    assert_true(bench_ceiling_tx_per_s(2, 0, 4) == 0);
    /* The ceiling measured after the run against the one before. */
    assert_true(bench_ceiling_drift(10000.0, 12500.0) > 0.2499 &&
                bench_ceiling_drift(10000.0, 12500.0) < 0.2501);
    assert_true(bench_ceiling_drift(10000.0, 9000.0) < -0.0999 &&
                bench_ceiling_drift(10000.0, 9000.0) > -0.1001);
    assert_true(bench_ceiling_drift(0, 9000.0) == 0);
    assert_true(bench_ceiling_drift(10000.0, 0) == 0);
}

static void test_measure_crypto(void **state)
{
    (void)state;
    struct bench_crypto cr;
    struct tally_err err = {0};
    assert_int_equal(bench_measure_crypto(20000, 20000, &cr, &err), 0);
    assert_true(cr.signs >= 64);
    assert_true(cr.verifies >= 64);
    assert_true(cr.sign_per_s > 100 && cr.verify_per_s > 100);
}

static void test_schedule(void **state)
{
    (void)state;
    const uint64_t t0 = 1000000;
    /* 1000 tx/s: one every millisecond, the first at t0. */
    assert_int_equal(bench_due_us(t0, 1000, 0), t0);
    assert_int_equal(bench_due_us(t0, 1000, 1), t0 + 1000);
    assert_int_equal(bench_due_us(t0, 1000, 2500), t0 + 2500000);
    assert_int_equal(bench_due_count(t0, 1000, t0 - 1), 0);
    assert_int_equal(bench_due_count(t0, 1000, t0), 1);
    assert_int_equal(bench_due_count(t0, 1000, t0 + 999), 1);
    assert_int_equal(bench_due_count(t0, 1000, t0 + 1000), 2);
    assert_int_equal(bench_due_count(t0, 1000, t0 + 1000000), 1001);
    /* 3 tx/s: due at 0, 333333, 666666 us. */
    assert_int_equal(bench_due_count(t0, 3, t0 + 333332), 1);
    assert_int_equal(bench_due_count(t0, 3, t0 + 333333), 2);
    assert_int_equal(bench_due_count(t0, 3, t0 + 999999), 3);
    assert_int_equal(bench_due_count(t0, 3, t0 + 1000000), 4);
    /* due_count agrees with due_us everywhere, also at awkward rates. */
    const double rates[] = {1, 7, 999.5, 4000, 123456.7};
    for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++)
        for (uint64_t now = t0; now < t0 + 3000000; now += 9973) {
            uint64_t k = bench_due_count(t0, rates[r], now);
            assert_true(k >= 1);
            assert_true(bench_due_us(t0, rates[r], k - 1) <= now);
            assert_true(bench_due_us(t0, rates[r], k) > now);
        }
    /* Behind schedule: sent 10 at 1000 tx/s, the 11th was due at t0 + 10 ms. */
    assert_int_equal(bench_behind_us(t0, 1000, 10, t0 + 25000), 15000);
    assert_int_equal(bench_behind_us(t0, 1000, 10, t0 + 10000), 0);
    assert_int_equal(bench_behind_us(t0, 1000, 10, t0 + 5000), 0); /* ahead: not behind */
    assert_int_equal(bench_behind_us(t0, 1000, 0, t0), 0);
}

static void test_round_robin_nonces(void **state)
{
    (void)state;
    /* 3 accounts with current nonces 5, 0, 9: consecutive nonces per account,
     * no two transactions share (account, nonce). */
    const uint64_t cur[3] = {5, 0, 9};
    uint64_t next[3] = {6, 1, 10};
    for (uint64_t i = 0; i < 30; i++) {
        size_t a = bench_account_of(i, 3);
        assert_int_equal(a, i % 3);
        assert_int_equal(bench_nonce_of(i, 3, cur[a]), next[a]);
        next[a]++;
    }
    assert_int_equal(bench_nonce_of(0, 1, 0), 1);
    assert_int_equal(bench_nonce_of(41, 1, 0), 42);
}

static void test_presign_count(void **state)
{
    (void)state;
    assert_int_equal(bench_presign_count(5000, 0, 0, 0, 0), 5000);       /* --count */
    assert_int_equal(bench_presign_count(0, 1000, 9999, 12, 0), 13200);  /* rate wins */
    assert_int_equal(bench_presign_count(0, 0, 10000, 12, 256), 132256); /* closed loop */
    assert_int_equal(bench_presign_count(0, 1, 0, 1, 0), 1000);          /* floor */
}

static void test_fmt_int(void **state)
{
    (void)state;
    char b[32];
    bench_fmt_int(0, b, sizeof(b));
    assert_string_equal(b, "0");
    bench_fmt_int(999, b, sizeof(b));
    assert_string_equal(b, "999");
    bench_fmt_int(1000, b, sizeof(b));
    assert_string_equal(b, "1,000");
    bench_fmt_int(11000.4, b, sizeof(b));
    assert_string_equal(b, "11,000");
    bench_fmt_int(1234567.6, b, sizeof(b));
    assert_string_equal(b, "1,234,568");
    bench_fmt_int(-6160, b, sizeof(b));
    assert_string_equal(b, "-6,160");
}

static void test_machine(void **state)
{
    (void)state;
    assert_true(bench_cores() >= 1);
    char cpu[128];
    bench_cpu_model(cpu, sizeof(cpu));
    assert_true(strlen(cpu) > 0);
    assert_null(strchr(cpu, '\n'));
}

/* --ledger: the account plan covers every account exactly once, funders in
 * the genesis, each other account created by one funder with consecutive
 * nonces. */
static void test_ledger_plan(void **state)
{
    (void)state;
    struct bench_ledger_plan p;
    bench_ledger_plan(1000, 65536, &p);
    assert_int_equal(p.funders, 1000);
    assert_int_equal(p.per_funder, 0);
    assert_int_equal(bench_ledger_children(&p, 0), 0);

    uint64_t cases[][2] = {{1000000, 65536}, {65537, 65536}, {100, 7}, {14, 7}, {15, 7}};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        bench_ledger_plan(cases[c][0], cases[c][1], &p);
        assert_int_equal(p.funders, cases[c][1]);
        uint64_t total = p.funders;
        for (uint64_t f = 0; f < p.funders; f++) {
            uint64_t k = bench_ledger_children(&p, f);
            assert_true(k <= p.per_funder);
            total += k;
        }
        assert_int_equal(total, cases[c][0]);
        assert_int_equal(bench_ledger_children(&p, p.funders), 0);
    }
    bench_ledger_plan(1000000, 65536, &p);
    assert_int_equal(p.per_funder, 15); /* ceil(934464 / 65536) */
}

static void test_ledger_rand_and_seeds(void **state)
{
    (void)state;
    uint64_t a = 1, b = 1;
    for (int i = 0; i < 100; i++)
        assert_int_equal(bench_rand(&a), bench_rand(&b)); /* deterministic */
    uint64_t counts[10] = {0};
    for (int i = 0; i < 100000; i++) {
        uint64_t r = bench_rand_below(&a, 10);
        assert_true(r < 10);
        counts[r]++;
    }
    for (int i = 0; i < 10; i++)
        assert_true(counts[i] > 9000 && counts[i] < 11000);
    assert_int_equal(bench_rand_below(&a, 1), 0);

    uint8_t s0[BENCH_SEED_BYTES], s1[BENCH_SEED_BYTES], s0b[BENCH_SEED_BYTES];
    bench_account_seed(0, s0);
    bench_account_seed(1, s1);
    bench_account_seed(0, s0b);
    assert_memory_equal(s0, s0b, BENCH_SEED_BYTES);
    assert_memory_not_equal(s0, s1, BENCH_SEED_BYTES);
    bench_account_seed(1ull << 40, s1);
    assert_memory_not_equal(s0, s1, BENCH_SEED_BYTES);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_percentile_nearest_rank),
        cmocka_unit_test(test_latency_summary_sorts),
        cmocka_unit_test(test_per_second_buckets),
        cmocka_unit_test(test_ceiling_arithmetic),
        cmocka_unit_test(test_measure_crypto),
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_round_robin_nonces),
        cmocka_unit_test(test_presign_count),
        cmocka_unit_test(test_fmt_int),
        cmocka_unit_test(test_machine),
        cmocka_unit_test(test_ledger_plan),
        cmocka_unit_test(test_ledger_rand_and_seeds),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
