/* Client requests: queueing, de-duplication and batching by the primary
 * (Castro & Liskov §4.2 "the primary assigns a sequence number to the request";
 * batching as in §5.1 of the TOCS paper: the primary "packs" requests that
 * arrive while earlier ones are in progress, bounded by a pipeline window).
 *
 * Every replica queues the requests it receives (a backup keeps them for the
 * view change of a later issue). A request is queued once: its hash goes into
 * a set that also holds every tx of an accepted, not yet executed
 * PRE-PREPARE. Executed txs leave the set; the shell answers a request that
 * the ledger already holds from the ledger (§4.1: replicas "remember the last
 * reply" and re-send it) instead of handing it to the core. */
#include <stdlib.h>
#include <string.h>

#include "src/pbft_internal.h"

/* --- the de-dup set: open addressing, linear probing ---------------------- */

static uint64_t home_of(const struct pbft *p, const tc_hash *h)
{
    uint64_t k;
    memcpy(&k, h->b, sizeof(k));
    return k & (p->setcap - 1);
}

static struct pbft_txset_entry *set_find(struct pbft *p, const tc_hash *h)
{
    uint64_t mask = p->setcap - 1;
    for (uint64_t i = home_of(p, h);; i = (i + 1) & mask) {
        struct pbft_txset_entry *e = &p->set[i];
        if (!e->used)
            return NULL;
        if (memcmp(e->hash.b, h->b, TC_HASH_BYTES) == 0)
            return e;
    }
}

static void set_put(struct pbft *p, const tc_hash *h, uint64_t where)
{
    uint64_t mask = p->setcap - 1;
    uint64_t i = home_of(p, h);
    while (p->set[i].used)
        i = (i + 1) & mask;
    p->set[i].used = true;
    p->set[i].hash = *h;
    p->set[i].where = where;
    p->setlen++;
}

/* Keep the load factor at or below 1/2. Allocates only when the set grows. */
static int set_reserve(struct pbft *p)
{
    if ((p->setlen + 1) * 2 <= p->setcap)
        return TALLY_OK;
    struct pbft_txset_entry *old = p->set;
    uint64_t oldcap = p->setcap;
    struct pbft_txset_entry *grown = calloc(oldcap * 2, sizeof(*grown));
    if (grown == NULL)
        return TALLY_ENOMEM;
    p->set = grown;
    p->setcap = oldcap * 2;
    p->setlen = 0;
    for (uint64_t i = 0; i < oldcap; i++)
        if (old[i].used)
            set_put(p, &old[i].hash, old[i].where);
    free(old);
    return TALLY_OK;
}

void pbft_txset_remove(struct pbft *p, const tc_hash *h)
{
    struct pbft_txset_entry *e = set_find(p, h);
    if (e == NULL)
        return;
    uint64_t mask = p->setcap - 1;
    uint64_t i = (uint64_t)(e - p->set);
    p->set[i].used = false;
    p->setlen--;
    /* Backward-shift deletion: pull later entries of the run into the hole. */
    for (uint64_t j = (i + 1) & mask; p->set[j].used; j = (j + 1) & mask) {
        uint64_t k = home_of(p, &p->set[j].hash);
        bool movable = (i <= j) ? (k <= i || k > j) : (k <= i && k > j);
        if (movable) {
            p->set[i] = p->set[j];
            p->set[j].used = false;
            i = j;
        }
    }
}

static void txset_mark_inflight(struct pbft *p, const tc_hash *h)
{
    struct pbft_txset_entry *e = set_find(p, h);
    if (e != NULL) {
        if (e->where != PBFT_TX_INFLIGHT) {
            struct pbft_request *r = &p->queue[e->where & (p->qcap - 1)];
            r->live = false;
            p->qlive--;
            e->where = PBFT_TX_INFLIGHT;
        }
        return;
    }
    if (set_reserve(p) == TALLY_OK)
        set_put(p, h, PBFT_TX_INFLIGHT);
}

/* A slot's batch is in the log: its txs are in flight, unless the slot is at
 * or below what we executed. Such a slot (executed here, or a fresh one after
 * a state transfer or a restart without its records) is never executed here
 * again, so nothing would take its hashes out of the set. */
void pbft_txset_mark_slot_inflight(struct pbft *p, const struct pbft_slot *s)
{
    if (s->executed || s->seq <= p->last_executed)
        return;
    for (uint32_t i = 0; i < s->count; i++)
        txset_mark_inflight(p, &s->hashes[i]);
}

