/* The deterministic cluster simulator (see sim.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger/block.h"
#include "ledger/cert.h"
#include "src/msg.h"
#include "src/pbft.h"
#include "tests/sim/sim.h"

#define SIM_MAX_CLIENTS 16
#define SIM_MAX_ACCOUNTS 64
#define SIM_MAX_BODY (1u << 20)
#define SIM_TICK_MS 5
#define SIM_CLIENT_TIMEOUT_MS 400
#define SIM_GENESIS_BALANCE 1000
#define SIM_FORCE_CRASH_MS 2000
#define SIM_MAX_CKPT_CRASHES 64
#define SIM_MAX_LATE_RECEIPTS 256 /* power_loss: receipts checked once their height is back */

/* --- PRNG: splitmix64 ------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* --- the model ledger: a reference state machine --------------------------- */

struct sim_account {
    tc_pubkey pk;
    uint64_t balance, nonce;
};

struct sim_txrec {
    tc_hash hash;
    uint64_t height;
    uint8_t result;
};

struct sim_block { /* what was executed at one height: the batch */
    uint32_t count;
    uint8_t *txs;
};

struct sim_ledger {
    struct sim_account acct[SIM_MAX_ACCOUNTS];
    uint32_t nacct;
    struct sim_txrec *txs;
    size_t ntx, captx;
    tc_hash *heads;           /* heads[h]: chained hash after height h; heads[0] = zero */
    tc_hash *digests;         /* digests[h]: batch digest executed at h */
    struct sim_block *blocks; /* blocks[h] (state transfer serves them) */
    uint64_t height;
    size_t caph, capd, capb;
};

/* --- the simulated cluster ------------------------------------------------- */

enum sim_ev_kind { EV_DELIVER, EV_TICK, EV_CLIENT, EV_CRASH, EV_RESTART };

struct sim_event {
    uint64_t t, order;
    enum sim_ev_kind kind;
    uint32_t to;    /* node: replicas 0..n-1, clients n.. */
    uint64_t token; /* EV_CLIENT: which wait it belongs to */
    uint8_t *bytes;
    size_t len;
};

/* One durable protocol record, stored the way tallyd's io_persist stores it
 * (src/replica.c): under the key "pp" / "pr" / "cm" || seq, the latest write
 * of a key replacing the one before (a PRE-PREPARE of a new view overwrites
 * the old view's at that seq), with only the fields tallyd writes. */
struct sim_prec {
    enum pbft_persist_kind kind; /* PREPREPARE, PREPARE or COMMIT */
    uint64_t seq, view;
    tc_hash digest;
    tc_sig sig;             /* PREPREPARE: the primary's envelope signature */
    struct msg_batch batch; /* PREPREPARE: its own copy of the batch (bytes) */
    uint8_t *bytes;
    uint32_t prepare_from; /* COMMIT: the prepared certificate (0: none written) */
    tc_sig sigs[PBFT_MAX_REPLICAS];
    bool unsynced; /* a deferrable PRE-PREPARE or PREPARE no synced write has covered yet */
};

/* Signature verdicts, direct-mapped by a hash of (key, bytes, signature):
 * every broadcast is verified by n-1 receivers and retransmitted, so the same
 * check repeats; Ed25519 dominates the simulator's time otherwise. The
 * verdict is a pure function of the key, so caching changes no outcome. */
#define SIM_VCACHE_SLOTS (1u << 16)
struct sim_vcache {
    uint8_t key[16];
    uint8_t state; /* 0 empty, 1 valid, 2 invalid */
};

struct sim;

struct sim_replica {
    struct sim *sim;
    uint32_t id;
    struct pbft *core;
    bool down;      /* crashed: neither sends nor receives */
    bool byzantine; /* excluded from the correct set */
    tc_keypair kp;
    struct sim_ledger ledger;
    /* Durable protocol state, keyed like tallyd's (src/replica.c io_persist):
     * the records by (kind, seq), "view" + "vchg", and "lo" / "hi" (the
     * highest DISCARD_LOG seq, the highest record seq written). */
    struct sim_prec *recs;
    size_t nrecs, caprecs;
    bool has_view, view_changing;
    uint64_t view, persisted_lo, persisted_hi;
    /* power_loss: the records that unsynced ones replaced (a power loss
     * brings them back) and "hi" as of the last synced write. */
    struct sim_prec *undo;
    size_t nundo, capundo;
    uint64_t synced_hi;
    bool has_horizon; /* the HORIZON record (durable: written with synced steps only) */
    uint64_t horizon_view, horizon_seq;
    /* Boots: a power loss is a new one. tallyd restores the HORIZON record
     * only in another boot than the one that wrote it (a crash of the
     * process alone loses no write). */
    uint64_t boot, horizon_boot;
    bool has_assigned; /* the ASSIGNED record (durable: written in synced steps) */
    uint64_t assigned_view, assigned_seq;
    struct ledger_cert *certs; /* stable certificates, ascending heights (durable) */
    size_t ncerts, capcerts;
    uint8_t replay[512]; /* noisy replica: an old message to send again */
    size_t replay_len;
    /* Group restarts (sim_scenario.group_size): this replica crashes at the
     * first crash point (sim_crash_point) from arm_ms, stays down down_ms. */
    bool armed;
    uint64_t arm_ms, down_ms, crash_ckpt;
    bool dying; /* crashed in the middle of this step: nothing more leaves or lands */
    uint64_t restarts;
    /* power_loss: the ledger height the last synced write covered, and
     * whether the current event persisted anything (tallyd: a synced write at
     * the end of the step). */
    uint64_t synced_height;
    bool synced_in_step;
};

struct sim_reply_seen {
    bool have;
    uint64_t height;
    tc_hash block;
    uint8_t result;
};

struct sim_client {
    uint32_t idx;
    tc_keypair kp;
    uint64_t nonce; /* last nonce used */
    uint64_t view;  /* the highest view seen in a reply: its primary gets requests first */
    uint32_t submitted, receipted;
    bool waiting, done;
    uint64_t token;
    uint8_t tx[LEDGER_TX_BYTES];
    tc_hash hash;
    struct sim_reply_seen seen[PBFT_MAX_REPLICAS];
};

struct sim_ref {
    bool set, has_state;
    tc_hash digest, head;
    tc_hash state; /* the state digest after it (has_state: a correct replica executed it) */
};

/* Sends held for a replica that is down (see net_send). */
#define SIM_HELD_MAX 1024 /* SPSTREAM_QUEUE_MSGS */
struct sim_link {
    struct {
        uint8_t *bytes;
        size_t len;
    } * q;
    size_t n, cap;
};

struct sim {
    const struct sim_scenario *sc;
    uint64_t rng;
    uint32_t n, f;
    uint64_t now, order;
    struct sim_event *heap;
    size_t nheap, capheap;
    struct sim_replica rep[PBFT_MAX_REPLICAS];
    struct sim_client cl[SIM_MAX_CLIENTS];
    struct pbft_config cfg;
    struct sim_ref *ref;
    size_t capref;
    struct msg_buf buf;
    uint64_t max_receipt_height;
    uint64_t equiv_salt;
    bool oom;
    struct sim_result *res;
    tc_hash chain_id;
    struct sim_vcache *vcache;  /* SIM_VCACHE_SLOTS verdicts */
    uint32_t round, round_left; /* group restarts: rounds begun, members not yet back */
    struct {
        uint32_t replica;
        uint64_t seq;
    } ckpt_crash[SIM_MAX_CKPT_CRASHES]; /* crashes right after executing checkpoint seq */
    uint32_t nckpt_crash;
    uint64_t done_ms; /* when the load was first done (settle_ms) */
    struct {
        uint32_t client;
        tc_hash tx;
        struct sim_reply_seen r;
    } late[SIM_MAX_LATE_RECEIPTS]; /* power_loss: see client_receipt */
    uint32_t nlate;
    struct sim_link held[PBFT_MAX_REPLICAS][PBFT_MAX_REPLICAS]; /* [from][to] */
    /* Every PRE-PREPARE, PREPARE and COMMIT a correct replica sent, by
     * (sender, type, view, seq): no correct replica may ever send two
     * digests for one (type, view, seq), also not after a restart or a power
     * loss (sent_check). Open addressing, power of 2. */
    struct sim_sent *sent;
    size_t nsent, capsent;
};

struct sim_sent {
    bool used;
    uint8_t type; /* MSG_PRE_PREPARE (also a NEW-VIEW's re-proposals), MSG_PREPARE, MSG_COMMIT */
    uint32_t from;
    uint64_t view, seq;
    tc_hash digest;
};

static uint64_t rnd(struct sim *s, uint64_t below)
{
    return below ? splitmix64(&s->rng) % below : 0;
}

static void violation(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(struct sim *s, const char *fmt, ...)
{
    if (s->res->violation)
        return;
    s->res->violation = true;
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(s->res->what, sizeof(s->res->what), "t=%llums: %s", (unsigned long long)s->now, what);
}

static bool grow(void **p, size_t *cap, size_t need, size_t item)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * item);
    if (q == NULL)
        return false;
    memset((uint8_t *)q + *cap * item, 0, (c - *cap) * item);
    *p = q;
    *cap = c;
    return true;
}

/* --- events ------------------------------------------------------------------ */

static bool ev_less(const struct sim_event *a, const struct sim_event *b)
{
    return a->t < b->t || (a->t == b->t && a->order < b->order);
}

static void ev_push(struct sim *s, struct sim_event ev)
{
    if (!grow((void **)&s->heap, &s->capheap, s->nheap + 1, sizeof(ev))) {
        s->oom = true;
        free(ev.bytes);
        return;
    }
    ev.order = s->order++;
    size_t i = s->nheap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!ev_less(&ev, &s->heap[up]))
            break;
        s->heap[i] = s->heap[up];
        i = up;
    }
    s->heap[i] = ev;
}

