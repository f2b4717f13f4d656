/* The deterministic cluster simulator: n PBFT cores and a few clients in one
 * process over a simulated network, driven by one seed.
 *
 * Everything random (delays, loss, duplication, client choices, faults) comes
 * from one splitmix64 stream seeded per run, and events are delivered in
 * virtual time order (ties broken by insertion order), so a seed replays
 * exactly. The fixture plays the replica shell: it decodes and verifies every
 * envelope before the core sees it, persists the core's promises in memory,
 * executes committed batches on a model ledger and replies to clients. The
 * promises are kept as tallyd keeps them (src/replica.c io_persist: one record
 * per "pp"/"pr"/"cm" || seq, the latest write winning, "view"/"vchg", "lo"/"hi",
 * range deletes on DISCARD_LOG), and a restart restores them as tallyd's
 * restore_state does: the last certificate, the view, then pp, pr, cm per seq
 * in ascending order from lo + 1 (at most 2L below hi).
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

/* Where a group restart crashes a replica: the first such moment after it is
 * armed (or, failing that within SIM_FORCE_CRASH_MS, anywhere: "forced"). */
enum sim_crash_point {
    SIM_CRASH_BETWEEN_CHECKPOINTS = 1, /* between steps, while it holds executed seqs above its
                                        * stable checkpoint and its last one is not a
                                        * checkpoint seq */
    SIM_CRASH_AFTER_CHECKPOINT,        /* in the step that executed a checkpoint seq, right
                                        * after the block is durable: its vote, replies and
                                        * the rest of the step never leave or land */
};

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
    /* Group restarts: per round, group_size distinct replicas drawn from the
     * seed crash at group_crash_at and restart from their durable records
     * (keyed and restored like tallyd's). Simultaneous: one arm moment and one
     * downtime for the round, and (between checkpoints) the whole group
     * crashes on the same event; staggered: each member its own moment and
     * downtime. Arm moments are drawn in [from, from + spread) (later rounds:
     * from the previous round's last restart), downtimes in [min, max]. */
    uint32_t group_size, group_rounds;
    bool group_staggered;
    enum sim_crash_point group_crash_at;
    uint64_t group_from_ms, group_spread_ms, group_down_min_ms, group_down_max_ms;
    /* Crashes are power losses: a replica also loses the blocks it executed
     * after its last synced write (tallyd's ledger, defer_block_sync: a step
     * that persisted any record synced everything before it; an installed
     * state chunk is synced with its certificate). Its model ledger goes back
     * to that height at the crash, and it executes them again after its
     * restart. */
    bool power_loss;
    /* power_loss: this share of the crashes (per mille) are of the process
     * only: no write is lost and the boot stays the same (kill -9). */
    uint32_t process_crash_permille;
    uint32_t horizon_ahead; /* pbft_config.horizon_ahead (0: the default) */
    uint64_t settle_ms;     /* keep running this long after the load is done (0: stop at once) */
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
    uint64_t max_view;      /* the highest view a correct replica installed */
    uint64_t held_released; /* messages held for a down replica, delivered at its restart */
    /* Group restarts. */
    uint64_t group_crashes;    /* crashes at their crash point */
    uint64_t group_forced;     /* crashes without one (none came in SIM_FORCE_CRASH_MS) */
    uint64_t ckpt_crashes;     /* crashes right after executing checkpoint seq C ... */
    uint64_t ckpt_certified;   /* ... of which C got a certificate at some replica by the end */
    uint64_t ckpt_stable_past; /* ... of which the crashed replica's stable checkpoint reached C */
    uint64_t blocks_lost;      /* power_loss: executed blocks the restarts rolled back */
};

/* Run one seed. Returns 0, or -1 when the fixture itself failed (no memory). */
int sim_run(const struct sim_scenario *sc, uint64_t seed, struct sim_result *res);

/* Seeds to run for a scenario: env SEEDS (default 500) / divisor, at least 1. */
uint64_t sim_seed_count(uint64_t divisor);
/* When env SIM_SEED is set, the one seed to replay (returns true). */
bool sim_replay_seed(uint64_t *seed);

#endif
