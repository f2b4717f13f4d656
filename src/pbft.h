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
 * recv_status_active.c (retransmission), checkpoint.c (checkpoints, stable
 * certificates, garbage collection), state_transfer.c (catching up from
 * peers). See docs/PROTOCOL.md. */
#ifndef TALLY_PBFT_H
#define TALLY_PBFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "ledger/cert.h"
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
    /* Added (issue 4): the chain id (hash of the genesis block) that
     * checkpoint statements are bound to (ledger/cert.h). */
    tc_hash chain_id;
    /* How long without execution progress, while f+1 replicas vouch for a
     * checkpoint beyond us, before state transfer starts; 0 = 4 x retransmit. */
    uint64_t state_transfer_after_ms;
    /* TESTS ONLY (issue 5): backups accept a NEW-VIEW's re-proposals without
     * recomputing them from its view-changes. Exists so that the simulator
     * can prove that this check is what keeps a lying new primary safe. */
    bool test_skip_new_view_check;
    /* How many seqs a HORIZON record reaches beyond the one that needed it:
     * one synced PRE-PREPARE (primary) or PREPARE (backup) record per this
     * many; 0 = 256. Small values let the simulator reach its renewals. */
    uint32_t horizon_ahead;
};

/* What the core asks its environment to make durable (its promises). */
enum pbft_persist_kind {
    PBFT_PERSIST_VIEW = 1,    /* current view */
    PBFT_PERSIST_PREPREPARE,  /* a pre-prepare sent or accepted: view, seq, batch */
    PBFT_PERSIST_PREPARE,     /* own prepare sent: view, seq, digest */
    PBFT_PERSIST_COMMIT,      /* own commit sent: view, seq, digest */
    PBFT_PERSIST_DISCARD_LOG, /* entries with seq <= `seq` may be deleted */
    PBFT_PERSIST_CHECKPOINT,  /* a stable checkpoint certificate (cert), seq = its height,
                               * always <= the last executed seq (added, issue 4) */
    PBFT_PERSIST_HORIZON,     /* we may have sent PRE-PREPAREs (primary) or PREPAREs
                               * (backup) up to `seq` in `view` without synced records:
                               * after a reboot, none there (see deferrable; 0: none) */
    PBFT_PERSIST_ASSIGNED,    /* the new primary of `view` re-proposed up to `seq` in its
                               * NEW-VIEW, also seqs beyond its window that get no record:
                               * restarted, it numbers on after `seq` (always restored) */
};

struct pbft_persist {
    enum pbft_persist_kind kind;
    uint64_t view;
    uint64_t seq;
    tc_hash digest;
    const struct msg_batch *batch; /* PREPREPARE only; valid during the call */
    tc_sig sig; /* PREPREPARE only (added, issue 2): the primary's envelope signature,
                 * so that a restored replica can retransmit the pre-prepare */
    const struct ledger_cert *cert; /* CHECKPOINT only; valid during the call */
    /* VIEW only (added, issue 5): true while a view change to `view` is in
     * progress (VIEW-CHANGE sent, NEW-VIEW not yet accepted). */
    bool view_changing;
    /* HORIZON, pbft_restore only: written in this boot, so nothing under it
     * was lost (a crash of the process loses no write that reached the
     * kernel): it is our horizon again, not a floor. */
    bool same_boot;
    /* COMMIT only (added, issue 5): the prepared certificate that made us send
     * it: bit i of prepare_from = replica i's PREPARE, with its envelope
     * signature in prepare_sigs[i] (valid during the call). A restarted
     * replica still proves what it prepared in its VIEW-CHANGE. */
    uint32_t prepare_from;
    const tc_sig *prepare_sigs;
    /* PREPREPARE and PREPARE only: the primary's own new proposal, or a
     * backup's PRE-PREPARE and PREPARE in the normal case, at a seq our last
     * HORIZON record covers. The shell may write it without an fsync before
     * the send: a crash of the process loses nothing written, and a power
     * loss that takes the record can make us forget the proposal (or the
     * PREPARE) but never send another batch (or digest) for that (view,
     * seq), because a restored HORIZON record keeps the primary from
     * proposing and a backup from preparing at or below its seq in that view.
     * Every message that depends on it (our COMMIT, a VIEW-CHANGE) follows a
     * synced write, which covers this one (docs/PROTOCOL.md, "What is
     * persisted, and when"). */
    bool deferrable;
};

/* What executing one batch produced (filled by io->execute). */
struct pbft_exec_result {
    tc_hash block_hash;
    tc_hash state_digest;
};

