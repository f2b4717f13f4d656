/* Verifier pool: see verifier.h. */
#include "src/verifier.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger/cert.h"
#include "src/log.h"
#include "src/mono.h"
#include "src/statexfer.h"

/* Verdict cache slot (two per set), keyed by the first 16 bytes of the tx
 * hash (a forged 128-bit collision is out of reach). */
#define VERIFIER_KEY_BYTES 16
enum verifier_slot_state {
    SLOT_EMPTY,
    SLOT_VALID,
    SLOT_INVALID,
    /* A thread is verifying this tx now. Another thread that meets it leaves
     * it when it only warms the cache (a PRE-PREPARE's or a state chunk's
     * transactions) and waits for the verdict when it needs one. Without
     * this, a backup's client thread (on a REQUEST) and its peer thread (on
     * the PRE-PREPARE carrying the same transactions) that reach them at
     * once go on in lockstep, both verifying each one: 3-5 % extra verifies
     * per backup at full load. */
    SLOT_PENDING,
};
struct verifier_slot {
    uint8_t key[VERIFIER_KEY_BYTES];
    uint8_t state;
    uint8_t victim; /* in a set's first slot: the way the next miss replaces */
};
/* Two ways per set. Direct-mapped, a tx's verdict was overwritten before its
 * last use (the PRE-PREPARE's and the execution's lookups) often enough
 * that replicas verified 1-2.5 % of the transactions twice at full load; a
 * second way makes that need two colliding newcomers within a tx's life. */
#define VERIFIER_WAYS 2
_Static_assert(VERIFIER_WAYS == 2, "set_victim chooses between exactly two ways");
/* How long a thread that needs a verdict waits for another thread's before
 * verifying the tx itself (a verify takes ~40 us). */
#define VERIFIER_PENDING_WAIT_MS 2

struct verifier {
    struct verifier_opts o;
    size_t max_body;

    pthread_mutex_t cache_lock;
    pthread_cond_t cache_settled; /* a PENDING slot got its verdict */
    unsigned cache_waiters;       /* threads waiting on cache_settled */
    struct verifier_slot *cache;  /* VERIFIER_CACHE_SLOTS */

    atomic_uint_fast64_t bad_signature, unknown_sender, malformed, oversized, queue_full;
    atomic_uint_fast64_t tx_verified, tx_cache_hits, tx_bad_signature;
    atomic_uint_fast64_t settled_unverified;
    /* Per peer connection (by pipe mod VERIFIER_PROVEN_SLOTS): pipe << 8 |
     * sender of the last message whose signature verified on it, + 1 (0:
     * none). Only a sender proven on its connection skips a signature. */
    atomic_uint_fast64_t proven[VERIFIER_PROVEN_SLOTS];
};

void verifier_event_free(struct verifier_event *ev)
{
    if (ev == NULL)
        return;
    if (ev->msg != NULL)
        nng_msg_free(ev->msg);
    free(ev->hashes);
    free(ev->sig_ok);
    free(ev);
}

static struct verifier_slot *cache_set(struct verifier *v, const tc_hash *h)
{
    uint64_t x;
    memcpy(&x, h->b + VERIFIER_KEY_BYTES - sizeof(x), sizeof(x));
    return &v->cache[(size_t)(x & (VERIFIER_CACHE_SLOTS / VERIFIER_WAYS - 1)) * VERIFIER_WAYS];
}

/* The way holding h's verdict (or its verification), or NULL. */
static struct verifier_slot *set_find(struct verifier_slot *set, const tc_hash *h)
{
    for (int w = 0; w < VERIFIER_WAYS; w++)
        if (set[w].state != SLOT_EMPTY && memcmp(set[w].key, h->b, VERIFIER_KEY_BYTES) == 0)
            return &set[w];
    return NULL;
}

/* The way a miss takes: an empty one, else the older of the two unless a
 * thread is verifying in it and the other is settled. */
static struct verifier_slot *set_victim(struct verifier_slot *set)
{
    for (int w = 0; w < VERIFIER_WAYS; w++)
        if (set[w].state == SLOT_EMPTY) {
            set[0].victim = (uint8_t)(1 - w);
            return &set[w];
        }
    int w = set[0].victim;
    if (set[w].state == SLOT_PENDING && set[1 - w].state != SLOT_PENDING)
        w = 1 - w;
    set[0].victim = (uint8_t)(1 - w);
    return &set[w];
}

