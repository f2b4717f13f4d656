/* PBFT normal case in the deterministic simulator (tests/sim/sim.h): many
 * seeds per scenario, safety checked after every event, liveness at the end.
 * A failing seed prints "FAILED seed=N scenario=NAME: why"; replay it with
 * SIM_SEED=N (and SEEDS=... does not matter then). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <cmocka.h>

#include "crypto/crypto.h"
#include "src/log.h"
#include "tests/sim/sim.h"

static int setup(void **state)
{
    (void)state;
    /* Quiet unless TALLY_LOG asks: Byzantine scenarios warn a lot. */
    tally_log_set_level(TALLY_LOG_ERROR);
    tally_log_init("sim");
    return tc_init() == TALLY_OK ? 0 : -1;
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs the scenario over its seeds; every seed must be safe (and live when
 * the scenario expects it). */
static void run_seeds(const struct sim_scenario *sc, uint64_t divisor)
{
    uint64_t first = 1, count = sim_seed_count(divisor), replay;
    if (sim_replay_seed(&replay)) {
        first = replay;
        count = 1;
    }
    double t0 = seconds();
    uint64_t events = 0, failed = 0, delivered = 0, virt = 0, executed = 0;
    for (uint64_t seed = first; seed < first + count; seed++) {
        struct sim_result res;
        assert_int_equal(sim_run(sc, seed, &res), 0);
        events += res.events;
        delivered += res.delivered;
        virt += res.end_ms;
        executed += res.executed_max;
        bool bad = res.violation || (sc->expect_liveness && !res.live);
        if (bad) {
            printf("# FAILED seed=%llu scenario=%s: %s\n", (unsigned long long)seed, sc->name,
                   res.what);
            failed++;
        }
    }
    printf("# scenario=%s seeds=%llu events=%llu delivered=%llu virtual=%llums executed=%llu "
           "failed=%llu %.2fs\n",
           sc->name, (unsigned long long)count, (unsigned long long)events,
           (unsigned long long)delivered, (unsigned long long)virt, (unsigned long long)executed,
           (unsigned long long)failed, seconds() - t0);
    assert_int_equal(failed, 0);
}

static void test_f1_lossy(void **state)
{
    (void)state;
    struct sim_scenario sc = {.name = "f1-loss-reorder-dup",
                              .f = 1,
                              .clients = 3,
                              .requests_per_client = 10,
                              .loss_permille = 50,
                              .dup_permille = 30,
                              .delay_min_ms = 1,
                              .delay_max_ms = 30,
                              .crashed_replica = -1,
                              .restart_replica = -1,
                              .expect_liveness = true,
                              .time_limit_ms = 60000};
    run_seeds(&sc, 1);
}

static void test_f2_lossy(void **state)
{
    (void)state;
    struct sim_scenario sc = {.name = "f2-loss-reorder-dup",
                              .f = 2,
                              .clients = 3,
                              .requests_per_client = 10,
                              .loss_permille = 50,
                              .dup_permille = 30,
                              .delay_min_ms = 1,
                              .delay_max_ms = 30,
                              .crashed_replica = -1,
                              .restart_replica = -1,
                              .expect_liveness = true,
                              .time_limit_ms = 60000};
    run_seeds(&sc, 5);
}

static void test_crashed_backup(void **state)
{
    (void)state;
    struct sim_scenario sc = {.name = "f1-crashed-backup",
                              .f = 1,
                              .clients = 3,
                              .requests_per_client = 10,
                              .loss_permille = 20,
                              .dup_permille = 20,
                              .delay_min_ms = 1,
                              .delay_max_ms = 30,
                              .crashed_replica = 3,
                              .restart_replica = -1,
                              .expect_liveness = true,
                              .time_limit_ms = 60000};
    run_seeds(&sc, 5);
}