/* --- the queue ------------------------------------------------------------ */

static void queue_compact(struct pbft *p)
{
    while (p->qhead < p->qtail && !p->queue[p->qhead & (p->qcap - 1)].live)
        p->qhead++;
}

void pbft_recv_request(struct pbft *p, const uint8_t tx[LEDGER_TX_BYTES], const tc_hash *hash,
                       uint64_t now_ms)
{
    if (p->failed)
        return;
    if (set_find(p, hash) != NULL) {
        /* Benign (clients send every request to all replicas, and a request
         * often arrives after the pre-prepare that carries it): not a drop. */
        LOG_DEBUG("L2110", "r%u v%llu request already queued or in the log", p->cfg.id,
                  (unsigned long long)p->view);
        return;
    }
    queue_compact(p);
    if (p->qtail - p->qhead == p->qcap || set_reserve(p) != TALLY_OK) {
        p->dropped++;
        p->queue_full_drops++;
        /* Once a second at most: a flood must not turn into a flood of logs. */
        if (p->queue_full_logged_ms == 0 || now_ms - p->queue_full_logged_ms >= 1000) {
            LOG_WARN("L2111", "r%u v%llu request queue full (%llu): %llu requests dropped",
                     p->cfg.id, (unsigned long long)p->view, (unsigned long long)p->qcap,
                     (unsigned long long)p->queue_full_drops);
            p->queue_full_logged_ms = now_ms ? now_ms : 1;
            p->queue_full_drops = 0;
        }
        return;
    }
    struct pbft_request *r = &p->queue[p->qtail & (p->qcap - 1)];
    memcpy(r->tx, tx, LEDGER_TX_BYTES);
    r->hash = *hash;
    r->arrived_ms = now_ms;
    r->live = true;
    set_put(p, hash, p->qtail);
    p->qtail++;
    p->qlive++;
}

/* A transaction of a pre-prepare that a new view did not keep goes back to
 * the FRONT of the queue: it was ordered before what is still waiting (a
 * client's consecutive nonces stay in order). Call in descending order. */
void pbft_requeue_front(struct pbft *p, const uint8_t tx[LEDGER_TX_BYTES], const tc_hash *hash,
                        uint64_t now_ms)
{
    if (p->failed || set_find(p, hash) != NULL)
        return;
    queue_compact(p);
    if (p->qtail - p->qhead == p->qcap || set_reserve(p) != TALLY_OK) {
        p->dropped++;
        return;
    }
    p->qhead--;
    struct pbft_request *r = &p->queue[p->qhead & (p->qcap - 1)];
    memcpy(r->tx, tx, LEDGER_TX_BYTES);
    r->hash = *hash;
    r->arrived_ms = now_ms;
    r->live = true;
    set_put(p, hash, p->qhead);
    p->qlive++;
}

/* --- batching: the primary cuts PRE-PREPAREs ------------------------------- */

static int slot_reserve(struct pbft_slot *s, uint32_t count)
{
    if (count <= s->cap)
        return TALLY_OK;
    uint8_t *txs = realloc(s->txs, (size_t)count * LEDGER_TX_BYTES);
    if (txs == NULL)
        return TALLY_ENOMEM;
    s->txs = txs;
    tc_hash *hashes = realloc(s->hashes, (size_t)count * sizeof(tc_hash));
    if (hashes == NULL)
        return TALLY_ENOMEM;
    s->hashes = hashes;
    s->cap = count;
    return TALLY_OK;
}

/* §4.2: "the primary assigns a sequence number, n, to the request, multicasts
 * a pre-prepare message with m piggybacked to all the backups, and appends the
 * message to its log." We persist it before it leaves: with a synced write
 * when it needs a new HORIZON record, else with one that may be deferred
 * (pbft_persist.deferrable). */
