/* The PBFT core's private state and the helpers its handler files share.
 * Not part of the interface: only src/pbft.c and src/recv_*.c include it. */
#ifndef TALLY_PBFT_INTERNAL_H
#define TALLY_PBFT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "src/log.h"
#include "src/pbft.h"

/* One sequence number's log entry ("the log", Castro & Liskov §4.2). Slots
 * live in a ring indexed by seq; an entry whose `seq` differs from the one
 * looked up is stale and is reset before reuse. The tx storage is kept across
 * reuse so that steady state allocates nothing per message. */
struct pbft_slot {
    uint64_t seq; /* 0: never used */
    uint64_t view;
    uint64_t since_ms; /* when this seq's entry was first touched */
    bool has_pre_prepare;
    bool sent_prepare, sent_commit;
    bool prepared, committed, executed;
    bool warned_conflict; /* logged a conflicting PRE-PREPARE once */
    tc_hash digest;
    tc_sig pp_sig; /* the primary's envelope signature, to retransmit its PRE-PREPARE */
    uint32_t count, cap;
    uint8_t *txs;    /* count * LEDGER_TX_BYTES, capacity cap */
    tc_hash *hashes; /* count tx hashes */
    /* PREPARE / COMMIT received (and our own), by sender: one each per (v, n). */
    uint32_t prepare_from, commit_from; /* bit i: replica i */
    tc_hash prepare_digest[PBFT_MAX_REPLICAS];
    tc_hash commit_digest[PBFT_MAX_REPLICAS];
    tc_sig prepare_sig[PBFT_MAX_REPLICAS]; /* their envelope signatures (proofs) */
    /* The prepared certificate (§4.4 "P"): kept across views while a new view
     * re-proposes the same digest, so that a later VIEW-CHANGE still proves it. */
    bool has_cert;
    uint64_t cert_view;
    tc_hash cert_digest;
    uint32_t cert_from;
    tc_sig cert_sig[PBFT_MAX_REPLICAS];
};

/* A client request waiting to be proposed (or, on a backup, kept for the
 * view change of a later issue). */
struct pbft_request {
    uint8_t tx[LEDGER_TX_BYTES];
    tc_hash hash;
    uint64_t arrived_ms;
    bool live; /* false once proposed or seen in an accepted PRE-PREPARE */
};

/* The de-duplication set: tx hash -> queue position, or PBFT_TX_INFLIGHT
 * when the tx is in an accepted, not yet executed, PRE-PREPARE. */
#define PBFT_TX_INFLIGHT UINT64_MAX
struct pbft_txset_entry {
    tc_hash hash;
    uint64_t where;
    bool used;
};

/* Checkpoint votes for one checkpoint seq (a multiple of K), by sender
 * (Castro & Liskov §4.3: "a replica i produces a checkpoint... multicasts a
 * message <CHECKPOINT, n, d, i>"). The statement signatures are kept: 2f+1
 * matching ones become the certificate (ledger/cert.h). */
struct pbft_ckpt_slot {
    uint64_t seq;  /* 0: unused */
    uint32_t from; /* bit i: replica i's vote is here (ours included once executed) */
    tc_hash block_hash[PBFT_MAX_REPLICAS];
    tc_hash state_digest[PBFT_MAX_REPLICAS];
    tc_sig sig[PBFT_MAX_REPLICAS];
};

/* A replica's highest checkpoint vote seen (even beyond our window): f+1
 * matching ones prove that we are behind (state transfer). */
struct pbft_ckpt_vote {
    uint64_t seq; /* 0: none */
    tc_hash block_hash, state_digest;
};

/* The latest VIEW-CHANGE from one replica, validated (view_change.c). */
struct pbft_vc_store {
    uint64_t view;  /* 0: none */
    uint8_t *bytes; /* the whole signed message */
    size_t len;
};

/* State transfer in progress (state_transfer.c). */
struct pbft_state_transfer {
    bool active;
    uint64_t target;   /* a checkpoint seq f+1 replicas vouch for */
    uint32_t vouchers; /* bit i: replica i vouched for a checkpoint >= target */
    uint32_t peer;     /* asked now */
    uint64_t sent_ms;  /* when the last request left */
    uint64_t chunks, bad_chunks;
    uint64_t answered_ms[PBFT_MAX_REPLICAS];   /* serving side: rate limit per peer ... */
    uint64_t answered_from[PBFT_MAX_REPLICAS]; /* ... for requests that made no progress */
};

/* A seq in one view (HORIZON, ASSIGNED records); all zeros: none. */
struct pbft_mark {
    uint64_t view, seq;
};

/* The mark's seq when it is for `view`, else 0 (it says nothing there). */
static inline uint64_t pbft_mark_in(const struct pbft_mark *m, uint64_t view)
{
    return m->view == view ? m->seq : 0;
}

struct pbft {
    struct pbft_config cfg;
    struct pbft_io io;
    uint32_t quorum_prepare, quorum_commit;