static void test_restart(void **state)
{
    (void)state;
    struct sim_scenario sc = {.name = "f1-backup-restart",
                              .f = 1,
                              .clients = 3,
                              .requests_per_client = 10,
                              .loss_permille = 20,
                              .dup_permille = 20,
                              .delay_min_ms = 1,
                              .delay_max_ms = 30,
                              .crashed_replica = -1,
                              .restart_replica = 2,
                              .restart_down_ms = 150,
                              .restart_up_ms = 450,
                              .expect_liveness = true,
                              .time_limit_ms = 60000};
    run_seeds(&sc, 5);
}

static void test_restart_primary(void **state)
{
    (void)state;
    struct sim_scenario sc = {.name = "f1-primary-restart",
                              .f = 1,
                              .clients = 3,
                              .requests_per_client = 10,
                              .loss_permille = 20,
                              .dup_permille = 20,
                              .delay_min_ms = 1,
                              .delay_max_ms = 30,
                              .crashed_replica = -1,
                              .restart_replica = 0,
                              .restart_down_ms = 150,
                              .restart_up_ms = 300,
                              .expect_liveness = true,
                              .time_limit_ms = 60000};
    run_seeds(&sc, 5);
}

static struct sim_scenario equivocation(const char *name, uint32_t f, uint32_t override)
{
    struct sim_scenario sc = {.name = name,
                              .f = f,
                              .clients = 3,
                              .requests_per_client = 10,
                              .loss_permille = 20,
                              .dup_permille = 20,
                              .delay_min_ms = 1,
                              .delay_max_ms = 30,
                              .crashed_replica = -1,
                              .restart_replica = -1,
                              .equivocating_primary = true,
                              .quorum_override = override,
                              .expect_liveness = false, /* no view change yet */
                              .time_limit_ms = 1500};
    return sc;
}

static void test_equivocating_primary(void **state)
{
    (void)state;
    struct sim_scenario sc = equivocation("f1-equivocating-primary", 1, 0);
    run_seeds(&sc, 5);
    sc = equivocation("f2-equivocating-primary", 2, 0);
    run_seeds(&sc, 20);
}

/* Runs an equivocation scenario with a broken quorum until the checker
 * reports a violation; returns how many seeds that took (0: never). */
static uint64_t seeds_until_detected(const struct sim_scenario *sc)
{
    uint64_t count = sim_seed_count(5), seed;
    if (count < 50)
        count = 50; /* it stops at the first detection: cheap */
    uint64_t first = sim_replay_seed(&seed) ? seed : 1;
    for (seed = first; seed < first + count; seed++) {
        struct sim_result res;
        assert_int_equal(sim_run(sc, seed, &res), 0);
        if (res.violation) {
            printf("# scenario=%s seed=%llu detected, as it must: %s\n", sc->name,
                   (unsigned long long)seed, res.what);
            return seed - first + 1;
        }
    }
    printf("# FAILED seed=%llu.. scenario=%s: no violation detected in %llu seeds\n",
           (unsigned long long)first, sc->name, (unsigned long long)count);
    return 0;
}

/* The invariant checker must be able to fail: with a commit quorum of 1 (or
 * f+1) the same equivocation lets correct backups execute different batches. */
static void test_broken_quorum_is_detected(void **state)
{
    (void)state;
    struct sim_scenario sc = equivocation("f1-broken-quorum-1", 1, 1);
    assert_true(seeds_until_detected(&sc) > 0);
    sc = equivocation("f1-broken-quorum-f+1", 1, 2);
    assert_true(seeds_until_detected(&sc) > 0);
    sc = equivocation("f2-broken-quorum-f+1", 2, 3);
    assert_true(seeds_until_detected(&sc) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f1_lossy),
        cmocka_unit_test(test_f2_lossy),
        cmocka_unit_test(test_crashed_backup),
        cmocka_unit_test(test_restart),
        cmocka_unit_test(test_restart_primary),
        cmocka_unit_test(test_equivocating_primary),
        cmocka_unit_test(test_broken_quorum_is_detected),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