/* What installing a state chunk did (filled by io->state_install). */
struct pbft_install_result {
    uint64_t height;         /* the ledger's height after the chunk */
    bool certified;          /* the chunk ended on a certified checkpoint (stored by the shell) */
    struct ledger_ckpt ck;   /* ... which one, when certified */
    struct ledger_cert cert; /* ... and its certificate (added, issue 5) */
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
    /* A committed batch, strictly in sequence order, each seq exactly once,
     * with the hashes of its batch->count transactions (the core has them;
     * the shell need not hash again). out gets the block hash and state
     * digest it produced (checkpoints). */
    void (*execute)(void *ctx, uint64_t view, uint64_t seq, const struct msg_batch *batch,
                    const tc_hash *tx_hashes, struct pbft_exec_result *out);
    /* State transfer, serving side (added, issue 4): append to out a chunk of
     * the chain that starts at block `from` (the requester's next block) and
     * that the requester can verify on its own: it ends on a checkpoint this
     * replica holds a certificate for and carries that certificate. `to` is
     * where the requester wants to get (a hint). 0, or TALLY_ENOTFOUND when
     * there is nothing to serve (no certificate at or above from). */
    int (*state_read)(void *ctx, uint64_t from, uint64_t to, struct msg_buf *out);
    /* Receiving side: verify a chunk (certificate signatures, hash chain from
     * our head to the certified block) BEFORE applying anything, then apply
     * its blocks. 0 with out filled, or an error (the chunk is bad: its
     * sender is suspect; nothing was applied). Chunks from a lying peer must
     * never be applied. */
    int (*state_install)(void *ctx, const uint8_t *chunk, size_t len,
                         struct pbft_install_result *out);
    /* Verify a signature (added, issue 5): the proofs inside VIEW-CHANGE and
     * NEW-VIEW (prepare and pre-prepare signatures, embedded view-changes)
     * are checked by the core itself. 0 when valid. NULL: tc_verify. */
    int (*verify)(void *ctx, const tc_pubkey *pk, const uint8_t *bytes, size_t len,
                  const tc_sig *sig);
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
    /* Added (issue 4). */
    bool state_transfer;         /* fetching blocks from peers now */
    uint64_t state_target;       /* ... up to this seq */
    uint64_t state_chunks;       /* chunks installed */
    uint64_t state_bad_chunks;   /* chunks rejected (a peer lied or the chunk was stale) */
    uint64_t checkpoints_stable; /* stable certificates formed or installed */
    uint64_t log_slots_used;     /* log entries held (protocol memory) */
    uint64_t checkpoint_votes;   /* checkpoint votes held */
    /* Added (issue 5). */
    bool view_active;         /* false while changing to `view` */
    uint64_t views_changed;   /* NEW-VIEWs accepted */
    uint64_t view_timeout_ms; /* the current view-change timeout (doubles) */
};

/* Create a replica core. cfg and io are copied. `last_executed` is the
 * ledger's height (execution resumes after it). Returns NULL on bad config
 * or no memory. Free with pbft_destroy. io->state_read / state_install may be
 * NULL (no state transfer: the simulator's simplest scenarios). */
struct pbft *pbft_create(const struct pbft_config *cfg, const struct pbft_io *io,
                         uint64_t last_executed);
void pbft_destroy(struct pbft *p);

/* Restore promises persisted before a restart (call before any event), in
 * this order: the CHECKPOINT record (the last stable certificate, seq <= the
 * ledger height: it sets the stable checkpoint and the low watermark), VIEW,
 * ASSIGNED, HORIZON, then per seq its PREPREPARE, PREPARE and COMMIT records
 * (a PRE-PREPARE of the restored view counts as pending work). */
int pbft_restore(struct pbft *p, const struct pbft_persist *rec);

/* After pbft_restore, before any event, with the ledger's height, head block
 * hash and state digest: when the height is a checkpoint seq (a multiple of
 * K), our vote for it. A vote signed just before a crash may never have left,
 * and the core does not execute that seq again: without this, f+1 such
 * restarts leave the checkpoint short of 2f+1 votes for good. Ed25519 signs
 * deterministically: the same vote, never a conflicting one. Ignored at or
 * below the stable checkpoint. */
void pbft_restore_checkpoint_vote(struct pbft *p, uint64_t seq, const struct pbft_exec_result *res);

/* On a clean stop, after the last event: persist a HORIZON record that
 * covers nothing (the shell then makes it durable with everything before
 * it), so that after a reboot the replica goes on proposing (primary) or
 * preparing (backup) in its view instead of waiting for a view change.
 * Kept when it restarted under a floor in that view. */
void pbft_release_horizon(struct pbft *p);

/* Events. `now_ms` is the shell's monotonic clock. */
void pbft_on_request(struct pbft *p, const struct ledger_tx *tx, const tc_hash *tx_hash,
                     uint64_t now_ms);
void pbft_on_message(struct pbft *p, const struct msg *m, uint64_t now_ms);
void pbft_on_tick(struct pbft *p, uint64_t now_ms);

void pbft_get_status(const struct pbft *p, struct pbft_status *out);
/* The current view (cheap: pbft_get_status walks the log). */
uint64_t pbft_view(const struct pbft *p);
uint32_t pbft_primary_of(const struct pbft *p, uint64_t view);

#endif