static struct sim_event ev_pop(struct sim *s)
{
    struct sim_event top = s->heap[0];
    struct sim_event last = s->heap[--s->nheap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->nheap)
            break;
        if (c + 1 < s->nheap && ev_less(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!ev_less(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->nheap > 0)
        s->heap[i] = last;
    return top;
}

static bool node_down(struct sim *s, uint32_t node)
{
    return node < s->n && s->rep[node].down;
}

/* The network: loss, per-message delay (hence reordering) and duplication. */
static bool partitioned(const struct sim *s, uint32_t node)
{
    return s->sc->partition_replica >= 0 && node == (uint32_t)s->sc->partition_replica &&
           s->now >= s->sc->partition_from_ms && s->now < s->sc->partition_to_ms;
}

/* tallyd's link toward a peer keeps what it sends while that peer is
 * down, up to SPSTREAM_QUEUE_MSGS (then new sends are dropped), and
 * writes them in order once the peer is back: a restarted replica first
 * receives what it missed. The model holds them per link likewise; a
 * sender's held messages die with it. */
static void link_hold(struct sim *s, uint32_t from, uint32_t to, const uint8_t *bytes, size_t len)
{
    struct sim_link *k = &s->held[from][to];
    if (k->n == SIM_HELD_MAX)
        return;
    if (!grow((void **)&k->q, &k->cap, k->n + 1, sizeof(k->q[0])) ||
        (k->q[k->n].bytes = malloc(len)) == NULL) {
        s->oom = true;
        return;
    }
    memcpy(k->q[k->n].bytes, bytes, len);
    k->q[k->n++].len = len;
}

static void link_clear(struct sim_link *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->q[i].bytes);
    k->n = 0;
}

/* Replica id crashed: what it held for others is gone. */
static void links_crashed(struct sim *s, uint32_t id)
{
    for (uint32_t to = 0; to < s->n; to++)
        link_clear(&s->held[id][to]);
}

/* Replica id is back: every peer's held sends to it, in order per peer. */
static void links_release(struct sim *s, uint32_t id)
{
    for (uint32_t from = 0; from < s->n; from++) {
        struct sim_link *k = &s->held[from][id];
        for (size_t i = 0; i < k->n; i++) {
            struct sim_event ev = {.t = s->now + s->sc->delay_min_ms + 1 + i / 64,
                                   .kind = EV_DELIVER,
                                   .to = id,
                                   .bytes = k->q[i].bytes,
                                   .len = k->q[i].len};
            k->q[i].bytes = NULL;
            ev_push(s, ev);
            s->res->held_released++;
        }
        k->n = 0;
    }
}

static void net_send(struct sim *s, uint32_t from, uint32_t to, const uint8_t *bytes, size_t len)
{
    if (node_down(s, from) || partitioned(s, from) || partitioned(s, to))
        return;
    if (node_down(s, to)) {
        if (from < s->n && to < s->n)
            link_hold(s, from, to, bytes, len);
        return;
    }
    if (rnd(s, 1000) < s->sc->loss_permille)
        return;
    int copies = rnd(s, 1000) < s->sc->dup_permille ? 2 : 1;
    for (int c = 0; c < copies; c++) {
        uint64_t span = s->sc->delay_max_ms - s->sc->delay_min_ms + 1;
        struct sim_event ev = {.t = s->now + s->sc->delay_min_ms + rnd(s, span),
                               .kind = EV_DELIVER,
                               .to = to,
                               .len = len};
        ev.bytes = malloc(len);
        if (ev.bytes == NULL) {
            s->oom = true;
            return;
        }
        memcpy(ev.bytes, bytes, len);
        ev_push(s, ev);
    }
}

/* --- the model ledger -------------------------------------------------------- */

static struct sim_account *account(struct sim_ledger *l, const tc_pubkey *pk, bool create)
{
    for (uint32_t i = 0; i < l->nacct; i++)
        if (memcmp(l->acct[i].pk.b, pk->b, TC_PUBKEY_BYTES) == 0)
            return &l->acct[i];
    if (!create || l->nacct == SIM_MAX_ACCOUNTS)
        return NULL;
    struct sim_account *a = &l->acct[l->nacct++];
    memset(a, 0, sizeof(*a));
    a->pk = *pk;
    return a;
}

static const struct sim_txrec *ledger_find(const struct sim_ledger *l, const tc_hash *h)
{
    for (size_t i = 0; i < l->ntx; i++)
        if (memcmp(l->txs[i].hash.b, h->b, TC_HASH_BYTES) == 0)
            return &l->txs[i];
    return NULL;
}

static const struct sim_txrec *ledger_find_at(const struct sim_ledger *l, const tc_hash *h,
                                              uint64_t height)
{
    for (size_t i = 0; i < l->ntx; i++)
        if (l->txs[i].height == height && memcmp(l->txs[i].hash.b, h->b, TC_HASH_BYTES) == 0)
            return &l->txs[i];
    return NULL;
}

static bool sim_verify(struct sim *s, const tc_pubkey *pk, const uint8_t *bytes, size_t len,
                       const tc_sig *sig)
{
    uint8_t pre[TC_PUBKEY_BYTES + TC_SIG_BYTES];
    memcpy(pre, pk->b, TC_PUBKEY_BYTES);
    memcpy(pre + TC_PUBKEY_BYTES, sig->b, TC_SIG_BYTES);
    tc_hash h;
    tc_sha256_2(pre, sizeof(pre), bytes, len, &h);
    uint32_t i = ((uint32_t)h.b[0] | ((uint32_t)h.b[1] << 8)) & (SIM_VCACHE_SLOTS - 1);
    struct sim_vcache *c = &s->vcache[i];
    if (c->state != 0 && memcmp(c->key, h.b + 2, sizeof(c->key)) == 0)
        return c->state == 1;
    bool ok = tc_verify(pk, bytes, len, sig) == TALLY_OK;
    memcpy(c->key, h.b + 2, sizeof(c->key));
    c->state = ok ? 1 : 2;
    return ok;
}

/* A transaction's own signature (ledger_tx_verify, through the cache). */
static bool sim_tx_ok(struct sim *s, const uint8_t *bytes, const struct ledger_tx *tx)
{
    (void)bytes;
    uint8_t msg[LEDGER_TX_SIGNED_BYTES];
    ledger_tx_signed_bytes(tx, msg);
    return sim_verify(s, &tx->from, msg, sizeof(msg), &tx->sig);
}

static uint8_t apply_tx(struct sim *s, struct sim_ledger *l, const uint8_t *bytes, const tc_hash *h)
{
    struct ledger_tx tx;
    if (ledger_tx_decode(bytes, LEDGER_TX_BYTES, &tx) != TALLY_OK)
        return LEDGER_RESULT_MALFORMED;
    if (ledger_find(l, h) != NULL)
        return LEDGER_RESULT_DUPLICATE;
    if (!sim_tx_ok(s, bytes, &tx))
        return LEDGER_RESULT_BAD_SIGNATURE;
    struct sim_account *from = account(l, &tx.from, false);
    if (from == NULL || tx.nonce != from->nonce + 1)
        return LEDGER_RESULT_BAD_NONCE;
    if (memcmp(tx.from.b, tx.to.b, TC_PUBKEY_BYTES) == 0)
        return LEDGER_RESULT_SELF_TRANSFER;
    if (tx.amount == 0)
        return LEDGER_RESULT_ZERO_AMOUNT;
    if (from->balance < tx.amount)
        return LEDGER_RESULT_INSUFFICIENT_FUNDS;
    struct sim_account *to = account(l, &tx.to, true);
    if (to == NULL || to->balance > UINT64_MAX - tx.amount)
        return LEDGER_RESULT_OVERFLOW;
    from->balance -= tx.amount;
    from->nonce++;
    to->balance += tx.amount;
    return LEDGER_RESULT_OK;
}

/* --- replica io (the shell) ---------------------------------------------------- */

static void io_sign(void *ctx, const uint8_t *bytes, size_t len, tc_sig *out)
{
    struct sim_replica *r = ctx;
    tc_sign(&r->kp, bytes, len, out);
}

static int store_cert(struct sim_replica *r, const struct ledger_cert *c)
{
    if (r->ncerts > 0 && r->certs[r->ncerts - 1].ck.height >= c->ck.height)
        return TALLY_OK;
    if (!grow((void **)&r->certs, &r->capcerts, r->ncerts + 1, sizeof(*r->certs)))
        return TALLY_ENOMEM;
    r->certs[r->ncerts++] = *c;
    return TALLY_OK;
}

/* The durable record under (kind, seq), or NULL. */
static struct sim_prec *prec_find(struct sim_replica *r, enum pbft_persist_kind kind, uint64_t seq)
{
    for (size_t i = 0; i < r->nrecs; i++)
        if (r->recs[i].kind == kind && r->recs[i].seq == seq)
            return &r->recs[i];
    return NULL;
}

/* What tallyd's io_persist does with each record (src/replica.c): VIEW
 * overwrites "view" and "vchg"; PRE-PREPARE, PREPARE and COMMIT overwrite
 * their key and raise "hi"; DISCARD_LOG deletes the three key ranges up to
 * its seq and raises "lo"; CHECKPOINT stores the certificate in the ledger
 * after checking it names our own block. A replica crashing in the middle of
 * a step (SIM_CRASH_AFTER_CHECKPOINT) loses what the rest of the step wrote. */
static int io_persist(void *ctx, const struct pbft_persist *rec)
{
    struct sim_replica *r = ctx;
    if (r->dying)
        return TALLY_OK; /* staged, never flushed: the process is gone */
    bool deferred = rec->deferrable;
    if (!deferred)
        r->synced_in_step = true;
    switch (rec->kind) {
    case PBFT_PERSIST_ASSIGNED:
        r->has_assigned = true;
        r->assigned_view = rec->view;
        r->assigned_seq = rec->seq;
        return TALLY_OK;
    case PBFT_PERSIST_HORIZON:
        r->has_horizon = true;
        r->horizon_view = rec->view;
        r->horizon_seq = rec->seq;
        r->horizon_boot = r->boot;
        return TALLY_OK;
    case PBFT_PERSIST_CHECKPOINT: {
        /* The shell checks a certificate against its own ledger before
         * storing it (tallyd does the same). */
        const struct ledger_ckpt *ck = &rec->cert->ck;
        if (ck->height > r->ledger.height ||
            memcmp(ck->block_hash.b, r->ledger.heads[ck->height].b, TC_HASH_BYTES) != 0) {
            violation(r->sim,
                      "replica %u asked to store a certificate for height %llu that "
                      "does not match its ledger",
                      r->id, (unsigned long long)ck->height);
            return TALLY_EMISMATCH;
        }
        return store_cert(r, rec->cert);
    }
    case PBFT_PERSIST_DISCARD_LOG: {
        size_t keep = 0;
        for (size_t i = 0; i < r->nrecs; i++) {
            if (r->recs[i].seq <= rec->seq) {
                free(r->recs[i].bytes);
                continue;
            }
            r->recs[keep++] = r->recs[i];
        }
        r->nrecs = keep;
        if (rec->seq > r->persisted_lo)
            r->persisted_lo = rec->seq;
        return TALLY_OK;
    }
    case PBFT_PERSIST_VIEW:
        r->has_view = true;
        r->view = rec->view;
        r->view_changing = rec->view_changing;
        return TALLY_OK;
    case PBFT_PERSIST_PREPREPARE:
    case PBFT_PERSIST_PREPARE:
    case PBFT_PERSIST_COMMIT:
        break;
    default:
        return TALLY_EINVAL;
    }
    struct sim_prec *p = prec_find(r, rec->kind, rec->seq);
    if (p == NULL) {
        if (!grow((void **)&r->recs, &r->caprecs, r->nrecs + 1, sizeof(*r->recs)))
            return TALLY_ENOMEM;
        p = &r->recs[r->nrecs++];
    } else if (deferred && !p->unsynced) {
        /* A power loss before the next synced write brings the old one back. */
        if (!grow((void **)&r->undo, &r->capundo, r->nundo + 1, sizeof(*r->undo)))
            return TALLY_ENOMEM;
        r->undo[r->nundo++] = *p;
    } else {
        free(p->bytes);
    }
    memset(p, 0, sizeof(*p));
    p->kind = rec->kind;
    p->seq = rec->seq;
    p->view = rec->view;
    p->digest = rec->digest;
    if (rec->kind == PBFT_PERSIST_PREPREPARE) {
        uint32_t count = rec->batch != NULL ? rec->batch->count : 0;
        size_t len = (size_t)count * LEDGER_TX_BYTES;
        p->bytes = malloc(len ? len : 1);
        if (p->bytes == NULL) {
            r->sim->oom = true; /* ends the run */
            return TALLY_ENOMEM;
        }
        if (len)
            memcpy(p->bytes, rec->batch->tx_bytes, len);
        p->batch.count = count;
        p->batch.tx_bytes = p->bytes;
        p->sig = rec->sig;
    }
    p->unsynced = deferred;
    /* tallyd writes the certificate only when there are signatures to write. */
    if (rec->kind == PBFT_PERSIST_COMMIT && rec->prepare_sigs != NULL && rec->prepare_from != 0) {
        p->prepare_from = rec->prepare_from;
        for (uint32_t i = 0; i < PBFT_MAX_REPLICAS; i++)
            if (rec->prepare_from & (1u << i))
                p->sigs[i] = rec->prepare_sigs[i];
    }
    if (rec->seq > r->persisted_hi)
        r->persisted_hi = rec->seq;
    return TALLY_OK;
}

/* Which backups the Byzantine primary lies to about seq: a fixed function of
 * the run (so that its retransmissions tell each backup the same story). About
 * a third of the sequence numbers are equivocated, to alternating halves. With
 * power losses the story flips at each of the backup's boots: a backup that
 * lost its PREPARE is then offered the other batch for the same seq. */
static bool equivocate_to(const struct sim *s, uint32_t backup, uint64_t seq)
{
    uint64_t x = s->equiv_salt ^ seq;
    if (splitmix64(&x) % 3 != 0)
        return false;
    return ((backup + seq + s->rep[backup].boot) & 1) == 1;
}

/* A Byzantine primary: each PRE-PREPARE goes out in two versions, the real
 * batch to some backups and a different one (reversed, or emptied) to others,
 * each version properly signed with the primary's key. */
static void equivocating_broadcast(struct sim_replica *r, const uint8_t *bytes, size_t len)
{
    struct sim *s = r->sim;
    struct msg m;
    struct tally_err err = {0};
    if (msg_decode(bytes, len, SIM_MAX_BODY, &m, &err) != TALLY_OK)
        abort(); /* our own core's bytes */
    const struct msg_batch *b = &m.u.pre_prepare.batch;
    uint8_t *alt = malloc(b->count ? (size_t)b->count * LEDGER_TX_BYTES : 1);
    if (alt == NULL) {
        s->oom = true;
        return;
    }
    struct msg_batch variant = {.count = b->count >= 2 ? b->count : 0, .tx_bytes = alt};
    for (uint32_t i = 0; i < variant.count; i++)
        memcpy(alt + (size_t)i * LEDGER_TX_BYTES,
               b->tx_bytes + (size_t)(b->count - 1 - i) * LEDGER_TX_BYTES, LEDGER_TX_BYTES);
    struct msg_buf vb;
    msg_buf_init(&vb);
    struct msg_signer signer = msg_signer_keypair(&r->kp);
    bool differs = b->count > 0;
    if (differs && msg_encode_pre_prepare(&vb, r->id, m.u.pre_prepare.view, m.u.pre_prepare.seq,
                                          &variant, &signer) != TALLY_OK)
        s->oom = true;
    for (uint32_t j = 0; j < s->n; j++) {
        if (j == r->id)
            continue;
        if (differs && vb.len > 0 && equivocate_to(s, j, m.u.pre_prepare.seq))
            net_send(s, r->id, j, vb.data, vb.len);
        else
            net_send(s, r->id, j, bytes, len);
    }
    msg_buf_free(&vb);
    free(alt);
}

/* A lying new primary: the same NEW-VIEW, but every re-proposal a null batch
 * (validly signed by it). Backups that recompute O from V must refuse it. */
static bool lie_new_view(struct sim_replica *r, const struct msg *m, struct msg_buf *out)
{
    struct msg_signer signer = msg_signer_keypair(&r->kp);
    struct msg_buf body, pp;
    msg_buf_init(&body);
    msg_buf_init(&pp);
    bool ok = msg_put_u64(&body, m->u.new_view.view) && msg_put_u32(&body, m->u.new_view.nvc) &&
              msg_put(&body, m->u.new_view.vcs, m->u.new_view.vcs_len) &&
              msg_put_u64(&body, m->u.new_view.min_seq) && msg_put_u32(&body, m->u.new_view.nprops);
    struct msg_iter it;
    struct msg_nv_prop prop;
    struct msg_batch empty = {0};
    msg_nv_prop_iter(m, &it);
    while (ok && msg_nv_prop_next(&it, &prop)) {
        msg_buf_reset(&pp);
        ok = msg_encode_pre_prepare(&pp, r->id, m->u.new_view.view, prop.seq, &empty, &signer) ==
                 TALLY_OK &&
             msg_put_u64(&body, prop.seq) && msg_put_u32(&body, 0) &&
             msg_put(&body, pp.data + pp.len - TC_SIG_BYTES, TC_SIG_BYTES);
    }
    msg_buf_reset(out);
    ok = ok && msg_encode_body(out, MSG_NEW_VIEW, r->id, body.data, body.len, &signer) == TALLY_OK;
    msg_buf_free(&body);
    msg_buf_free(&pp);
    return ok;
}

/* A fabricating replica: its VIEW-CHANGE claims one more prepared batch, with
 * 2f "prepare signatures" it made up. Everyone must refuse that VIEW-CHANGE. */
static bool fabricate_view_change(struct sim_replica *r, const struct msg *m, struct msg_buf *out)
{
    struct sim *s = r->sim;
    struct msg_signer signer = msg_signer_keypair(&r->kp);
    const typeof(m->u.view_change) *v = &m->u.view_change;
    uint64_t last = v->stable;
    struct msg_iter it;
    struct msg_vc_entry e;
    msg_vc_iter(m, &it);
    while (msg_vc_next(&it, &e))
        last = e.seq;
    if (last + 1 > v->stable + s->cfg.window)
        return false;
    struct msg_buf body;
    msg_buf_init(&body);
    uint8_t tx[LEDGER_TX_BYTES];
    memcpy(tx, s->cl[0].tx, sizeof(tx));
    tx[100] ^= 0x5A; /* a transaction nobody signed */
    struct msg_batch b = {.count = 1, .tx_bytes = tx};
    tc_hash d;
    msg_batch_digest(&b, &d);
    bool ok = msg_put_u64(&body, v->new_view) && msg_put_u64(&body, v->stable) &&
              msg_put_u32(&body, v->cert_len) && msg_put(&body, v->cert, v->cert_len) &&
              msg_put_u32(&body, v->nentries + 1) && msg_put(&body, v->entries, v->entries_len) &&
              msg_put_u64(&body, v->new_view - 1) && msg_put_u64(&body, last + 1) &&
              msg_put(&body, d.b, TC_HASH_BYTES) && msg_put_u32(&body, 1) &&
              msg_put(&body, tx, sizeof(tx)) && msg_put_u32(&body, 2 * s->f);
    uint32_t primary = (uint32_t)((v->new_view - 1) % s->n);
    for (uint32_t i = 0, k = 0; i < s->n && k < 2 * s->f && ok; i++) {
        if (i == primary)
            continue;
        tc_sig fake;
        for (size_t x = 0; x < TC_SIG_BYTES; x++)
            fake.b[x] = (uint8_t)rnd(s, 256);
        ok = msg_put_u16(&body, (uint16_t)i) && msg_put(&body, fake.b, TC_SIG_BYTES);
        k++;
    }
    msg_buf_reset(out);
    ok = ok &&
         msg_encode_body(out, MSG_VIEW_CHANGE, r->id, body.data, body.len, &signer) == TALLY_OK;
    msg_buf_free(&body);
    return ok;
}

static void io_send_plain(struct sim_replica *r, int to, const uint8_t *bytes, size_t len);

static void io_send(void *ctx, int to, const uint8_t *bytes, size_t len)
{
    struct sim_replica *r = ctx;
    struct sim *s = r->sim;
    if (r->dying)
        return; /* buffered until the end of the step, which never came */
    bool nv = s->sc->lying_new_primary == (int)r->id && len > 4 && bytes[4] == MSG_NEW_VIEW;
    bool vc = s->sc->fabricating_replica == (int)r->id && len > 4 && bytes[4] == MSG_VIEW_CHANGE;
    if (nv || vc) {
        struct msg m;
        struct tally_err err = {0};
        struct msg_buf lie;
        msg_buf_init(&lie);
        if (msg_decode(bytes, len, SIM_MAX_BODY, &m, &err) == TALLY_OK &&
            (nv ? lie_new_view(r, &m, &lie) : fabricate_view_change(r, &m, &lie))) {
            io_send_plain(r, to, lie.data, lie.len);
            msg_buf_free(&lie);
            return;
        }
        msg_buf_free(&lie);
    }
    io_send_plain(r, to, bytes, len);
}

/* A noisy replica: with each message it sends, also garbage, a copy claiming
 * to come from another replica, and a replay of an older message. The
 * shells must drop all of it (undecodable, bad signature) and the cores what
 * is stale. */
static void noise(struct sim_replica *r, int to, const uint8_t *bytes, size_t len)
{
    struct sim *s = r->sim;
    uint32_t dst = to >= 0 ? (uint32_t)to : (uint32_t)((r->id + 1 + rnd(s, s->n - 1)) % s->n);
    uint8_t junk[96];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)rnd(s, 256);
    if (rnd(s, 2))
        memcpy(junk, bytes, len < 12 ? len : 12); /* a valid-looking header */
    net_send(s, r->id, dst, junk, 12 + rnd(s, sizeof(junk) - 12));
    uint8_t *forged = malloc(len);
    if (forged != NULL && len > 8) {
        memcpy(forged, bytes, len);
        uint16_t other = (uint16_t)((r->id + 1) % s->n);
        forged[6] = (uint8_t)other;
        forged[7] = (uint8_t)(other >> 8);
        net_send(s, r->id, dst, forged, len);
    }
    free(forged);
    if (r->replay_len > 0)
        net_send(s, r->id, dst, r->replay, r->replay_len);
    if (len <= sizeof(r->replay) && rnd(s, 8) == 0) {
        memcpy(r->replay, bytes, len);
        r->replay_len = len;
    }
}

