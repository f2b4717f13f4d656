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

struct pbft {
    struct pbft_config cfg;
    struct pbft_io io;
    uint32_t quorum_prepare, quorum_commit;

    uint64_t view;
    uint64_t last_executed;
    uint64_t low;      /* low watermark h: accept h < seq <= h + window */
    uint64_t next_seq; /* primary: the last sequence number assigned */
    uint64_t dropped;
    uint64_t now_ms; /* of the event being handled */
    bool failed;     /* a persist failed: no more promises */

    struct pbft_slot *slots; /* ring of nslots = 2 * window entries */
    uint64_t nslots;

    struct pbft_request *queue; /* ring, positions are absolute counters */
    uint64_t qcap, qhead, qtail, qlive;

    struct pbft_txset_entry *set; /* open addressing, linear probing */
    uint64_t setcap, setlen;

    uint64_t last_status_ms;
    bool status_sent;
    uint64_t status_answered_ms[PBFT_MAX_REPLICAS]; /* rate limit per peer */
    uint32_t status_answered;                       /* bit i: status_answered_ms[i] is set */

    struct msg_buf out; /* encoder scratch, reused */
};

/* pbft.c: log, watermarks, quorums, sending, execution. */
bool pbft_in_window(const struct pbft *p, uint64_t seq);
/* The slot for seq, reset if stale; NULL when seq is outside (low, low + window]. */
struct pbft_slot *pbft_slot_acquire(struct pbft *p, uint64_t seq);
/* The slot for seq if it holds seq (also below the window, while retained), else NULL. */
struct pbft_slot *pbft_slot_find(struct pbft *p, uint64_t seq);
int pbft_slot_store_batch(struct pbft *p, struct pbft_slot *s, const struct msg_batch *b);
void pbft_drop(struct pbft *p, const char *why, const struct msg *m);
bool pbft_persist_rec(struct pbft *p, const struct pbft_persist *rec);
void pbft_send_pre_prepare(struct pbft *p, int to, const struct pbft_slot *s);
void pbft_send_phase(struct pbft *p, int to, enum msg_type type, const struct pbft_slot *s);
/* Re-evaluate prepared / committed-local for s and act (send, execute). */
void pbft_slot_progress(struct pbft *p, struct pbft_slot *s, uint64_t now_ms);
bool pbft_is_primary(const struct pbft *p);

uint64_t pbft_retransmit_interval(const struct pbft *p);

/* recv_request.c: the request queue, the de-dup set and batching. */
void pbft_txset_mark_inflight(struct pbft *p, const tc_hash *h);
void pbft_txset_remove(struct pbft *p, const tc_hash *h);
void pbft_try_propose(struct pbft *p, uint64_t now_ms);
void pbft_recv_request(struct pbft *p, const uint8_t tx[LEDGER_TX_BYTES], const tc_hash *hash,
                       uint64_t now_ms);

/* One handler per message (recv_*.c). */
void pbft_recv_pre_prepare(struct pbft *p, const struct msg *m, uint64_t now_ms);
void pbft_recv_prepare(struct pbft *p, const struct msg *m, uint64_t now_ms);
void pbft_recv_commit(struct pbft *p, const struct msg *m, uint64_t now_ms);
void pbft_recv_status_active(struct pbft *p, const struct msg *m);

#endif
