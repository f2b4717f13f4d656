/* The PBFT core: pure and deterministic (Castro & Liskov, OSDI '99 / TOCS '02).
 *
 * The core takes events (a verified protocol message, a verified client
 * request, a clock tick) and answers through the injected struct pbft_io:
 * it persists what it promises, sends signed protocol messages, hands
 * committed batches to execution strictly in sequence order, and asks for
 * timers. No sockets, clocks, threads, RocksDB or randomness inside: time
 * arrives as `now_ms` on every event. Several replicas can live in one process
 * (the simulator does this), so there is no global state.
 *
 * Division of labour with the shell (tallyd or the simulator):
 *  - The shell decodes bytes (src/msg.h) and verifies the envelope signature
 *    and every client signature before calling the core (off the loop thread
 *    in tallyd). The core believes what it is given.
 *  - io->persist records are durable before any io->send issued after them in
 *    the same step leaves the process. The shell may buffer sends during a
 *    step and flush them after one synced write.
 *  - io->execute hands over one committed batch; the shell applies it to the
 *    ledger (which de-duplicates by transaction hash) and replies to clients.
 *
 * Prefix: pbft_. Module files: pbft.c (state, watermarks, dispatch),
 * recv_request.c, recv_pre_prepare.c, recv_prepare.c, recv_commit.c,
 * recv_status_active.c (retransmission), ... See docs/PROTOCOL.md. */
#ifndef TALLY_PBFT_H
#define TALLY_PBFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "ledger/tx.h"
#include "src/msg.h"

#define PBFT_MAX_REPLICAS 16
#define PBFT_BROADCAST (-1)

struct pbft_config {
    uint32_t n;                   /* replicas, n = 3f + 1 */
    uint32_t f;                   /* faults tolerated */
    uint32_t id;                  /* this replica, 0..n-1 */
    uint64_t checkpoint_interval; /* K: checkpoint every K sequence numbers */
    uint64_t window;              /* L: high watermark = low + L (a multiple of K) */
    uint32_t batch_max_txs;       /* cut a batch at this many requests ... */
    uint64_t batch_timeout_ms;    /* ... or when the oldest queued one waited this long */
    uint32_t max_inflight;        /* pre-prepared but not yet executed batches, primary side */
    uint64_t request_timeout_ms;  /* view change timer (issue 5) */
    tc_pubkey replica_keys[PBFT_MAX_REPLICAS];
    /* Added (issue 2): how often a replica broadcasts STATUS-ACTIVE so that
     * peers retransmit what it lacks; 0 = request_timeout_ms / 4, or 100 ms. */
    uint64_t retransmit_ms;
    /* TESTS ONLY: 0 = the real quorums (2f prepares, 2f+1 commits); nonzero =
     * this many commits and (value - 1) prepares. Exists so that the simulator
     * can prove its invariant checker detects a broken protocol. */
    uint32_t test_quorum_override;
};

/* What the core asks its environment to make durable (its promises). */
enum pbft_persist_kind {
    PBFT_PERSIST_VIEW = 1,    /* current view */
    PBFT_PERSIST_PREPREPARE,  /* a pre-prepare sent or accepted: view, seq, batch */
    PBFT_PERSIST_PREPARE,     /* own prepare sent: view, seq, digest */
    PBFT_PERSIST_COMMIT,      /* own commit sent: view, seq, digest */
    PBFT_PERSIST_DISCARD_LOG, /* entries with seq <= `seq` may be deleted */
};

struct pbft_persist {
    enum pbft_persist_kind kind;
    uint64_t view;
    uint64_t seq;
    tc_hash digest;
    const struct msg_batch *batch; /* PREPREPARE only; valid during the call */
    tc_sig sig; /* PREPREPARE only (added, issue 2): the primary's envelope signature,
                 * so that a restored replica can retransmit the pre-prepare */
};

struct pbft_io {
    void *ctx;
    /* Sign bytes with this replica's key (the envelope signature). */
    void (*sign)(void *ctx, const uint8_t *bytes, size_t len, tc_sig *out);
    /* Record a promise; durable before later sends leave. 0 or a TALLY_E* code
     * (the core stops making promises after a failure). */
    int (*persist)(void *ctx, const struct pbft_persist *rec);
    /* Send an encoded, signed message to replica `to` or PBFT_BROADCAST (all
     * others). The bytes are valid during the call only. */
    void (*send)(void *ctx, int to, const uint8_t *bytes, size_t len);
    /* A committed batch, strictly in sequence order, each seq exactly once. */
    void (*execute)(void *ctx, uint64_t view, uint64_t seq, const struct msg_batch *batch);
};

struct pbft; /* opaque */

struct pbft_status {
    uint64_t view;
    uint32_t primary;
    uint64_t last_executed;
    uint64_t last_stable_checkpoint;
    uint64_t low_watermark, high_watermark;
    uint64_t queued_requests;
    uint64_t dropped_messages; /* outside window, wrong view, mismatching digest, ... */
};

/* Create a replica core. cfg and io are copied. `last_executed` is the
 * ledger's height (execution resumes after it). Returns NULL on bad config
 * or no memory. Free with pbft_destroy. */
struct pbft *pbft_create(const struct pbft_config *cfg, const struct pbft_io *io,
                         uint64_t last_executed);
void pbft_destroy(struct pbft *p);

/* Restore promises persisted before a restart (call before any event). */
int pbft_restore(struct pbft *p, const struct pbft_persist *rec);

/* Events. `now_ms` is the shell's monotonic clock. */
void pbft_on_request(struct pbft *p, const struct ledger_tx *tx, const tc_hash *tx_hash,
                     uint64_t now_ms);
void pbft_on_message(struct pbft *p, const struct msg *m, uint64_t now_ms);
void pbft_on_tick(struct pbft *p, uint64_t now_ms);

void pbft_get_status(const struct pbft *p, struct pbft_status *out);
uint32_t pbft_primary_of(const struct pbft *p, uint64_t view);

#endif