/* The verdict for one tx: 1 valid, 0 not, or -1 when need is false and
 * another thread is verifying it now (its verdict will be in the cache). */
static int tx_verdict(struct verifier *v, const uint8_t *tx_bytes, const tc_hash *h, bool need)
{
    struct verifier_slot *set = cache_set(v, h), *s;
    struct timespec deadline;
    bool waiting = false;
    pthread_mutex_lock(&v->cache_lock);
    for (;;) {
        if ((s = set_find(set, h)) == NULL)
            break;
        if (s->state != SLOT_PENDING) {
            int ok = s->state == SLOT_VALID;
            pthread_mutex_unlock(&v->cache_lock);
            atomic_fetch_add(&v->tx_cache_hits, 1);
            return ok;
        }
        if (!need) {
            pthread_mutex_unlock(&v->cache_lock);
            return -1;
        }
        if (!waiting) {
            deadline = mono_deadline(VERIFIER_PENDING_WAIT_MS);
            waiting = true;
        }
        v->cache_waiters++;
        int rc = pthread_cond_timedwait(&v->cache_settled, &v->cache_lock, &deadline);
        v->cache_waiters--;
        if (rc == ETIMEDOUT && s->state == SLOT_PENDING &&
            memcmp(s->key, h->b, VERIFIER_KEY_BYTES) == 0)
            break; /* the other thread is slow: verify it here too */
    }
    if (s == NULL)
        s = set_victim(set);
    memcpy(s->key, h->b, VERIFIER_KEY_BYTES);
    s->state = SLOT_PENDING;
    pthread_mutex_unlock(&v->cache_lock);

    struct ledger_tx tx;
    int ok = ledger_tx_decode(tx_bytes, LEDGER_TX_BYTES, &tx) == 0 && ledger_tx_verify(&tx) == 0;
    atomic_fetch_add(&v->tx_verified, 1);
    if (!ok)
        atomic_fetch_add(&v->tx_bad_signature, 1);

    pthread_mutex_lock(&v->cache_lock);
    if (memcmp(s->key, h->b, VERIFIER_KEY_BYTES) == 0) /* not taken by another tx meanwhile */
        s->state = ok ? SLOT_VALID : SLOT_INVALID;
    if (v->cache_waiters > 0)
        pthread_cond_broadcast(&v->cache_settled);
    pthread_mutex_unlock(&v->cache_lock);
    return ok;
}

int verifier_tx_sig_ok(struct verifier *v, const uint8_t *tx_bytes, const tc_hash *h)
{
    return tx_verdict(v, tx_bytes, h, true);
}

/* Check every transaction of a batch: fills hashes and sig_ok when given,
 * or only warms the cache when both are NULL. */
static void verify_batch(struct verifier *v, const struct msg_batch *b, tc_hash *hashes,
                         uint8_t *sig_ok)
{
    bool need = hashes != NULL || sig_ok != NULL;
    for (uint32_t i = 0; i < b->count; i++) {
        const uint8_t *tx = b->tx_bytes + (size_t)i * LEDGER_TX_BYTES;
        tc_hash h;
        ledger_tx_hash_bytes(tx, &h);
        int ok = tx_verdict(v, tx, &h, need);
        if (hashes != NULL)
            hashes[i] = h;
        if (sig_ok != NULL)
            sig_ok[i] = (uint8_t)ok;
    }
}

/* Warm the verdict cache with the transactions of a state chunk's blocks, so
 * that the install (in a step) finds them verified. Bad chunks are left to
 * the install to reject (with a reason). */
static void verify_chunk_txs(struct verifier *v, const struct msg *m)
{
    struct stx_chunk c;
    struct tally_err err = {0};
    if (stx_decode(m->u.state_resp.chunk, m->u.state_resp.len, &c, &err) != 0)
        return;
    for (uint32_t i = 0; i < c.nblocks; i++) {
        struct ledger_block b;
        if (stx_block(&c, i, &b, &err) != 0 || b.item_bytes != LEDGER_TX_BYTES)
            return;
        struct msg_batch batch = {.count = b.h.tx_count, .tx_bytes = b.items};
        verify_batch(v, &batch, NULL, NULL);
    }
}