static bool propose_one(struct pbft *p)
{
    uint64_t seq = p->next_seq + 1;
    /* An older view's entry restored here is void in ours: seq is above our
     * NEW-VIEW's max-s (next_seq starts at ASSIGNED). One of our view is
     * never reassigned. */
    struct pbft_slot *s = pbft_slot_for_view(p, seq, p->view);
    if (s == NULL || s->has_pre_prepare)
        return false; /* checked by the caller */
    uint32_t take = p->qlive < p->cfg.batch_max_txs ? (uint32_t)p->qlive : p->cfg.batch_max_txs;
    if (slot_reserve(s, take) != TALLY_OK)
        return false;
    uint32_t got = 0;
    for (uint64_t pos = p->qhead; got < take && pos < p->qtail; pos++) {
        struct pbft_request *r = &p->queue[pos & (p->qcap - 1)];
        if (!r->live)
            continue;
        memcpy(s->txs + (size_t)got * LEDGER_TX_BYTES, r->tx, LEDGER_TX_BYTES);
        s->hashes[got] = r->hash;
        got++;
        r->live = false;
        p->qlive--;
        struct pbft_txset_entry *e = set_find(p, &r->hash);
        if (e != NULL)
            e->where = PBFT_TX_INFLIGHT;
    }
    queue_compact(p);
    s->count = got;
    s->view = p->view;
    struct msg_batch b = {.count = got, .tx_bytes = s->txs};
    msg_batch_digest(&b, &s->digest);

    struct msg_signer signer = {.ctx = p->io.ctx, .sign = p->io.sign};
    msg_buf_reset(&p->out);
    if (msg_encode_pre_prepare(&p->out, p->cfg.id, p->view, seq, &b, &signer) != TALLY_OK)
        return false;
    memcpy(s->pp_sig.b, p->out.data + p->out.len - TC_SIG_BYTES, TC_SIG_BYTES);
    bool deferrable;
    if (!pbft_horizon_cover(p, seq, &deferrable))
        return false;
    struct pbft_persist rec = {.kind = PBFT_PERSIST_PREPREPARE,
                               .view = p->view,
                               .seq = seq,
                               .digest = s->digest,
                               .batch = &b,
                               .sig = s->pp_sig,
                               .deferrable = deferrable};
    if (!pbft_persist_rec(p, &rec))
        return false;
    s->has_pre_prepare = true;
    p->next_seq = seq;
    LOG_DEBUG("L2112", "r%u v%llu n%llu pre-prepare of %u txs", p->cfg.id,
              (unsigned long long)p->view, (unsigned long long)seq, got);
    /* The encoder scratch still holds the pre-prepare: send it now. */
    p->io.send(p->io.ctx, PBFT_BROADCAST, p->out.data, p->out.len);
    return true;
}

void pbft_try_propose(struct pbft *p, uint64_t now_ms)
{
    if (p->failed || !pbft_is_primary(p) || !p->view_active)
        return;
    /* Restarted after leading a NEW-VIEW: its re-proposals beyond our window
     * left no records to number on from. */
    if (p->next_seq < pbft_mark_in(&p->assigned, p->view))
        p->next_seq = pbft_mark_in(&p->assigned, p->view);
    if (p->restored_older) {
        /* Restored entries of older views above our NEW-VIEW's max-s (next_seq
         * is at or above it) are void here, as installing the NEW-VIEW made
         * them in memory: their transactions go back to the queue. */
        p->restored_older = false;
        pbft_requeue_older(p, p->view, p->next_seq);
    }
    for (;;) {
        queue_compact(p);
        if (p->qlive == 0)
            return;
        if (p->next_seq - p->last_executed >= p->cfg.max_inflight)
            return; /* pipeline full */
        if (!pbft_in_window(p, p->next_seq + 1))
            return; /* above the high watermark */
        if (p->next_seq + 1 <= pbft_floor(p))
            return; /* restarted: a proposal there may be lost; the view changes instead */
        uint64_t oldest = p->queue[p->qhead & (p->qcap - 1)].arrived_ms;
        bool full = p->qlive >= p->cfg.batch_max_txs;
        bool waited = now_ms >= oldest && now_ms - oldest >= p->cfg.batch_timeout_ms;
        /* Nothing in flight and no proposal for a batch timeout: the load
         * is light enough that waiting would only add latency, not fill a
         * batch. Quiet cuts are at least T apart, like timed ones (a cut
         * short of batch_max_txs takes every queued request, so the next one
         * arrived after it), so without full batches the block rate stays
         * under 1/T. (A new primary's first cut may come sooner: its
         * last_propose_ms is from when it last led, and requests it queued
         * as a backup keep their arrival times.) */
        bool quiet = p->next_seq == p->last_executed && now_ms >= p->last_propose_ms &&
                     now_ms - p->last_propose_ms >= p->cfg.batch_timeout_ms;
        if (!full && !waited && !quiet)
            return;
        if (!propose_one(p))
            return;
        p->last_propose_ms = now_ms;
        struct pbft_slot *s = pbft_slot_find(p, p->next_seq);
        if (s != NULL)
            pbft_slot_progress(p, s, now_ms); /* f = 0: prepared at once */
    }
}
