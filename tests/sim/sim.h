/* The deterministic cluster simulator: n PBFT cores and a few clients in one
 * process over a simulated network, driven by one seed.
 *
 * Everything random (delays, loss, duplication, client choices, faults) comes
 * from one splitmix64 stream seeded per run, and events are delivered in
 * virtual time order (ties broken by insertion order), so a seed replays
 * exactly. The fixture plays the replica shell: it decodes and verifies every
 * envelope before the core sees it, persists the core's promises in memory,
 * executes committed batches on a model ledger and replies to clients.
 *
 * Invariants, checked after every event:
 *  - no two correct replicas executed different batch digests at one seq;
 *  - the chained head hash of every correct replica at a height is the same;
 *  - no replica executed a transaction with result OK twice;
 *  - every receipt a client accepts (f+1 matching replies) matches what the
 *    correct replicas executed at that height.
 * Liveness, at the end of scenarios that expect it: every request was
 * receipted and every live correct replica executed up to the highest
 * receipt, within the virtual time limit. */
#ifndef TALLY_TESTS_SIM_H
#define TALLY_TESTS_SIM_H

#include <stdbool.h>
#include <stdint.h>

struct sim_scenario {
    const char *name;
    uint32_t f;
    uint32_t clients, requests_per_client;
    uint32_t loss_permille, dup_permille;
    uint32_t delay_min_ms, delay_max_ms;
    int crashed_replica; /* never sends or receives; -1: none */
    int restart_replica; /* crashes at restart_down_ms, restores at restart_up_ms; -1 */
    uint64_t restart_down_ms, restart_up_ms;
    bool equivocating_primary; /* replica 0 sends different batches to different backups */
    int partition_replica;     /* cut off from everyone in [from, to) ms; -1: none */
    uint64_t partition_from_ms, partition_to_ms;
    int lying_state_server; /* serves forged certificates or blocks in state transfer; -1 */
    /* Issue 5: Byzantine behaviour around view changes. */
    bool censor_client0;      /* replica 0 never proposes client 0's requests */
    int lying_new_primary;    /* its NEW-VIEW re-proposes null batches only; -1 */
    int fabricating_replica;  /* its VIEW-CHANGE claims a prepared batch nobody prepared; -1 */
    bool skip_new_view_check; /* pbft_config.test_skip_new_view_check */
    bool bad_sig_primary;     /* replica 0 slips forged client transactions into its batches */
    int noisy_replica;        /* also sends garbage, forged-sender copies, replays; -1 */
    uint32_t quorum_override; /* pbft_config.test_quorum_override */
    bool expect_liveness;
    uint64_t time_limit_ms;
};

struct sim_result {
    bool violation; /* a safety invariant failed */
    bool live;      /* all requests receipted and executed everywhere in time */
    char what[512]; /* the first violation, or why liveness failed */
    uint64_t end_ms, events, delivered, executed_max;
    uint64_t receipts;
    uint64_t state_chunks, bad_chunks; /* state transfer: installed, rejected */
    uint64_t max_log_slots, max_ckpt_votes, max_recs, stable_count;
    uint64_t max_view; /* the highest view a correct replica installed */
};

/* Run one seed. Returns 0, or -1 when the fixture itself failed (no memory). */
int sim_run(const struct sim_scenario *sc, uint64_t seed, struct sim_result *res);

/* Seeds to run for a scenario: env SEEDS (default 500) / divisor, at least 1. */
uint64_t sim_seed_count(uint64_t divisor);
/* When env SIM_SEED is set, the one seed to replay (returns true). */
bool sim_replay_seed(uint64_t *seed);

#endif