static void deliver(struct verifier *v, struct verifier_event *ev)
{
    if (v->o.deliver(v->o.ctx, ev) != 0) {
        atomic_fetch_add(&v->queue_full, 1);
        verifier_event_free(ev);
    }
}

enum verifier_verdict verifier_process(struct verifier *v, enum transport_origin origin,
                                       uint32_t pipe, nng_msg *msg)
{
    enum verifier_verdict verdict = VERIFIER_CLOSE;
    struct verifier_event *ev = calloc(1, sizeof(*ev));
    if (ev == NULL) {
        nng_msg_free(msg);
        atomic_fetch_add(&v->queue_full, 1);
        return VERIFIER_KEEP;
    }
    ev->msg = msg;
    ev->pipe = pipe;
    ev->read_here = origin == TRANSPORT_FROM_CLIENT_INLINE;
    const uint8_t *bytes = nng_msg_body(msg);
    size_t len = nng_msg_len(msg);
    struct tally_err err = {0};
    int rc = msg_decode(bytes, len, v->max_body, &ev->m, &err);
    if (rc != 0) {
        if (rc == TALLY_ETOOBIG)
            atomic_fetch_add(&v->oversized, 1);
        else
            atomic_fetch_add(&v->malformed, 1);
        LOG_DEBUG("L0401", "dropped a %s message: %s",
                  origin == TRANSPORT_FROM_PEER ? "peer" : "client", tally_err_text(&err));
        goto drop;
    }
    if (origin == TRANSPORT_FROM_PEER) {
        switch (ev->m.type) {
        case MSG_PRE_PREPARE:
        case MSG_PREPARE:
        case MSG_COMMIT:
        case MSG_STATUS_ACTIVE:
        case MSG_CHECKPOINT:
        case MSG_STATE_REQ:
        case MSG_STATE_RESP:
        case MSG_VIEW_CHANGE: /* their inner proofs are checked by the core */
        case MSG_NEW_VIEW:
            break;
        default: /* client types, replies: not from a replica's peer socket */
            atomic_fetch_add(&v->malformed, 1);
            goto drop;
        }
        /* Our own id is fine: peers retransmit the primary's signed PRE-PREPARE
         * to whoever lacks it, the primary included; the core ignores repeats. */
        if (ev->m.sender >= v->o.n) {
            atomic_fetch_add(&v->unknown_sender, 1);
            LOG_DEBUG("L0402", "dropped a message from unknown sender %u", ev->m.sender);
            goto drop;
        }
        uint64_t proof = ((uint64_t)pipe << 8 | ev->m.sender) + 1;
        atomic_uint_fast64_t *proven = &v->proven[pipe % VERIFIER_PROVEN_SLOTS];
        if ((ev->m.type == MSG_PREPARE || ev->m.type == MSG_COMMIT) && v->o.settled != NULL &&
            atomic_load(proven) == proof && v->o.settled(v->o.ctx, &ev->m)) {
            atomic_fetch_add(&v->settled_unverified, 1);
            verdict = VERIFIER_KEEP;
            goto drop;
        }
        if (msg_verify(&ev->m, &v->o.replica_keys[ev->m.sender]) != 0) {
            atomic_fetch_add(&v->bad_signature, 1);
            LOG_DEBUG("L0403", "dropped a message with a bad signature from replica %u",
                      ev->m.sender);
            goto drop;
        }
        atomic_store(proven, proof);
        if (ev->m.type == MSG_PRE_PREPARE)
            verify_batch(v, &ev->m.u.pre_prepare.batch, NULL, NULL);
        if (ev->m.type == MSG_CHECKPOINT) {
            struct ledger_ckpt ck = {.height = ev->m.u.checkpoint.seq,
                                     .block_hash = ev->m.u.checkpoint.block_hash,
                                     .state_digest = ev->m.u.checkpoint.state_digest};
            if (ledger_ckpt_verify(&v->o.replica_keys[ev->m.sender], &v->o.chain_id, &ck,
                                   &ev->m.u.checkpoint.statement_sig) != 0) {
                atomic_fetch_add(&v->bad_signature, 1);
                LOG_DEBUG("L0404",
                          "dropped a checkpoint with a bad statement signature from "
                          "replica %u",
                          ev->m.sender);
                goto drop;
            }
        }
        if (ev->m.type == MSG_STATE_RESP)
            verify_chunk_txs(v, &ev->m);
        ev->kind = VERIFIER_EV_PEER;
        deliver(v, ev);
        return VERIFIER_KEEP;
    }
    switch (ev->m.type) {
    case MSG_REQUEST: {
        uint32_t n = ev->m.u.request.count;
        ev->hashes = malloc((size_t)n * sizeof(*ev->hashes));
        ev->sig_ok = malloc(n);
        if (ev->hashes == NULL || ev->sig_ok == NULL) {
            atomic_fetch_add(&v->queue_full, 1);
            verdict = VERIFIER_KEEP;
            goto drop;
        }
        for (uint32_t i = 0; i < n; i++) {
            struct ledger_tx tx;
            if (ledger_tx_decode(ev->m.u.request.tx_bytes + (size_t)i * LEDGER_TX_BYTES,
                                 LEDGER_TX_BYTES, &tx) != 0) {
                atomic_fetch_add(&v->malformed, 1);
                goto drop;
            }
        }
        verify_batch(v, &ev->m.u.request, ev->hashes, ev->sig_ok);
        ev->kind = VERIFIER_EV_REQUEST;
        break;
    }
    case MSG_QUERY:
        ev->kind = VERIFIER_EV_QUERY;
        break;
    case MSG_STATUS_REQ:
        ev->kind = VERIFIER_EV_STATUS;
        break;
    default:
        atomic_fetch_add(&v->malformed, 1);
        goto drop;
    }
    deliver(v, ev);
    return VERIFIER_KEEP;
drop:
    verifier_event_free(ev);
    return verdict;
}