    uint64_t view;
    uint64_t last_executed;
    uint64_t low;             /* low watermark h: accept h < seq <= h + window */
    uint64_t next_seq;        /* primary: the last sequence number assigned */
    uint64_t last_propose_ms; /* primary: when it last sent a PRE-PREPARE (0: never) */
    /* The last HORIZON record persisted: up to its seq, our PRE-PREPAREs
     * (primary) or PREPAREs (backup) go out without a synced record. */
    struct pbft_mark horizon;
    /* Restored from a HORIZON record after a reboot: what we sent up to it
     * may be lost, so in that view we propose nothing and prepare nothing at
     * or below it, and sync every record above it (pbft_horizon_cover),
     * until the low watermark passes it (pbft_floor). */
    struct pbft_mark floor;
    /* Restored from an ASSIGNED record: number on after it. */
    struct pbft_mark assigned;
    /* Restored PRE-PREPAREs of an older view (ours or another primary's):
     * above next_seq they are void in ours, once we lead it
     * (pbft_try_propose). */
    bool restored_older;
    uint64_t dropped;
    uint64_t now_ms; /* of the event being handled */
    bool failed;     /* a persist failed: no more promises */

    struct pbft_slot *slots; /* ring of nslots = 2 * window entries */
    uint64_t nslots;

    struct pbft_request *queue; /* ring, positions are absolute counters */
    uint64_t qcap, qhead, qtail, qlive;

    struct pbft_txset_entry *set; /* open addressing, linear probing */
    uint64_t setcap, setlen;

    uint64_t queue_full_drops, queue_full_logged_ms; /* rate-limited warning */

    uint64_t last_status_ms;
    bool status_sent;
    uint64_t status_answered_ms[PBFT_MAX_REPLICAS]; /* rate limit per peer */
    uint32_t status_answered;                       /* bit i: status_answered_ms[i] is set */

    struct msg_buf out; /* encoder scratch, reused */

    /* Checkpoints (checkpoint.c). */
    uint64_t stable;              /* last stable checkpoint seq (0: genesis) */
    uint64_t checkpoints_stable;  /* certificates formed or installed */
    struct pbft_ckpt_slot *ckpts; /* ring of nckpts, indexed by (seq / K) */
    uint64_t nckpts;              /* window / K + 2 */
    struct pbft_ckpt_vote latest[PBFT_MAX_REPLICAS];
    uint64_t last_progress_ms;      /* of the last execution (or install) */
    struct pbft_state_transfer st;  /* state_transfer.c */
    struct msg_buf chunk;           /* state chunk scratch */
    struct ledger_cert stable_cert; /* the certificate of `stable` (count 0: none) */

    /* View changes (view_change.c, §4.4). */
    bool view_active;          /* false between our VIEW-CHANGE for `view` and its NEW-VIEW */
    bool vc_resend;            /* restored mid view change: send our VIEW-CHANGE again */
    uint32_t vc_attempts;      /* consecutive view changes without progress */
    uint64_t vc_quorum_ms;     /* when 2f+1 VIEW-CHANGEs for `view` were first held (0: not) */
    uint64_t work_deadline_ms; /* backups: pending work must progress by then (0: none) */
    uint64_t primary_heard_ms; /* the last message from the primary of `view` */
    uint64_t max_pp_seq;       /* highest seq with an accepted pre-prepare in `view` */
    uint64_t views_changed;
    struct pbft_vc_store vcs[PBFT_MAX_REPLICAS];
    uint64_t vc_rejected[PBFT_MAX_REPLICAS]; /* highest view of an invalid VIEW-CHANGE, by sender */
    uint64_t vc_checked_ms[2 * PBFT_MAX_REPLICAS]; /* last full validation, by sender */
    uint64_t suspect; /* we suspect the primary: the view we ask for (0: no) */
    uint64_t suspect_of[PBFT_MAX_REPLICAS]; /* ... and what each replica's last status asked for */
    uint8_t *nv_bytes;                      /* the NEW-VIEW of `view`, for replicas still behind */
    size_t nv_len;
    struct msg_buf vc_body, scratch;
};

/* pbft.c: log, watermarks, quorums, sending, execution. */
bool pbft_in_window(const struct pbft *p, uint64_t seq);
/* The slot for seq, reset if stale; NULL when seq is outside (low, low + window]. */
struct pbft_slot *pbft_slot_acquire(struct pbft *p, uint64_t seq);
/* The slot for seq if it holds seq (also below the window, while retained), else NULL. */
struct pbft_slot *pbft_slot_find(struct pbft *p, uint64_t seq);
/* Make s the (empty) entry of seq, dropping what it held (restore only). */
void pbft_slot_progress_reset(struct pbft *p, struct pbft_slot *s, uint64_t seq);
int pbft_slot_store_batch(struct pbft *p, struct pbft_slot *s, const struct msg_batch *b);
void pbft_drop(struct pbft *p, const char *why, const struct msg *m);
bool pbft_persist_rec(struct pbft *p, const struct pbft_persist *rec);
/* The floor in our view while it still matters (0: none): at or below the
 * low watermark no PRE-PREPARE is accepted again, and the checkpoint that
 * raised it is durable before any later HORIZON record. */