static size_t sent_slot(const struct sim *s, uint32_t from, uint8_t type, uint64_t view,
                        uint64_t seq)
{
    uint64_t x = (view * 0x9e3779b97f4a7c15ull) ^ (seq * 0xc2b2ae3d27d4eb4full) ^
                 ((uint64_t)type << 8) ^ from;
    x ^= x >> 31;
    size_t j = (size_t)x & (s->capsent - 1);
    while (s->sent[j].used && !(s->sent[j].from == from && s->sent[j].type == type &&
                                s->sent[j].view == view && s->sent[j].seq == seq))
        j = (j + 1) & (s->capsent - 1);
    return j;
}

/* One digest a correct replica sent for (type, view, seq): the first one
 * must be the only one, whatever crashes and power losses came between (a
 * restarted replica that forgot a PRE-PREPARE or a PREPARE must not send
 * another). */
static void sent_seen(struct sim_replica *r, uint8_t type, uint64_t view, uint64_t seq,
                      const tc_hash *digest)
{
    struct sim *s = r->sim;
    if (2 * (s->nsent + 1) > s->capsent) {
        size_t old_cap = s->capsent;
        struct sim_sent *old = s->sent;
        s->capsent = old_cap ? 2 * old_cap : 1024;
        s->sent = calloc(s->capsent, sizeof(*s->sent));
        if (s->sent == NULL) {
            s->oom = true;
            s->sent = old;
            s->capsent = old_cap;
            return;
        }
        for (size_t i = 0; i < old_cap; i++)
            if (old[i].used)
                s->sent[sent_slot(s, old[i].from, old[i].type, old[i].view, old[i].seq)] = old[i];
        free(old);
    }
    struct sim_sent *e = &s->sent[sent_slot(s, r->id, type, view, seq)];
    if (!e->used) {
        *e = (struct sim_sent){
            .used = true, .type = type, .from = r->id, .view = view, .seq = seq, .digest = *digest};
        s->nsent++;
    } else if (memcmp(e->digest.b, digest->b, TC_HASH_BYTES) != 0) {
        violation(s, "correct replica %u sent two different %s for view %llu seq %llu", r->id,
                  type == MSG_PRE_PREPARE ? "pre-prepares"
                  : type == MSG_PREPARE   ? "prepares"
                                          : "commits",
                  (unsigned long long)view, (unsigned long long)seq);
    }
}