int verifier_start(const struct verifier_opts *o, struct verifier **out, struct tally_err *err)
{
    if (o->n == 0 || o->n > TRANSPORT_MAX_PEERS || o->deliver == NULL ||
        o->max_message_bytes < MSG_HEADER_BYTES + TC_SIG_BYTES)
        return tally_errf(err, TALLY_EINVAL, "verifier: bad options");
    struct verifier *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return tally_errf(err, TALLY_ENOMEM, "verifier: out of memory");
    v->o = *o;
    v->max_body = o->max_message_bytes - MSG_HEADER_BYTES - TC_SIG_BYTES;
    pthread_mutex_init(&v->cache_lock, NULL);
    mono_cond_init(&v->cache_settled);
    v->cache = calloc(VERIFIER_CACHE_SLOTS, sizeof(*v->cache));
    if (v->cache == NULL) {
        verifier_stop(v);
        return tally_errf(err, TALLY_ENOMEM, "verifier: out of memory");
    }
    *out = v;
    return TALLY_OK;
}

void verifier_stop(struct verifier *v)
{
    if (v == NULL)
        return;
    pthread_mutex_destroy(&v->cache_lock);
    pthread_cond_destroy(&v->cache_settled);
    free(v->cache);
    free(v);
}

void verifier_get_stats(const struct verifier *v, struct verifier_stats *out)
{
    struct verifier *m = (struct verifier *)v;
    out->bad_signature = atomic_load(&m->bad_signature);
    out->unknown_sender = atomic_load(&m->unknown_sender);
    out->malformed = atomic_load(&m->malformed);
    out->oversized = atomic_load(&m->oversized);
    out->queue_full = atomic_load(&m->queue_full);
    out->tx_verified = atomic_load(&m->tx_verified);
    out->tx_cache_hits = atomic_load(&m->tx_cache_hits);
    out->tx_bad_signature = atomic_load(&m->tx_bad_signature);
    out->settled_unverified = atomic_load(&m->settled_unverified);
}

void verifier_count_queue_full(struct verifier *v)
{
    atomic_fetch_add(&v->queue_full, 1);
}