uint64_t pbft_floor(const struct pbft *p);
/* Before our first promise at seq in the current view (our PRE-PREPARE, or
 * our PRE-PREPARE + PREPARE records as a backup): may its records go out
 * unsynced (pbft_persist.deferrable)? Persists a new HORIZON record (synced
 * with them) when the last one does not cover seq. false: a persist failed. */
bool pbft_horizon_cover(struct pbft *p, uint64_t seq, bool *deferrable);
void pbft_send_pre_prepare(struct pbft *p, int to, const struct pbft_slot *s);
void pbft_send_phase(struct pbft *p, int to, enum msg_type type, const struct pbft_slot *s);
/* Re-evaluate prepared / committed-local for s and act (send, execute). */
void pbft_slot_progress(struct pbft *p, struct pbft_slot *s, uint64_t now_ms);
bool pbft_is_primary(const struct pbft *p);

uint64_t pbft_retransmit_interval(const struct pbft *p);

/* recv_request.c: the request queue, the de-dup set and batching. */
void pbft_txset_mark_slot_inflight(struct pbft *p, const struct pbft_slot *s);
void pbft_txset_remove(struct pbft *p, const tc_hash *h);
void pbft_try_propose(struct pbft *p, uint64_t now_ms);
void pbft_requeue_front(struct pbft *p, const uint8_t tx[LEDGER_TX_BYTES], const tc_hash *hash,
                        uint64_t now_ms);
void pbft_recv_request(struct pbft *p, const uint8_t tx[LEDGER_TX_BYTES], const tc_hash *hash,
                       uint64_t now_ms);

/* One handler per message (recv_*.c). */
void pbft_recv_pre_prepare(struct pbft *p, const struct msg *m, uint64_t now_ms);
void pbft_recv_prepare(struct pbft *p, const struct msg *m, uint64_t now_ms);
void pbft_recv_commit(struct pbft *p, const struct msg *m, uint64_t now_ms);
void pbft_recv_status_active(struct pbft *p, const struct msg *m);
void pbft_recv_checkpoint(struct pbft *p, const struct msg *m);
void pbft_recv_state_req(struct pbft *p, const struct msg *m);
void pbft_recv_state_resp(struct pbft *p, const struct msg *m, uint64_t now_ms);

/* pbft.c */
void pbft_execute_ready(struct pbft *p);

/* checkpoint.c */
/* We executed checkpoint seq (a multiple of K): sign, vote, broadcast. */
void pbft_checkpoint_own(struct pbft *p, uint64_t seq, const struct pbft_exec_result *res);
/* Our own vote for seq, if held, to `to` (retransmission). */
void pbft_checkpoint_resend(struct pbft *p, int to, uint64_t after_stable);
/* A certified checkpoint at or below last_executed becomes our stable one:
 * watermarks advance, the log and old votes are discarded. */
void pbft_checkpoint_stabilize(struct pbft *p, const struct ledger_cert *cert);
uint64_t pbft_checkpoint_votes(const struct pbft *p);

/* view_change.c */
void pbft_vc_start(struct pbft *p, uint64_t new_view, const char *why);
/* We suspect the primary (a timer, or a proof): say so; f+1 suspicions start the view change. */
void pbft_suspect(struct pbft *p, const char *why);
void pbft_suspect_check(struct pbft *p);
void pbft_vc_tick(struct pbft *p);
void pbft_recv_view_change(struct pbft *p, const struct msg *m);
void pbft_recv_new_view(struct pbft *p, const struct msg *m);
/* Help a replica that is behind in views (STATUS-ACTIVE from it). */
void pbft_vc_sync(struct pbft *p, uint32_t to, uint64_t its_view, bool its_active);
/* Entries of views before `view` above seq `above`, not executed: their
 * transactions go back to the front of the queue, in the order they were
 * proposed, and the entries lose their pre-prepare. */
void pbft_requeue_older(struct pbft *p, uint64_t view, uint64_t above);
/* The slot for seq in `view`: acquired, and reset for the new view when it
 * held an older view's entry (keeping executed and the prepared certificate). */
struct pbft_slot *pbft_slot_for_view(struct pbft *p, uint64_t seq, uint64_t view);
uint64_t pbft_vc_timeout(const struct pbft *p);
int pbft_verify(struct pbft *p, uint32_t replica, const uint8_t *bytes, size_t len,
                const tc_sig *sig);

/* state_transfer.c */
/* Start fetching toward a certified checkpoint learned in a view change. */
void pbft_state_target(struct pbft *p, uint64_t target, uint32_t vouchers);
/* Look at the checkpoint votes: start (or retarget) state transfer when f+1
 * replicas vouch for a checkpoint we cannot reach by the normal case. */
void pbft_state_check(struct pbft *p);
void pbft_state_tick(struct pbft *p);

#endif