/* A correct replica's PRE-PREPARE (or its NEW-VIEW's re-proposals),
 * PREPARE or COMMIT. */
static void sent_check(struct sim_replica *r, const uint8_t *bytes, size_t len)
{
    struct msg m;
    struct tally_err err = {0};
    if (r->byzantine || msg_decode(bytes, len, SIM_MAX_BODY, &m, &err) != TALLY_OK ||
        m.sender != r->id)
        return; /* our own retransmission of another primary's carries its sender */
    if (m.type == MSG_PRE_PREPARE) {
        sent_seen(r, MSG_PRE_PREPARE, m.u.pre_prepare.view, m.u.pre_prepare.seq,
                  &m.u.pre_prepare.digest);
    } else if (m.type == MSG_PREPARE || m.type == MSG_COMMIT) {
        sent_seen(r, (uint8_t)m.type, m.u.phase.view, m.u.phase.seq, &m.u.phase.digest);
    } else if (m.type == MSG_NEW_VIEW) {
        struct msg_iter it;
        struct msg_nv_prop prop;
        msg_nv_prop_iter(&m, &it);
        while (msg_nv_prop_next(&it, &prop)) {
            tc_hash d;
            msg_batch_digest(&prop.batch, &d);
            sent_seen(r, MSG_PRE_PREPARE, m.u.new_view.view, prop.seq, &d);
        }
    }
}

static void io_send_plain(struct sim_replica *r, int to, const uint8_t *bytes, size_t len)
{
    struct sim *s = r->sim;
    if (len > 4 && (bytes[4] == MSG_PRE_PREPARE || bytes[4] == MSG_NEW_VIEW ||
                    bytes[4] == MSG_PREPARE || bytes[4] == MSG_COMMIT))
        sent_check(r, bytes, len);
    if (s->sc->noisy_replica == (int)r->id)
        noise(r, to, bytes, len);
    if (to == PBFT_BROADCAST) {
        if (s->sc->equivocating_primary && r->id == 0 && len > 4 && bytes[4] == MSG_PRE_PREPARE) {
            equivocating_broadcast(r, bytes, len);
            return;
        }
        for (uint32_t j = 0; j < s->n; j++)
            if (j != r->id)
                net_send(s, r->id, j, bytes, len);
        return;
    }
    if (to >= 0 && (uint32_t)to < s->n) {
        if (s->sc->equivocating_primary && r->id == 0 && len > 4 && bytes[4] == MSG_PRE_PREPARE) {
            /* Retransmissions keep the story each backup was told. */
            struct msg m;
            struct tally_err err = {0};
            if (msg_decode(bytes, len, SIM_MAX_BODY, &m, &err) == TALLY_OK &&
                m.u.pre_prepare.batch.count > 0 &&
                equivocate_to(s, (uint32_t)to, m.u.pre_prepare.seq))
                return; /* keep it simple: the variant's backups get no retransmission */
        }
        net_send(s, r->id, (uint32_t)to, bytes, len);
    }
}

static int client_of(struct sim *s, const tc_pubkey *pk)
{
    for (uint32_t c = 0; c < s->sc->clients; c++)
        if (memcmp(s->cl[c].kp.pk.b, pk->b, TC_PUBKEY_BYTES) == 0)
            return (int)c;
    return -1;
}

static void send_reply(struct sim_replica *r, uint32_t client, uint64_t view, uint64_t height,
                       const struct msg_reply_entry *entries, uint32_t count)
{
    struct sim *s = r->sim;
    struct msg_signer signer = msg_signer_keypair(&r->kp);
    msg_buf_reset(&s->buf);
    if (msg_encode_reply(&s->buf, r->id, view, height, &r->ledger.heads[height], entries, count,
                         &signer) != TALLY_OK) {
        s->oom = true;
        return;
    }
    net_send(s, r->id, s->n + client, s->buf.data, s->buf.len);
}

static void check_executed(struct sim *s, struct sim_replica *r, uint64_t seq)
{
    if (r->byzantine)
        return;
    if (!grow((void **)&s->ref, &s->capref, seq + 1, sizeof(*s->ref))) {
        s->oom = true;
        return;
    }
    struct sim_ref *ref = &s->ref[seq];
    const tc_hash *d = &r->ledger.digests[seq], *h = &r->ledger.heads[seq];
    if (!ref->set) {
        ref->set = true;
        ref->digest = *d;
        ref->head = *h;
        return;
    }
    if (memcmp(ref->digest.b, d->b, TC_HASH_BYTES) != 0)
        violation(s, "replica %llu executed a different batch digest at seq %llu",
                  (unsigned long long)(r->id), (unsigned long long)(seq));
    else if (memcmp(ref->head.b, h->b, TC_HASH_BYTES) != 0)
        violation(s, "replica %llu has a different head hash at height %llu",
                  (unsigned long long)(r->id), (unsigned long long)(seq));
}

/* The model state digest: SHA-256 over the accounts in creation order
 * (the same on every replica: the genesis creates them all). */
static void model_state_digest(const struct sim_ledger *l, tc_hash *out)
{
    tc_sha256((const uint8_t *)l->acct, (size_t)l->nacct * sizeof(l->acct[0]), out);
}

/* Execute count transactions as part of block h: results and tx records
 * (l->txs has room for count more). */
static void model_apply_txs(struct sim *s, struct sim_ledger *l, uint64_t h, const uint8_t *txs,
                            uint32_t count, uint8_t *results)
{
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *tx = txs + (size_t)i * LEDGER_TX_BYTES;
        tc_hash th;
        ledger_tx_hash_bytes(tx, &th);
        results[i] = apply_tx(s, l, tx, &th);
        l->txs[l->ntx++] = (struct sim_txrec){.hash = th, .height = h, .result = results[i]};
    }
}

/* The genesis: every client's account, in client order, funded. */
static void model_genesis(struct sim *s, struct sim_ledger *l)
{
    l->nacct = 0;
    for (uint32_t c = 0; c < s->sc->clients; c++)
        account(l, &s->cl[c].kp.pk, true)->balance = SIM_GENESIS_BALANCE;
}

/* Apply one batch as block seq = height + 1: results, chained head, block. */
static bool model_apply(struct sim *s, struct sim_ledger *l, uint64_t seq,
                        const struct msg_batch *batch, uint8_t *results)
{
    if (!grow((void **)&l->heads, &l->caph, seq + 1, sizeof(tc_hash)) ||
        !grow((void **)&l->digests, &l->capd, seq + 1, sizeof(tc_hash)) ||
        !grow((void **)&l->blocks, &l->capb, seq + 1, sizeof(*l->blocks)) ||
        !grow((void **)&l->txs, &l->captx, l->ntx + batch->count, sizeof(*l->txs)))
        return false;
    size_t bytes = (size_t)batch->count * LEDGER_TX_BYTES;
    uint8_t *copy = malloc(bytes ? bytes : 1);
    if (copy == NULL)
        return false;
    if (bytes)
        memcpy(copy, batch->tx_bytes, bytes);
    l->blocks[seq] = (struct sim_block){.count = batch->count, .txs = copy};
    model_apply_txs(s, l, seq, batch->tx_bytes, batch->count, results);
    /* The chained head: H(h) = SHA-256(H(h-1) || batch digest || results). */
    tc_hash digest;
    msg_batch_digest(batch, &digest);
    uint8_t pre[2 * TC_HASH_BYTES];
    memcpy(pre, l->heads[seq - 1].b, TC_HASH_BYTES);
    memcpy(pre + TC_HASH_BYTES, digest.b, TC_HASH_BYTES);
    tc_sha256_2(pre, sizeof(pre), results, batch->count, &l->heads[seq]);
    l->digests[seq] = digest;
    l->height = seq;
    return true;
}

static void model_free(struct sim_ledger *l)
{
    for (uint64_t h = 1; h <= l->height && l->blocks != NULL; h++)
        free(l->blocks[h].txs);
    free(l->blocks);
    free(l->txs);
    free(l->heads);
    free(l->digests);
    memset(l, 0, sizeof(*l));
}

static bool model_copy(struct sim_ledger *dst, const struct sim_ledger *src)
{
    *dst = *src;
    dst->txs = NULL;
    dst->heads = dst->digests = NULL;
    dst->blocks = NULL;
    dst->captx = dst->caph = dst->capd = dst->capb = 0;
    uint64_t n = src->height + 1;
    if (!grow((void **)&dst->heads, &dst->caph, n + 1, sizeof(tc_hash)) ||
        !grow((void **)&dst->digests, &dst->capd, n + 1, sizeof(tc_hash)) ||
        !grow((void **)&dst->blocks, &dst->capb, n + 1, sizeof(*dst->blocks)) ||
        !grow((void **)&dst->txs, &dst->captx, src->ntx + 1, sizeof(*dst->txs))) {
        dst->height = 0;
        model_free(dst);
        return false;
    }
    memcpy(dst->heads, src->heads, n * sizeof(tc_hash));
    memcpy(dst->digests, src->digests, n * sizeof(tc_hash));
    if (src->ntx > 0)
        memcpy(dst->txs, src->txs, src->ntx * sizeof(*src->txs));
    memset(dst->blocks, 0, n * sizeof(*dst->blocks));
    for (uint64_t h = 1; h <= src->height; h++) {
        size_t bytes = (size_t)src->blocks[h].count * LEDGER_TX_BYTES;
        dst->blocks[h].count = src->blocks[h].count;
        dst->blocks[h].txs = malloc(bytes ? bytes : 1);
        if (dst->blocks[h].txs == NULL) {
            dst->height = h - 1;
            model_free(dst);
            return false;
        }
        if (bytes)
            memcpy(dst->blocks[h].txs, src->blocks[h].txs, bytes);
    }
    return true;
}

/* A power loss took the blocks above `to` (sim_scenario.power_loss): rebuild
 * the state from the genesis and blocks 1..to; heads and digests up to `to`
 * stay. */
static void model_rollback(struct sim *s, struct sim_ledger *l, uint64_t to)
{
    if (to >= l->height)
        return;
    model_genesis(s, l);
    l->ntx = 0;
    uint8_t results[MSG_MAX_BATCH];
    for (uint64_t h = 1; h <= to; h++)
        model_apply_txs(s, l, h, l->blocks[h].txs, l->blocks[h].count, results);
    for (uint64_t h = to + 1; h <= l->height; h++) {
        free(l->blocks[h].txs);
        l->blocks[h] = (struct sim_block){0};
    }
    s->res->blocks_lost += l->height - to;
    l->height = to;
}

/* No transaction executed OK twice among heights (from, l->height]. */
static void check_no_double_ok(struct sim *s, const struct sim_replica *r, uint64_t from)
{
    const struct sim_ledger *l = &r->ledger;
    for (size_t i = 0; i < l->ntx; i++) {
        if (l->txs[i].height <= from || l->txs[i].result != LEDGER_RESULT_OK)
            continue;
        for (size_t k = 0; k < i; k++)
            if (l->txs[k].result == LEDGER_RESULT_OK &&
                memcmp(l->txs[k].hash.b, l->txs[i].hash.b, TC_HASH_BYTES) == 0)
                violation(s, "replica %llu executed a tx OK twice (heights %llu, %llu)",
                          (unsigned long long)(r->id), (unsigned long long)(l->txs[k].height),
                          (unsigned long long)(l->txs[i].height));
    }
}

static void io_execute(void *ctx, uint64_t view, uint64_t seq, const struct msg_batch *batch,
                       const tc_hash *tx_hashes, struct pbft_exec_result *out)
{
    struct sim_replica *r = ctx;
    struct sim *s = r->sim;
    struct sim_ledger *l = &r->ledger;
    memset(out, 0, sizeof(*out));
    if (r->dying) {
        /* The process is gone: nothing lands, and this core (destroyed after
         * the event) is never asked anything again. What it does with the
         * rest of the step is discarded; the cluster's values keep it from
         * logging a mismatch with the votes it holds (L2151). */
        if (seq < s->capref && s->ref[seq].has_state) {
            out->block_hash = s->ref[seq].head;
            out->state_digest = s->ref[seq].state;
        }
        return;
    }
    if (seq != l->height + 1) {
        violation(s, "replica %llu executed seq %llu after height %llu",
                  (unsigned long long)(r->id), (unsigned long long)(seq),
                  (unsigned long long)(l->height));
        return;
    }
    uint8_t results[MSG_MAX_BATCH];
    struct msg_reply_entry *entries = calloc(batch->count ? batch->count : 1, sizeof(*entries));
    int *owner = calloc(batch->count ? batch->count : 1, sizeof(*owner));
    if (entries == NULL || owner == NULL) {
        free(entries);
        free(owner);
        s->oom = true;
        return;
    }
    if (!model_apply(s, l, seq, batch, results)) {
        free(entries);
        free(owner);
        s->oom = true;
        return;
    }
    check_no_double_ok(s, r, seq - 1);
    for (uint32_t i = 0; i < batch->count; i++) {
        const uint8_t *tx = batch->tx_bytes + (size_t)i * LEDGER_TX_BYTES;
        ledger_tx_hash_bytes(tx, &entries[i].tx_hash);
        if (memcmp(entries[i].tx_hash.b, tx_hashes[i].b, TC_HASH_BYTES) != 0)
            violation(s, "replica %u was handed a wrong hash for tx %u of seq %llu", r->id, i,
                      (unsigned long long)seq);
        entries[i].result = results[i];
        struct ledger_tx dtx;
        owner[i] =
            ledger_tx_decode(tx, LEDGER_TX_BYTES, &dtx) == TALLY_OK ? client_of(s, &dtx.from) : -1;
    }
    out->block_hash = l->heads[seq];
    model_state_digest(l, &out->state_digest);
    if (seq > s->res->executed_max)
        s->res->executed_max = seq;
    check_executed(s, r, seq);
    if (!r->byzantine && !s->oom && !s->ref[seq].has_state) {
        s->ref[seq].has_state = true;
        s->ref[seq].state = out->state_digest;
    }
    if (s->sc->group_crash_at == SIM_CRASH_AFTER_CHECKPOINT && r->armed && s->now >= r->arm_ms &&
        seq % s->cfg.checkpoint_interval == 0) {
        /* The block (and the promises staged before it) is durable; the
         * process dies before the step's sends leave: no vote, no replies. */
        r->dying = true;
        r->crash_ckpt = seq;
        free(entries);
        free(owner);
        return;
    }

    /* One REPLY per client per block, with that client's entries. */
    for (uint32_t c = 0; c < s->sc->clients; c++) {
        struct msg_reply_entry mine[MSG_MAX_BATCH];
        uint32_t k = 0;
        for (uint32_t i = 0; i < batch->count; i++)
            if (owner[i] == (int)c)
                mine[k++] = entries[i];
        if (k > 0)
            send_reply(r, c, view, seq, mine, k);
    }
    free(entries);
    free(owner);
}

/* --- state transfer (the shell's part) ------------------------------------------ */

/* Chunk: u32 cert length, certificate (ledger/cert.h), u64 from, u32 blocks,
 * then per block u32 count and count transactions: the blocks from `from` up
 * to the certified height. */
static bool put_bytes(struct msg_buf *b, const void *p, size_t n)
{
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap - b->len < n)
            cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (d == NULL)
            return false;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return true;
}

static bool put_u32le(struct msg_buf *b, uint32_t v)
{
    uint8_t x[4];
    ledger_put_u32(x, v);
    return put_bytes(b, x, 4);
}

static int io_state_read(void *ctx, uint64_t from, uint64_t to, struct msg_buf *out)
{
    (void)to;
    struct sim_replica *r = ctx;
    struct sim *s = r->sim;
    const struct ledger_cert *c = NULL;
    for (size_t i = 0; i < r->ncerts && c == NULL; i++)
        if (r->certs[i].ck.height >= from)
            c = &r->certs[i];
    if (c == NULL || c->ck.height > r->ledger.height)
        return TALLY_ENOTFOUND;
    struct ledger_cert cert = *c;
    bool lie = s->sc->lying_state_server == (int)r->id;
    uint64_t how = lie ? rnd(s, 3) : 0;
    if (lie && how == 0)
        cert.sigs[0].sig.b[5] ^= 0x40; /* a forged certificate */
    uint8_t cb[LEDGER_CERT_MAX_BYTES];
    size_t clen = ledger_cert_encode(&cert, cb);
    uint8_t f8[8];
    ledger_put_u64(f8, from);
    uint64_t n = cert.ck.height - from + 1;
    bool ok = put_u32le(out, (uint32_t)clen) && put_bytes(out, cb, clen) && put_bytes(out, f8, 8) &&
              put_u32le(out, (uint32_t)n);
    bool lied = false;
    for (uint64_t h = from; h <= cert.ck.height && ok; h++) {
        const struct sim_block *b = &r->ledger.blocks[h];
        uint32_t count = b->count;
        if (lie && how >= 1 && !lied && count >= 1) {
            lied = true;
            if (how == 1 && count >= 2) { /* reordered transactions */
                ok = put_u32le(out, count);
                for (uint32_t i = count; i-- > 0 && ok;)
                    ok = put_bytes(out, b->txs + (size_t)i * LEDGER_TX_BYTES, LEDGER_TX_BYTES);
            } else { /* a withheld transaction */
                ok = put_u32le(out, count - 1) &&
                     put_bytes(out, b->txs, (size_t)(count - 1) * LEDGER_TX_BYTES);
            }
            continue;
        }
        ok = put_u32le(out, count) && put_bytes(out, b->txs, (size_t)count * LEDGER_TX_BYTES);
    }
    return ok ? TALLY_OK : TALLY_ENOMEM;
}

struct sim_reader {
    const uint8_t *p;
    size_t len, off;
};

static const uint8_t *take(struct sim_reader *rd, size_t n)
{
    if (n > rd->len - rd->off)
        return NULL;
    const uint8_t *at = rd->p + rd->off;
    rd->off += n;
    return at;
}

static int io_state_install(void *ctx, const uint8_t *chunk, size_t len,
                            struct pbft_install_result *out)
{
    struct sim_replica *r = ctx;
    struct sim *s = r->sim;
    if (r->dying)
        return TALLY_EINVAL;
    struct sim_reader rd = {.p = chunk, .len = len};
    const uint8_t *x = take(&rd, 4);
    if (x == NULL)
        return TALLY_ETRUNC;
    uint32_t clen = ledger_get_u32(x);
    if (clen > LEDGER_CERT_MAX_BYTES || (x = take(&rd, clen)) == NULL)
        return TALLY_EFORMAT;
    struct ledger_cert cert;
    struct tally_err err = {0};
    if (ledger_cert_decode(x, clen, &cert, &err) != TALLY_OK)
        return TALLY_EFORMAT;
    if (ledger_cert_verify(&cert, &s->chain_id, s->cfg.replica_keys, s->n, 2 * s->f + 1, &err) !=
        TALLY_OK)
        return TALLY_EBADSIG;
    const uint8_t *f8 = take(&rd, 8), *n4 = take(&rd, 4);
    if (f8 == NULL || n4 == NULL)
        return TALLY_ETRUNC;
    uint64_t from = ledger_get_u64(f8), n = ledger_get_u32(n4);
    uint64_t old = r->ledger.height;
    if (from != old + 1 || n == 0 || cert.ck.height != from + n - 1)
        return TALLY_EFORMAT;
    /* Verify before believing: apply to a copy, compare with the certificate. */
    struct sim_ledger copy;
    if (!model_copy(&copy, &r->ledger)) {
        s->oom = true;
        return TALLY_ENOMEM;
    }
    int rc = TALLY_OK;
    uint8_t results[MSG_MAX_BATCH];
    for (uint64_t h = from; h < from + n && rc == TALLY_OK; h++) {
        const uint8_t *c4 = take(&rd, 4);
        uint32_t count = c4 ? ledger_get_u32(c4) : 0;
        const uint8_t *txs = NULL;
        if (c4 == NULL || count > MSG_MAX_BATCH ||
            (txs = take(&rd, (size_t)count * LEDGER_TX_BYTES)) == NULL)
            rc = TALLY_EFORMAT;
        struct msg_batch b = {.count = count, .tx_bytes = txs};
        if (rc == TALLY_OK && !model_apply(s, &copy, h, &b, results))
            rc = TALLY_ENOMEM;
    }
    tc_hash sd;
    model_state_digest(&copy, &sd);
    if (rc == TALLY_OK &&
        (rd.off != rd.len ||
         memcmp(copy.heads[cert.ck.height].b, cert.ck.block_hash.b, TC_HASH_BYTES) != 0 ||
         memcmp(sd.b, cert.ck.state_digest.b, TC_HASH_BYTES) != 0))
        rc = TALLY_EMISMATCH;
    if (rc != TALLY_OK) {
        model_free(&copy);
        s->res->bad_chunks++;
        return rc;
    }
    model_free(&r->ledger);
    r->ledger = copy;
    if (store_cert(r, &cert) != TALLY_OK) {
        s->oom = true;
        return TALLY_ENOMEM;
    }
    r->synced_in_step = true; /* tallyd: the last block carries the certificate */
    for (uint64_t h = from; h <= cert.ck.height; h++)
        check_executed(s, r, h);
    check_no_double_ok(s, r, old);
    if (cert.ck.height > s->res->executed_max)
        s->res->executed_max = cert.ck.height;
    s->res->state_chunks++;
    out->height = cert.ck.height;
    out->certified = true;
    out->ck = cert.ck;
    out->cert = cert;
    return TALLY_OK;
}

/* --- replicas: delivery ---------------------------------------------------------- */

static int io_verify(void *ctx, const tc_pubkey *pk, const uint8_t *bytes, size_t len,
                     const tc_sig *sig)
{
    struct sim_replica *r = ctx;
    return sim_verify(r->sim, pk, bytes, len, sig) ? TALLY_OK : TALLY_EBADSIG;
}

static struct pbft *replica_core(struct sim *s, struct sim_replica *r)
{
    struct pbft_io io = {.ctx = r,
                         .sign = io_sign,
                         .persist = io_persist,
                         .send = io_send,
                         .execute = io_execute,
                         .state_read = io_state_read,
                         .state_install = io_state_install,
                         .verify = io_verify};
    struct pbft_config cfg = s->cfg;
    cfg.id = r->id;
    return pbft_create(&cfg, &io, r->ledger.height);
}

static void deliver_request(struct sim *s, struct sim_replica *r, const struct msg *m)
{
    for (uint32_t i = 0; i < m->u.request.count; i++) {
        const uint8_t *bytes = m->u.request.tx_bytes + (size_t)i * LEDGER_TX_BYTES;
        struct ledger_tx tx;
        if (ledger_tx_decode(bytes, LEDGER_TX_BYTES, &tx) != TALLY_OK || !sim_tx_ok(s, bytes, &tx))
            continue; /* the shell verifies client signatures */
        if (s->sc->censor_client0 && r->id == 0 && s->sc->clients > 0 &&
            memcmp(tx.from.b, s->cl[0].kp.pk.b, TC_PUBKEY_BYTES) == 0)
            continue; /* the censoring primary never hears of client 0 */
        tc_hash h;
        ledger_tx_hash_bytes(bytes, &h);
        const struct sim_txrec *done = ledger_find(&r->ledger, &h);
        if (done != NULL) {
            /* Already executed: re-send the reply (§4.1, the last reply). */
            int c = client_of(s, &tx.from);
            if (c >= 0) {
                struct msg_reply_entry e = {.tx_hash = h, .result = done->result};
                send_reply(r, (uint32_t)c, 0, done->height, &e, 1);
            }
            continue;
        }
        pbft_on_request(r->core, &tx, &h, s->now);
    }
}

static void deliver_replica(struct sim *s, struct sim_replica *r, const uint8_t *bytes, size_t len)
{
    struct msg m;
    struct tally_err err = {0};
    if (msg_decode(bytes, len, SIM_MAX_BODY, &m, &err) != TALLY_OK)
        return;
    if (m.type == MSG_REQUEST) {
        deliver_request(s, r, &m);
        return;
    }
    if (m.sender >= s->n ||
        !sim_verify(s, &s->rep[m.sender].kp.pk, m.signed_bytes, m.signed_len, &m.sig))
        return; /* the shell drops what it cannot verify */
    if (m.type == MSG_CHECKPOINT) {
        struct ledger_ckpt ck = {.height = m.u.checkpoint.seq,
                                 .block_hash = m.u.checkpoint.block_hash,
                                 .state_digest = m.u.checkpoint.state_digest};
        if (ledger_ckpt_verify(&s->rep[m.sender].kp.pk, &s->chain_id, &ck,
                               &m.u.checkpoint.statement_sig) != TALLY_OK)
            return;
    }
    pbft_on_message(r->core, &m, s->now);
}

/* --- clients --------------------------------------------------------------------- */

static void client_submit(struct sim *s, struct sim_client *c)
{
    if (c->submitted == s->sc->requests_per_client) {
        c->done = true;
        return;
    }
    uint32_t other = (c->idx + 1 + (uint32_t)rnd(s, s->sc->clients - 1)) % s->sc->clients;
    struct ledger_tx tx = {.version = LEDGER_TX_VERSION,
                           .kind = LEDGER_TX_KIND_TRANSFER,
                           .from = c->kp.pk,
                           .to = s->cl[other].kp.pk,
                           .amount = 1 + rnd(s, 50),
                           .nonce = ++c->nonce};
    ledger_tx_sign(&tx, &c->kp);
    ledger_tx_encode(&tx, c->tx);
    ledger_tx_hash_bytes(c->tx, &c->hash);
    memset(c->seen, 0, sizeof(c->seen));
    c->submitted++;
    c->waiting = true;
    c->token++;
    struct msg_batch b = {.count = 1, .tx_bytes = c->tx};
    msg_buf_reset(&s->buf);
    if (msg_encode_request(&s->buf, &b) != TALLY_OK) {
        s->oom = true;
        return;
    }
    net_send(s, s->n + c->idx, (uint32_t)(c->view % s->n), s->buf.data, s->buf.len);
    if (s->sc->bad_sig_primary && !s->rep[0].down && s->rep[0].core != NULL) {
        /* The Byzantine primary proposes a transfer from this client that the
         * client never signed (its shell would have refused it). */
        struct ledger_tx forged = tx;
        forged.amount += 1000;
        forged.sig.b[0] ^= 0x01;
        uint8_t fb[LEDGER_TX_BYTES];
        tc_hash fh;
        ledger_tx_encode(&forged, fb);
        ledger_tx_hash_bytes(fb, &fh);
        pbft_on_request(s->rep[0].core, &forged, &fh, s->now);
    }
    ev_push(s, (struct sim_event){.t = s->now + SIM_CLIENT_TIMEOUT_MS,
                                  .kind = EV_CLIENT,
                                  .to = s->n + c->idx,
                                  .token = c->token});
}

static void client_timer(struct sim *s, struct sim_client *c, uint64_t token)
{
    if (token != c->token || c->done)
        return;
    if (!c->waiting) {
        client_submit(s, c);
        return;
    }
    /* No receipt yet: re-send to every replica (§4.1). */
    struct msg_batch b = {.count = 1, .tx_bytes = c->tx};
    msg_buf_reset(&s->buf);
    if (msg_encode_request(&s->buf, &b) != TALLY_OK) {
        s->oom = true;
        return;
    }
    for (uint32_t j = 0; j < s->n; j++)
        net_send(s, s->n + c->idx, j, s->buf.data, s->buf.len);
    ev_push(s, (struct sim_event){.t = s->now + SIM_CLIENT_TIMEOUT_MS,
                                  .kind = EV_CLIENT,
                                  .to = s->n + c->idx,
                                  .token = c->token});
}

/* Does receipt r for client's tx match what a correct replica holding its
 * height executed there? A mismatch is a violation (true: checked); false
 * when no correct replica holds that height now. */
static bool receipt_checked(struct sim *s, uint32_t client, const tc_hash *tx,
                            const struct sim_reply_seen *r)
{
    const struct sim_txrec *rec = NULL;
    bool found_height = false;
    for (uint32_t j = 0; j < s->n && rec == NULL; j++) {
        struct sim_replica *x = &s->rep[j];
        if (x->byzantine || x->ledger.height < r->height)
            continue;
        found_height = true;
        if (memcmp(x->ledger.heads[r->height].b, r->block.b, TC_HASH_BYTES) != 0) {
            violation(s,
                      "client %llu receipt names a block hash at height %llu that replica "
                      "%llu does not have",
                      (unsigned long long)client, (unsigned long long)(r->height),
                      (unsigned long long)(j));
            return true;
        }
        rec = ledger_find_at(&x->ledger, tx, r->height);
    }
    if (!found_height)
        return false;
    if (rec == NULL || rec->result != r->result)
        violation(s, "client %llu receipt (height %llu, result %llu) does not match the ledger",
                  (unsigned long long)client, (unsigned long long)(r->height),
                  (unsigned long long)(r->result));
    return true;
}

/* After every event: the late receipts whose height a correct replica holds
 * again; at the end (final), any left is a violation. */
static void check_late_receipts(struct sim *s, bool final)
{
    uint32_t keep = 0;
    for (uint32_t i = 0; i < s->nlate; i++) {
        if (receipt_checked(s, s->late[i].client, &s->late[i].tx, &s->late[i].r))
            continue;
        if (final)
            violation(s, "client %u receipt at height %llu that no correct replica executed again",
                      s->late[i].client, (unsigned long long)s->late[i].r.height);
        s->late[keep++] = s->late[i];
    }
    s->nlate = keep;
}

static void client_receipt(struct sim *s, struct sim_client *c, const struct sim_reply_seen *r)
{
    /* The receipt must match what the correct replicas executed there. With
     * power losses every correct replica may have lost that block since its
     * replies left (the model ledger went back): it is checked once one of
     * them executes that height again. */
    if (!receipt_checked(s, c->idx, &c->hash, r)) {
        if (!s->sc->power_loss || s->nlate == SIM_MAX_LATE_RECEIPTS) {
            violation(s, "client %llu receipt at height %llu that no correct replica executed",
                      (unsigned long long)(c->idx), (unsigned long long)(r->height));
            return;
        }
        s->late[s->nlate].client = c->idx;
        s->late[s->nlate].tx = c->hash;
        s->late[s->nlate].r = *r;
        s->nlate++;
    }
    if (s->res->violation)
        return;
    s->res->receipts++;
    if (r->height > s->max_receipt_height)
        s->max_receipt_height = r->height;
    if (r->result != LEDGER_RESULT_OK && r->result != LEDGER_RESULT_DUPLICATE)
        c->nonce--; /* the nonce was not consumed */
    c->receipted++;
    c->waiting = false;
    c->token++;
    ev_push(s, (struct sim_event){.t = s->now + rnd(s, 20),
                                  .kind = EV_CLIENT,
                                  .to = s->n + c->idx,
                                  .token = c->token});
}

static void deliver_client(struct sim *s, struct sim_client *c, const uint8_t *bytes, size_t len)
{
    struct msg m;
    struct tally_err err = {0};
    if (msg_decode(bytes, len, SIM_MAX_BODY, &m, &err) != TALLY_OK || m.type != MSG_REPLY ||
        m.sender >= s->n ||
        !sim_verify(s, &s->rep[m.sender].kp.pk, m.signed_bytes, m.signed_len, &m.sig))
        return;
    if (m.u.reply.view > c->view)
        c->view = m.u.reply.view;
    if (!c->waiting)
        return;
    for (uint32_t i = 0; i < m.u.reply.count; i++) {
        struct msg_reply_entry e;
        msg_reply_entry_get(&m, i, &e);
        if (memcmp(e.tx_hash.b, c->hash.b, TC_HASH_BYTES) != 0)
            continue;
        struct sim_reply_seen *mine = &c->seen[m.sender];
        mine->have = true;
        mine->height = m.u.reply.height;
        mine->block = m.u.reply.block_hash;
        mine->result = e.result;
        uint32_t agree = 0;
        for (uint32_t j = 0; j < s->n; j++)
            if (c->seen[j].have && c->seen[j].height == mine->height &&
                c->seen[j].result == mine->result &&
                memcmp(c->seen[j].block.b, mine->block.b, TC_HASH_BYTES) == 0)
                agree++;
        if (agree >= s->f + 1) { /* f+1 matching replies */
            struct sim_reply_seen r = *mine;
            client_receipt(s, c, &r);
        }
        return;
    }
}

/* --- crash and restart --------------------------------------------------------------- */

/* A synced write covers every write before it (one write-ahead log). */
static void recs_synced(struct sim_replica *r)
{
    for (size_t i = 0; i < r->nrecs; i++)
        r->recs[i].unsynced = false;
    for (size_t i = 0; i < r->nundo; i++)
        free(r->undo[i].bytes);
    r->nundo = 0;
    r->synced_hi = r->persisted_hi;
}

/* Power loss: the records no synced write covered are gone, the ones they
 * replaced are back, and so is "hi" (tallyd writes it with them). */
static void recs_rollback(struct sim_replica *r)
{
    size_t keep = 0;
    for (size_t i = 0; i < r->nrecs; i++) {
        if (r->recs[i].unsynced) {
            free(r->recs[i].bytes);
            continue;
        }
        r->recs[keep++] = r->recs[i];
    }
    r->nrecs = keep;
    for (size_t i = 0; i < r->nundo; i++) /* room: each replaced a record dropped above */
        r->recs[r->nrecs++] = r->undo[i];
    r->nundo = 0;
    r->persisted_hi = r->synced_hi;
}

/* Down from now: neither sends nor receives; with power_loss its ledger also
 * loses the blocks no synced write covered, and its protocol state the
 * records, in a new boot (unless the crash is one of the process only,
 * process_crash_permille). */
static void replica_crash(struct sim *s, struct sim_replica *r)
{
    r->down = true;
    links_crashed(s, r->id);
    if (s->sc->power_loss && rnd(s, 1000) >= s->sc->process_crash_permille) {
        model_rollback(s, &r->ledger, r->synced_height);
        recs_rollback(r);
        r->boot++;
    }
}

/* A restart restores what tallyd's restore_state restores (src/replica.c), in
 * its order: the last stored certificate, the view, then for each seq from
 * lo + 1 (at most 2L below hi) up to hi its "pp", "pr" and "cm" records. */
static void restore_rec(struct sim *s, struct sim_replica *r, const struct pbft_persist *rec)
{
    if (pbft_restore(r->core, rec) != TALLY_OK)
        violation(s, "replica %u could not restore record kind %d seq %llu", r->id, (int)rec->kind,
                  (unsigned long long)rec->seq);
}

static void replica_restart(struct sim *s, struct sim_replica *r)
{
    pbft_destroy(r->core);
    r->core = replica_core(s, r);
    if (r->core == NULL) {
        s->oom = true;
        return;
    }
    if (r->ncerts > 0 && r->certs[r->ncerts - 1].ck.height <= r->ledger.height) {
        const struct ledger_cert *c = &r->certs[r->ncerts - 1];
        restore_rec(s, r,
                    &(struct pbft_persist){
                        .kind = PBFT_PERSIST_CHECKPOINT, .seq = c->ck.height, .cert = c});
    }
    if (r->has_view)
        restore_rec(s, r,
                    &(struct pbft_persist){.kind = PBFT_PERSIST_VIEW,
                                           .view = r->view,
                                           .view_changing = r->view_changing});
    if (r->has_assigned)
        restore_rec(s, r,
                    &(struct pbft_persist){.kind = PBFT_PERSIST_ASSIGNED,
                                           .view = r->assigned_view,
                                           .seq = r->assigned_seq});
    if (r->has_horizon)
        restore_rec(s, r,
                    &(struct pbft_persist){.kind = PBFT_PERSIST_HORIZON,
                                           .view = r->horizon_view,
                                           .seq = r->horizon_seq,
                                           .same_boot = r->horizon_boot == r->boot});
    uint64_t first = r->persisted_lo + 1, hi = r->persisted_hi, span = 2 * s->cfg.window;
    if (hi > span && first < hi - span)
        first = hi - span;
    static const enum pbft_persist_kind kinds[] = {PBFT_PERSIST_PREPREPARE, PBFT_PERSIST_PREPARE,
                                                   PBFT_PERSIST_COMMIT};
    for (uint64_t seq = first; seq <= hi && seq != 0; seq++)
        for (size_t i = 0; i < 3; i++) {
            const struct sim_prec *p = prec_find(r, kinds[i], seq);
            if (p == NULL)
                continue;
            struct pbft_persist rec = {
                .kind = p->kind, .seq = p->seq, .view = p->view, .digest = p->digest};
            if (p->kind == PBFT_PERSIST_PREPREPARE) {
                rec.batch = &p->batch;
                rec.sig = p->sig;
            }
            if (p->kind == PBFT_PERSIST_COMMIT && p->prepare_from != 0) {
                rec.prepare_from = p->prepare_from;
                rec.prepare_sigs = p->sigs;
            }
            restore_rec(s, r, &rec);
        }
    /* As replica.c: our vote for the last checkpoint seq at or below the
     * height, signed again from that height's block hash and state digest
     * (replica.c reads both from the stored block's header; the model keeps
     * no per-height state digests, and every correct replica's equals the
     * reference's, which check_invariants enforces). */
    uint64_t ck = r->ledger.height - r->ledger.height % s->cfg.checkpoint_interval;
    if (ck > 0 && ck < s->capref && s->ref[ck].has_state) {
        struct pbft_exec_result vote = {.block_hash = r->ledger.heads[ck],
                                        .state_digest = s->ref[ck].state};
        pbft_restore_checkpoint_vote(r->core, ck, &vote);
    }
    r->down = false;
    r->dying = false;
    r->restarts++;
    links_release(s, r->id);
}

/* --- group restarts ------------------------------------------------------------------ */

/* Begin a round: draw group_size distinct replicas, their arm moments from
 * base and their downtimes. */
static void group_arm_round(struct sim *s, uint64_t base)
{
    const struct sim_scenario *sc = s->sc;
    uint32_t pick[PBFT_MAX_REPLICAS];
    for (uint32_t i = 0; i < s->n; i++)
        pick[i] = i;
    uint64_t span = sc->group_down_max_ms - sc->group_down_min_ms + 1;
    uint64_t arm = base + rnd(s, sc->group_spread_ms);
    uint64_t down = sc->group_down_min_ms + rnd(s, span);
    uint32_t size = sc->group_size < s->n ? sc->group_size : s->n;
    for (uint32_t k = 0; k < size; k++) {
        uint32_t at = k + (uint32_t)rnd(s, s->n - k);
        uint32_t id = pick[at];
        pick[at] = pick[k];
        pick[k] = id;
        if (sc->group_staggered) {
            arm = base + rnd(s, sc->group_spread_ms);
            down = sc->group_down_min_ms + rnd(s, span);
        }
        struct sim_replica *r = &s->rep[id];
        r->armed = true;
        r->arm_ms = arm;
        r->down_ms = down;
    }
    s->round++;
    s->round_left = size;
}

/* Is armed replica r at its crash point now (between two events)? */
static bool at_crash_point(struct sim *s, struct sim_replica *r, bool *forced)
{
    *forced = false;
    if (r->down || s->now < r->arm_ms)
        return false;
    if (r->dying)
        return true;
    if (s->sc->group_crash_at == SIM_CRASH_BETWEEN_CHECKPOINTS) {
        struct pbft_status st;
        pbft_get_status(r->core, &st);
        if (st.last_executed > st.last_stable_checkpoint &&
            st.last_executed % s->cfg.checkpoint_interval != 0)
            return true;
    }
    *forced = s->now >= r->arm_ms + SIM_FORCE_CRASH_MS;
    return *forced;
}

static void group_crash(struct sim *s, struct sim_replica *r, bool forced)
{
    replica_crash(s, r);
    r->armed = false;
    if (forced)
        s->res->group_forced++;
    else
        s->res->group_crashes++;
    if (r->dying && s->nckpt_crash < SIM_MAX_CKPT_CRASHES) {
        s->ckpt_crash[s->nckpt_crash].replica = r->id;
        s->ckpt_crash[s->nckpt_crash].seq = r->crash_ckpt;
        s->nckpt_crash++;
        s->res->ckpt_crashes++;
    }
    ev_push(s, (struct sim_event){
                   .t = s->now + r->down_ms, .kind = EV_RESTART, .to = r->id, .token = 1});
}

/* After every event: crash the armed replicas that reached their crash point
 * (a simultaneous group only when all of it has). */
static void group_check(struct sim *s)
{
    if (s->sc->group_size == 0)
        return;
    bool all = true, any = false, forced_any = false;
    for (uint32_t j = 0; j < s->n; j++) {
        struct sim_replica *r = &s->rep[j];
        if (!r->armed)
            continue;
        bool forced;
        bool at = at_crash_point(s, r, &forced);
        if (s->sc->group_staggered || r->dying) {
            if (at)
                group_crash(s, r, forced);
            continue;
        }
        any = true;
        all = all && at;
        forced_any = forced_any || forced;
    }
    if (!any || !(all || forced_any))
        return;
    for (uint32_t j = 0; j < s->n; j++)
        if (s->rep[j].armed)
            group_crash(s, &s->rep[j], forced_any && !all);
}

/* A group member is back: the next round begins when the whole group is. */
static void group_restarted(struct sim *s)
{
    if (s->round_left > 0 && --s->round_left == 0 && s->round < s->sc->group_rounds)
        group_arm_round(s, s->now);
}

/* At the end: did each checkpoint whose own vote was lost to a crash still
 * get a certificate, and did the crashed replica's stable checkpoint (its
 * garbage collection) get to it? */
static void group_report(struct sim *s)
{
    for (uint32_t i = 0; i < s->nckpt_crash; i++) {
        uint64_t seq = s->ckpt_crash[i].seq;
        bool certified = false;
        for (uint32_t j = 0; j < s->n && !certified; j++)
            for (size_t c = 0; c < s->rep[j].ncerts && !certified; c++)
                certified = s->rep[j].certs[c].ck.height == seq;
        s->res->ckpt_certified += certified;
        struct sim_replica *r = &s->rep[s->ckpt_crash[i].replica];
        struct pbft_status st;
        if (!r->down) {
            pbft_get_status(r->core, &st);
            s->res->ckpt_stable_past += st.last_stable_checkpoint >= seq;
        }
    }
}

/* --- the run ------------------------------------------------------------------------- */

static void seed_key(const char *role, uint32_t i, tc_keypair *kp)
{
    uint8_t seed[TC_SEED_BYTES] = {0};
    snprintf((char *)seed, sizeof(seed), "sim-%s-%u", role, i);
    if (tc_keypair_from_seed(kp, seed) != TALLY_OK)
        abort();
}

/* After every event: each correct replica's latest block agrees with the
 * reference (digest and chained head) recorded by the first correct replica
 * that executed that height. Execution and receipts are also checked as they
 * happen (check_executed, client_receipt); this catches anything in between. */
static void check_invariants(struct sim *s)
{
    for (uint32_t j = 0; j < s->n && !s->res->violation; j++) {
        const struct sim_replica *r = &s->rep[j];
        uint64_t h = r->ledger.height;
        if (r->byzantine || h == 0)
            continue;
        if (h >= s->capref || !s->ref[h].set)
            violation(s, "replica %u height %llu has no reference", j, (unsigned long long)h);
        else if (memcmp(s->ref[h].digest.b, r->ledger.digests[h].b, TC_HASH_BYTES) != 0 ||
                 memcmp(s->ref[h].head.b, r->ledger.heads[h].b, TC_HASH_BYTES) != 0)
            violation(s, "replica %u diverges at height %llu", j, (unsigned long long)h);
    }
    /* §4.3: the low watermark is the last stable checkpoint, restarts included. */
    for (uint32_t j = 0; j < s->n && !s->res->violation; j++) {
        const struct sim_replica *r = &s->rep[j];
        if (r->byzantine || r->down)
            continue;
        struct pbft_status st;
        pbft_get_status(r->core, &st);
        if (st.low_watermark != st.last_stable_checkpoint)
            violation(s, "replica %u low watermark %llu is not its stable checkpoint %llu", j,
                      (unsigned long long)st.low_watermark,
                      (unsigned long long)st.last_stable_checkpoint);
    }
}

/* Protocol memory and durable log records, at their highest. */
static void observe_memory(struct sim *s)
{
    for (uint32_t j = 0; j < s->n; j++) {
        struct sim_replica *r = &s->rep[j];
        if (r->down)
            continue;
        struct pbft_status st;
        pbft_get_status(r->core, &st);
        if (st.log_slots_used > s->res->max_log_slots)
            s->res->max_log_slots = st.log_slots_used;
        if (st.checkpoint_votes > s->res->max_ckpt_votes)
            s->res->max_ckpt_votes = st.checkpoint_votes;
        if (r->nrecs > s->res->max_recs)
            s->res->max_recs = r->nrecs;
        if (st.checkpoints_stable > s->res->stable_count)
            s->res->stable_count = st.checkpoints_stable;
        if (!r->byzantine && st.view_active && st.view > s->res->max_view)
            s->res->max_view = st.view;
    }
}

static bool all_done(struct sim *s)
{
    for (uint32_t c = 0; c < s->sc->clients; c++)
        if (!s->cl[c].done)
            return false;
    for (uint32_t j = 0; j < s->n; j++) {
        struct sim_replica *r = &s->rep[j];
        if (r->byzantine || (int)j == s->sc->crashed_replica)
            continue;
        if (r->ledger.height < s->max_receipt_height)
            return false;
    }
    return true;
}

int sim_run(const struct sim_scenario *sc, uint64_t seed, struct sim_result *res)
{
    memset(res, 0, sizeof(*res));
    struct sim *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -1;
    s->sc = sc;
    s->res = res;
    s->f = sc->f;
    s->n = 3 * sc->f + 1;
    s->rng = seed ^ 0x7A11E5EEDull;
    for (const char *p = sc->name; *p; p++) /* a different stream per scenario */
        s->rng = s->rng * 31 + (uint8_t)*p;
    msg_buf_init(&s->buf);
    s->vcache = calloc(SIM_VCACHE_SLOTS, sizeof(*s->vcache));
    if (s->vcache == NULL) {
        free(s);
        return -1;
    }
    s->equiv_salt = splitmix64(&s->rng);

    struct pbft_config *cfg = &s->cfg;
    cfg->n = s->n;
    cfg->f = s->f;
    cfg->checkpoint_interval = 4;
    cfg->window = 16;
    cfg->batch_max_txs = 2;
    cfg->batch_timeout_ms = 5;
    cfg->max_inflight = 4;
    cfg->request_timeout_ms = 1000;
    cfg->retransmit_ms = 100;
    cfg->test_quorum_override = sc->quorum_override;
    cfg->test_skip_new_view_check = sc->skip_new_view_check;
    cfg->horizon_ahead = sc->horizon_ahead;
    tc_sha256((const uint8_t *)"sim-chain", 9, &s->chain_id);
    cfg->chain_id = s->chain_id;
    for (uint32_t j = 0; j < s->n; j++) {
        seed_key("replica", j, &s->rep[j].kp);
        cfg->replica_keys[j] = s->rep[j].kp.pk;
    }
    for (uint32_t c = 0; c < sc->clients; c++) {
        s->cl[c].idx = c;
        seed_key("client", c, &s->cl[c].kp);
    }
    for (uint32_t j = 0; j < s->n; j++) {
        struct sim_replica *r = &s->rep[j];
        r->sim = s;
        r->id = j;
        r->byzantine = (sc->equivocating_primary && j == 0) || (int)j == sc->lying_state_server ||
                       (sc->censor_client0 && j == 0) || (int)j == sc->lying_new_primary ||
                       (int)j == sc->fabricating_replica || (sc->bad_sig_primary && j == 0) ||
                       (int)j == sc->noisy_replica;
        r->down = (int)j == sc->crashed_replica;
        struct sim_ledger *l = &r->ledger;
        if (!grow((void **)&l->heads, &l->caph, 64, sizeof(tc_hash)) ||
            !grow((void **)&l->digests, &l->capd, 64, sizeof(tc_hash)))
            s->oom = true;
        model_genesis(s, l);
        r->core = replica_core(s, r);
        if (r->core == NULL)
            s->oom = true;
        ev_push(s, (struct sim_event){.t = rnd(s, SIM_TICK_MS), .kind = EV_TICK, .to = j});
    }
    for (uint32_t c = 0; c < sc->clients; c++)
        ev_push(s, (struct sim_event){.t = rnd(s, 10), .kind = EV_CLIENT, .to = s->n + c});
    if (sc->restart_replica >= 0) {
        ev_push(s, (struct sim_event){.t = sc->restart_down_ms,
                                      .kind = EV_CRASH,
                                      .to = (uint32_t)sc->restart_replica});
        ev_push(s, (struct sim_event){.t = sc->restart_up_ms,
                                      .kind = EV_RESTART,
                                      .to = (uint32_t)sc->restart_replica});
    }

    if (sc->group_size > 0 && sc->group_rounds > 0)
        group_arm_round(s, sc->group_from_ms);

    while (s->nheap > 0 && !s->oom && !res->violation) {
        struct sim_event ev = ev_pop(s);
        if (ev.t > sc->time_limit_ms) {
            free(ev.bytes);
            break;
        }
        s->now = ev.t;
        res->events++;
        switch (ev.kind) {
        case EV_DELIVER:
            if (ev.to < s->n) {
                if (!s->rep[ev.to].down) {
                    res->delivered++;
                    deliver_replica(s, &s->rep[ev.to], ev.bytes, ev.len);
                }
            } else {
                res->delivered++;
                deliver_client(s, &s->cl[ev.to - s->n], ev.bytes, ev.len);
            }
            break;
        case EV_TICK:
            if (!s->rep[ev.to].down) {
                pbft_on_tick(s->rep[ev.to].core, s->now);
                /* A state transfer ends at its target, even when the normal
                 * case got there first (a replica stuck "transferring" never
                 * suspects its primary). */
                struct pbft_status st;
                pbft_get_status(s->rep[ev.to].core, &st);
                if (!s->rep[ev.to].byzantine && st.state_transfer &&
                    st.last_executed >= st.state_target)
                    violation(s, "replica %u still in a state transfer at %llu, target %llu", ev.to,
                              (unsigned long long)st.last_executed,
                              (unsigned long long)st.state_target);
            }
            ev_push(s, (struct sim_event){.t = s->now + SIM_TICK_MS, .kind = EV_TICK, .to = ev.to});
            break;
        case EV_CLIENT:
            client_timer(s, &s->cl[ev.to - s->n], ev.token);
            break;
        case EV_CRASH:
            replica_crash(s, &s->rep[ev.to]);
            break;
        case EV_RESTART:
            replica_restart(s, &s->rep[ev.to]);
            if (ev.token == 1)
                group_restarted(s);
            break;
        }
        free(ev.bytes);
        for (uint32_t j = 0; j < s->n; j++) {
            struct sim_replica *r = &s->rep[j];
            if (r->synced_in_step && !r->down) {
                r->synced_height = r->ledger.height;
                recs_synced(r);
            }
            r->synced_in_step = false;
        }
        check_invariants(s);
        check_late_receipts(s, false);
        group_check(s);
        observe_memory(s);
        if (all_done(s)) {
            if (s->done_ms == 0)
                s->done_ms = s->now ? s->now : 1;
            if (s->now >= s->done_ms + sc->settle_ms)
                break;
        }
    }
    group_report(s);
    check_late_receipts(s, all_done(s));
    res->end_ms = s->now;
    res->live = !res->violation && all_done(s);
    if (!res->violation && !res->live && !s->oom) {
        uint32_t done = 0;
        for (uint32_t c = 0; c < sc->clients; c++)
            done += s->cl[c].receipted;
        char heights[128] = {0};
        size_t off = 0;
        for (uint32_t j = 0; j < s->n && off < sizeof(heights) - 24; j++)
            off += (size_t)snprintf(heights + off, sizeof(heights) - off, " r%u=%llu", j,
                                    (unsigned long long)s->rep[j].ledger.height);
        snprintf(res->what, sizeof(res->what),
                 "liveness: %u of %u requests receipted by t=%llums, heights%s", done,
                 sc->clients * sc->requests_per_client, (unsigned long long)s->now, heights);
    }

    int rc = s->oom ? -1 : 0;
    while (s->nheap > 0) {
        struct sim_event ev = ev_pop(s);
        free(ev.bytes);
    }
    free(s->heap);
    for (uint32_t a = 0; a < s->n; a++)
        for (uint32_t b = 0; b < s->n; b++) {
            link_clear(&s->held[a][b]);
            free(s->held[a][b].q);
        }
    for (uint32_t j = 0; j < s->n; j++) {
        struct sim_replica *r = &s->rep[j];
        pbft_destroy(r->core);
        tc_keypair_free(&r->kp);
        model_free(&r->ledger);
        free(r->certs);
        for (size_t i = 0; i < r->nrecs; i++)
            free(r->recs[i].bytes);
        free(r->recs);
        for (size_t i = 0; i < r->nundo; i++)
            free(r->undo[i].bytes);
        free(r->undo);
    }
    free(s->sent);
    for (uint32_t c = 0; c < sc->clients; c++)
        tc_keypair_free(&s->cl[c].kp);
    free(s->ref);
    free(s->vcache);
    msg_buf_free(&s->buf);
    free(s);
    return rc;
}

uint64_t sim_seed_count(uint64_t divisor)
{
    const char *e = getenv("SEEDS");
    uint64_t seeds = e && *e ? strtoull(e, NULL, 10) : 500;
    seeds = divisor ? seeds / divisor : seeds;
    return seeds ? seeds : 1;
}

bool sim_replay_seed(uint64_t *seed)
{
    const char *e = getenv("SIM_SEED");
    if (e == NULL || *e == 0)
        return false;
    *seed = strtoull(e, NULL, 10);
    return true;
}
