/* The replica shell: see replica.h. */
#include "src/replica.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ledger/block.h"
#include "ledger/ledger.h"
#include "src/log.h"
#include "src/mono.h"
#include "src/msg.h"
#include "src/pbft.h"
#include "src/statexfer.h"
#include "src/transport.h"
#include "src/verifier.h"

#define LOOP_QUEUE_MAX 8192      /* events waiting for a step */
#define LOOP_STEP_MAX 512        /* events handled in one step (one synced write) */
#define LOOP_TICK_MS 1           /* pbft_on_tick period while events come in ... */
#define LOOP_IDLE_TICK_MS 20     /* ... and once none came for this long */
#define LOOP_BACKUP_TICK_MS 5    /* a backup's period while events come in */
#define LOOP_BLOCK_SYNC_MS 10    /* a block written without an fsync gets one by then (+ a tick) */
#define PENDING_SLOTS (1u << 17) /* client requests awaiting execution */
#define PENDING_PROBE 32
#define PENDING_TTL_MS 60000
#define RECENT_BLOCKS 4096 /* block hashes kept for replies from the ledger */
#define SETTLED_SLOTS 256  /* seqs whose prepared view the verifier can see (replica_settled) */

/* A client request this replica saw and has not executed yet: where to reply. */
struct pending_slot {
    tc_hash h;
    uint32_t pipe;
    uint8_t used;
    uint64_t seen_ms;
};

/* A buffered send: to >= 0 a replica, PBFT_BROADCAST all, to_client a pipe. */
struct out_send {
    int to;
    uint32_t pipe;
    int to_client;
    size_t off, len;
};

struct reply_item {
    uint32_t pipe;
    uint32_t index;
};

/* A requested transaction found in the ledger. */
struct found_item {
    uint64_t height;
    uint32_t index; /* in the REQUEST */
    uint8_t result;
};

struct replica {
    const struct tally_config *cfg;
    uint32_t id;
    const tc_keypair *kp;
    struct msg_signer signer;
    struct ledger *ledger;
    struct pbft *core;
    struct transport *transport;
    struct verifier *verifier;

    /* event queue: verifier threads -> steps (see take_steps) */
    pthread_mutex_t lock;
    pthread_cond_t cond; /* wakes the loop thread */
    pthread_cond_t idle; /* stepping went false while stopping */
    struct verifier_event *q_head, *q_tail;
    size_t q_len;
    size_t q_loop_only; /* queued events only the loop thread steps */
    bool stopping;
    bool stepping;         /* a thread is taking steps */
    bool started;          /* reading threads may step (the loop thread is up) */
    bool loop_waiting;     /* the loop thread waits for a step to end */
    uint64_t next_tick_ms; /* when pbft_on_tick is due */
    bool backup;           /* not the primary of the view, as of the last step */

    /* What the verifier may drop unverified (replica_settled), under
     * settled_mtx: the highest seq executed, and per seq (mod the ring) the
     * view in which we became prepared (sent our COMMIT). */
    pthread_mutex_t settled_mtx;
    uint64_t settled_executed;
    struct {
        uint64_t seq, view;
    } settled_prepared[SETTLED_SLOTS];
    pthread_t loop;
    bool loop_started;

    /* stepping state: used by one thread at a time (whichever set stepping) */
    uint64_t last_event_ms;
    struct pending_slot *pending;
    struct out_send *sends;
    size_t nsends, sends_cap;
    struct msg_buf out_bytes; /* bytes of the buffered sends */
    struct msg_buf scratch;   /* encoding replies, queries */
    uint8_t *meta_buf;
    size_t meta_cap;
    bool staged;
    bool staged_sync;     /* ... and a staged record must be synced before the sends */
    uint64_t unsynced_ms; /* when a block went out without an fsync (0: none pending) */
    uint64_t persisted_hi, persisted_lo;
    /* The kernel's boot id (all zeros: unknown), stored with the HORIZON
     * record: restarted in the same boot, the replica lost no write. */
    uint8_t boot_id[REPLICA_BOOT_ID_BYTES];
    uint8_t *sig_ok;
    size_t sig_ok_cap;
    struct reply_item *items;
    size_t items_cap;
    struct msg_reply_entry *entries;
    struct found_item *found;
    size_t found_cap;
    struct msg_reply_entry *found_entries;
    size_t found_entries_cap;
    tc_hash recent[RECENT_BLOCKS];
    uint64_t recent_height[RECENT_BLOCKS];

    tc_hash chain_id;
    tc_pubkey keys[CONFIG_MAX_REPLICAS];
#ifdef TALLY_FAULTS
    const char *fault; /* $TALLY_FAULT */
#endif

    /* counters */
    atomic_uint_fast64_t blocks_transferred;
    atomic_uint_fast64_t blocks_executed, txs_executed, replies_sent, replies_from_ledger;
    atomic_bool failed;
    pthread_mutex_t fail_lock;
    struct tally_err fail_err;
};

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* The kernel's id of this boot (/proc/sys/kernel/random/boot_id, a UUID in
 * text); zeros when it cannot be read, which then matches no boot. */
static void read_boot_id(uint8_t out[REPLICA_BOOT_ID_BYTES])
{
    memset(out, 0, REPLICA_BOOT_ID_BYTES);
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f == NULL)
        return;
    char text[REPLICA_BOOT_ID_BYTES + 2] = {0};
    if (fgets(text, sizeof(text), f) == NULL || strlen(text) < REPLICA_BOOT_ID_BYTES)
        memset(text, 0, sizeof(text));
    fclose(f);
    memcpy(out, text, REPLICA_BOOT_ID_BYTES);
}

static void fail(struct replica *r, const struct tally_err *err, const char *what)
{
    pthread_mutex_lock(&r->fail_lock);
    if (!atomic_load(&r->failed)) {
        tally_errf(&r->fail_err, err->code, "%s: %s", what, tally_err_text(err));
        atomic_store(&r->failed, true);
    }
    pthread_mutex_unlock(&r->fail_lock);
    LOG_ERROR("L0501", "%s: %s", what, tally_err_text(err));
}

bool replica_failed(struct replica *r, struct tally_err *err)
{
    if (!atomic_load(&r->failed))
        return false;
    pthread_mutex_lock(&r->fail_lock);
    if (err != NULL)
        *err = r->fail_err;
    pthread_mutex_unlock(&r->fail_lock);
    return true;
}

/* ---- pending requests (tx hash -> client pipe) -------------------------- */

static size_t pending_home(const tc_hash *h)
{
    uint64_t x;
    memcpy(&x, h->b + 8, sizeof(x));
    return (size_t)(x & (PENDING_SLOTS - 1));
}

static struct pending_slot *pending_find(struct replica *r, const tc_hash *h)
{
    size_t home = pending_home(h);
    for (size_t i = 0; i < PENDING_PROBE; i++) {
        struct pending_slot *s = &r->pending[(home + i) & (PENDING_SLOTS - 1)];
        if (s->used && memcmp(s->h.b, h->b, TC_HASH_BYTES) == 0)
            return s;
    }
    return NULL;
}

/* Insert h (or find it). *fresh tells whether it was new. NULL when full. */
static struct pending_slot *pending_insert(struct replica *r, const tc_hash *h, uint64_t now,
                                           bool *fresh)
{
    struct pending_slot *s = pending_find(r, h);
    if (s != NULL) {
        *fresh = false;
        return s;
    }
    size_t home = pending_home(h);
    struct pending_slot *victim = NULL;
    for (size_t i = 0; i < PENDING_PROBE; i++) {
        struct pending_slot *c = &r->pending[(home + i) & (PENDING_SLOTS - 1)];
        if (!c->used) {
            victim = c;
            break;
        }
        if (now - c->seen_ms > PENDING_TTL_MS && (victim == NULL || c->seen_ms < victim->seen_ms))
            victim = c;
    }
    if (victim == NULL)
        return NULL;
    victim->h = *h;
    victim->used = 1;
    victim->seen_ms = now;
    *fresh = true;
    return victim;
}

/* ---- buffered sends ------------------------------------------------------ */

static void queue_send(struct replica *r, int to, int to_client, uint32_t pipe,
                       const uint8_t *bytes, size_t len)
{
    if (r->nsends == r->sends_cap) {
        size_t cap = r->sends_cap ? r->sends_cap * 2 : 256;
        struct out_send *n = realloc(r->sends, cap * sizeof(*n));
        if (n == NULL)
            return;
        r->sends = n;
        r->sends_cap = cap;
    }
    size_t off = r->out_bytes.len;
    if (r->out_bytes.cap - r->out_bytes.len < len) {
        size_t cap = r->out_bytes.cap ? r->out_bytes.cap : 65536;
        while (cap - r->out_bytes.len < len)
            cap *= 2;
        uint8_t *d = realloc(r->out_bytes.data, cap);
        if (d == NULL)
            return;
        r->out_bytes.data = d;
        r->out_bytes.cap = cap;
    }
    memcpy(r->out_bytes.data + off, bytes, len);
    r->out_bytes.len += len;
    r->sends[r->nsends++] =
        (struct out_send){.to = to, .to_client = to_client, .pipe = pipe, .off = off, .len = len};
}

static void flush_sends(struct replica *r)
{
    for (size_t i = 0; i < r->nsends; i++) {
        const struct out_send *s = &r->sends[i];
        const uint8_t *b = r->out_bytes.data + s->off;
        if (s->to_client)
            transport_send_client(r->transport, s->pipe, b, s->len);
        else if (s->to == PBFT_BROADCAST)
            transport_broadcast(r->transport, b, s->len);
        else if (s->to >= 0)
            transport_send_peer(r->transport, (uint32_t)s->to, b, s->len);
    }
    r->nsends = 0;
    r->out_bytes.len = 0;
}

/* ---- io for the core --------------------------------------------------- */

static void io_sign(void *ctx, const uint8_t *bytes, size_t len, tc_sig *out)
{
    struct replica *r = ctx;
    tc_sign(r->kp, bytes, len, out);
}

#ifdef TALLY_FAULTS
/* Fault injection, compiled only into build/tallyd-faulty for the end-to-end
 * tests: TALLY_FAULT=silent sends no protocol message at all;
 * TALLY_FAULT=equivocate makes a primary send f backups one batch and the
 * others a different (validly signed) one for the same sequence number. */
static bool fault_send(struct replica *r, int to, const uint8_t *bytes, size_t len)
{
    if (r->fault == NULL)
        return false;
    if (strcmp(r->fault, "silent") == 0)
        return true;
    if (strcmp(r->fault, "equivocate") != 0 || to != PBFT_BROADCAST || len < 5 ||
        bytes[4] != MSG_PRE_PREPARE)
        return false;
    struct msg m;
    struct tally_err err = {0};
    if (msg_decode(bytes, len, len, &m, &err) != 0 || m.u.pre_prepare.batch.count < 2)
        return false;
    /* The other story: the same batch without its last transaction. */
    struct msg_batch other = {.count = m.u.pre_prepare.batch.count - 1,
                              .tx_bytes = m.u.pre_prepare.batch.tx_bytes};
    struct msg_buf alt;
    msg_buf_init(&alt);
    bool ok = msg_encode_pre_prepare(&alt, r->id, m.u.pre_prepare.view, m.u.pre_prepare.seq, &other,
                                     &r->signer) == 0;
    for (uint32_t i = 0; ok && i < r->cfg->n; i++) {
        if (i == r->id)
            continue;
        /* f backups get one batch, the other 2f the other: neither gathers a
         * commit quorum with the primary, so the cluster stalls until a view
         * change replaces it. */
        uint32_t rank = i < r->id ? i + 1 : i; /* 1..n-1 among the backups */
        if (rank <= r->cfg->f)
            queue_send(r, (int)i, 0, 0, bytes, len);
        else
            queue_send(r, (int)i, 0, 0, alt.data, alt.len);
    }
    msg_buf_free(&alt);
    return ok;
}
#endif

static void io_send(void *ctx, int to, const uint8_t *bytes, size_t len)
{
    struct replica *r = ctx;
#ifdef TALLY_FAULTS
    if (fault_send(r, to, bytes, len))
        return;
#endif
    queue_send(r, to, 0, 0, bytes, len);
}

static int meta_reserve(struct replica *r, size_t need)
{
    if (r->meta_cap >= need)
        return 0;
    uint8_t *b = realloc(r->meta_buf, need);
    if (b == NULL)
        return TALLY_ENOMEM;
    r->meta_buf = b;
    r->meta_cap = need;
    return 0;
}

static void seq_key(uint8_t key[10], const char *prefix, uint64_t seq)
{
    key[0] = (uint8_t)prefix[0];
    key[1] = (uint8_t)prefix[1];
    put_be64(key + 2, seq);
}

/* The "pp", "pr" and "cm" records (docs/FORMAT.md) start with the view (u64)
 * and the digest; "pp" and a "cm" with signatures go on with a u32 (the
 * batch's count; the replicas whose PREPAREs are kept). */
#define REPLICA_REC_HEAD (8 + TC_HASH_BYTES)
#define REPLICA_REC_FIXED (REPLICA_REC_HEAD + 4)

/* A "pp" record's count when its batch is the ledger's block at seq. */
#define REPLICA_PP_IN_BLOCK UINT32_MAX

/* The parts of a "pp" record after its view and digest. */
struct pp_record {
    uint32_t count;          /* REPLICA_PP_IN_BLOCK: the batch is block seq */
    const uint8_t *tx_bytes; /* count transactions, or NULL */
    const uint8_t *sig;      /* the primary's signature, or NULL (not stored) */
};

/* false when v (len bytes) is not a well-formed "pp" record. */
static bool pp_record_parse(const uint8_t *v, size_t len, struct pp_record *out)
{
    if (len < REPLICA_REC_FIXED)
        return false;
    out->count = ledger_get_u32(v + REPLICA_REC_HEAD);
    out->tx_bytes = NULL;
    size_t body = REPLICA_REC_FIXED;
    if (out->count != REPLICA_PP_IN_BLOCK) {
        if (out->count > MSG_MAX_BATCH)
            return false;
        out->tx_bytes = v + REPLICA_REC_FIXED;
        body += (size_t)out->count * LEDGER_TX_BYTES;
    }
    if (len == body)
        out->sig = NULL;
    else if (len == body + TC_SIG_BYTES)
        out->sig = v + body;
    else
        return false;
    return true;
}

static int stage_u64(struct replica *r, const char *name, uint64_t v, struct tally_err *err)
{
    uint8_t b[8];
    put_be64(b, v);
    return ledger_stage_meta_put(r->ledger, name, strlen(name), b, sizeof(b), err);
}

static int block_hash_at(struct replica *r, uint64_t height, tc_hash *out);

/* ---- what the verifier may drop unverified --------------------------------- */

/* We became prepared for seq in view (we are sending our COMMIT): further
 * PREPAREs for it in that view change nothing. (Only our own step calls
 * this, before the COMMIT's synced write: if that fails, the replica stops.) */
static void settled_prepared(struct replica *r, uint64_t view, uint64_t seq)
{
    pthread_mutex_lock(&r->settled_mtx);
    r->settled_prepared[seq % SETTLED_SLOTS].seq = seq;
    r->settled_prepared[seq % SETTLED_SLOTS].view = view;
    pthread_mutex_unlock(&r->settled_mtx);
}

/* Blocks up to height are in the ledger: COMMITs for them change nothing. */
static void settled_executed(struct replica *r, uint64_t height)
{
    pthread_mutex_lock(&r->settled_mtx);
    if (height > r->settled_executed)
        r->settled_executed = height;
    pthread_mutex_unlock(&r->settled_mtx);
}

/* verifier_opts.settled, on a reading thread. A COMMIT at or below the
 * executed height is settled (whatever its view); a PREPARE only once we are
 * prepared for its seq in its view: after a view change the new view's
 * PREPAREs of an executed seq still make us send the COMMITs that a replica
 * which has not executed it needs. */
static bool replica_settled(void *ctx, const struct msg *m)
{
    struct replica *r = ctx;
    uint64_t view = m->u.phase.view, seq = m->u.phase.seq;
    pthread_mutex_lock(&r->settled_mtx);
    bool settled = m->type == MSG_COMMIT
                       ? seq <= r->settled_executed
                       : r->settled_prepared[seq % SETTLED_SLOTS].seq == seq &&
                             r->settled_prepared[seq % SETTLED_SLOTS].view == view && seq != 0;
    pthread_mutex_unlock(&r->settled_mtx);
    return settled;
}

/* A record stored as u64 view, u64 seq, then `extra` (ASSIGNED, HORIZON). */
static int stage_view_seq(struct replica *r, const char *key, const struct pbft_persist *rec,
                          const uint8_t *extra, size_t extra_len, struct tally_err *err)
{
    uint8_t v[16 + REPLICA_BOOT_ID_BYTES];
    put_be64(v, rec->view);
    put_be64(v + 8, rec->seq);
    if (extra_len > 0)
        memcpy(v + 16, extra, extra_len);
    return ledger_stage_meta_put(r->ledger, key, strlen(key), v, 16 + extra_len, err);
}

static int io_persist(void *ctx, const struct pbft_persist *rec)
{
    struct replica *r = ctx;
    struct tally_err err = {0};
    int rc = 0;
    uint8_t key[10];
    switch (rec->kind) {
    case PBFT_PERSIST_VIEW:
        rc = stage_u64(r, "view", rec->view, &err);
        if (rc == 0)
            rc = stage_u64(r, "vchg", rec->view_changing ? 1 : 0, &err);
        break;
    case PBFT_PERSIST_PREPREPARE:
    case PBFT_PERSIST_PREPARE:
    case PBFT_PERSIST_COMMIT: {
        const char *prefix = rec->kind == PBFT_PERSIST_PREPREPARE ? "pp"
                             : rec->kind == PBFT_PERSIST_PREPARE  ? "pr"
                                                                  : "cm";
        uint32_t count =
            rec->kind == PBFT_PERSIST_PREPREPARE && rec->batch != NULL ? rec->batch->count : 0;
        uint32_t nsigs = rec->kind == PBFT_PERSIST_COMMIT && rec->prepare_sigs != NULL
                             ? (uint32_t)__builtin_popcount(rec->prepare_from)
                             : 0;
        size_t len = REPLICA_REC_HEAD;
        if (rec->kind == PBFT_PERSIST_PREPREPARE)
            len = REPLICA_REC_FIXED + (size_t)count * LEDGER_TX_BYTES + TC_SIG_BYTES;
        if (nsigs > 0)
            len = REPLICA_REC_FIXED + (size_t)nsigs * TC_SIG_BYTES;
        if ((rc = meta_reserve(r, len)) != 0) {
            tally_errf(&err, rc, "out of memory");
            break;
        }
        put_be64(r->meta_buf, rec->view);
        memcpy(r->meta_buf + 8, rec->digest.b, TC_HASH_BYTES);
        if (rec->kind == PBFT_PERSIST_PREPREPARE) {
            /* view, digest, u32 count, txs, the primary's signature */
            uint8_t *at = r->meta_buf + REPLICA_REC_FIXED;
            ledger_put_u32(r->meta_buf + REPLICA_REC_HEAD, count);
            if (count > 0)
                memcpy(at, rec->batch->tx_bytes, (size_t)count * LEDGER_TX_BYTES);
            memcpy(at + (size_t)count * LEDGER_TX_BYTES, rec->sig.b, TC_SIG_BYTES);
        }
        if (nsigs > 0) {
            /* COMMIT: view, digest, u32 prepare_from, its signatures in replica order */
            ledger_put_u32(r->meta_buf + REPLICA_REC_HEAD, rec->prepare_from);
            uint8_t *at = r->meta_buf + REPLICA_REC_FIXED;
            for (uint32_t i = 0; i < PBFT_MAX_REPLICAS; i++)
                if (rec->prepare_from & (1u << i)) {
                    memcpy(at, rec->prepare_sigs[i].b, TC_SIG_BYTES);
                    at += TC_SIG_BYTES;
                }
        }
        if (rec->kind == PBFT_PERSIST_COMMIT)
            settled_prepared(r, rec->view, rec->seq);
        seq_key(key, prefix, rec->seq);
        rc = ledger_stage_meta_put(r->ledger, key, sizeof(key), r->meta_buf, len, &err);
        if (rc == 0 && rec->seq > r->persisted_hi) {
            r->persisted_hi = rec->seq;
            rc = stage_u64(r, "hi", rec->seq, &err);
        }
        break;
    }
    case PBFT_PERSIST_CHECKPOINT: {
        /* Before storing a certificate, check it names our own block: a
         * quorum that certifies another state than ours means this ledger
         * is not the cluster's, and it must not go on serving it. */
        tc_hash mine;
        const struct ledger_ckpt *ck = &rec->cert->ck;
        rc = block_hash_at(r, ck->height, &mine);
        if (rc != 0) {
            tally_errf(&err, rc, "no block %llu for checkpoint certificate",
                       (unsigned long long)ck->height);
            break;
        }
        if (memcmp(mine.b, ck->block_hash.b, TC_HASH_BYTES) != 0) {
            rc = tally_errf(&err, TALLY_EMISMATCH,
                            "2f+1 replicas certify block %llu with another hash than ours: this "
                            "data directory diverged; rebuild it (state transfer)",
                            (unsigned long long)ck->height);
            break;
        }
        rc = ledger_stage_cert(r->ledger, rec->cert, &err);
        LOG_INFO("L0511", "checkpoint %llu stable (%u signatures)", (unsigned long long)ck->height,
                 rec->cert->count);
        break;
    }
    case PBFT_PERSIST_ASSIGNED:
        rc = stage_view_seq(r, "as", rec, NULL, 0, &err);
        break;
    case PBFT_PERSIST_HORIZON:
        rc = stage_view_seq(r, "hz", rec, r->boot_id, REPLICA_BOOT_ID_BYTES, &err);
        break;
    case PBFT_PERSIST_DISCARD_LOG: {
        static const char *const prefixes[] = {"pp", "pr", "cm"};
        uint8_t begin[10], end[10];
        for (size_t i = 0; i < 3 && rc == 0; i++) {
            seq_key(begin, prefixes[i], 0);
            seq_key(end, prefixes[i], rec->seq + 1);
            rc = ledger_stage_meta_delete_range(r->ledger, begin, sizeof(begin), end, sizeof(end),
                                                &err);
        }
        if (rc == 0 && rec->seq > r->persisted_lo) {
            r->persisted_lo = rec->seq;
            rc = stage_u64(r, "lo", rec->seq, &err);
        }
        break;
    }
    default:
        return TALLY_EINVAL;
    }
    if (rc != 0) {
        fail(r, &err, "persisting protocol state");
        return rc;
    }
    r->staged = true;
    if (!rec->deferrable)
        r->staged_sync = true;
    return 0;
}

/* ---- replies ------------------------------------------------------------- */

static void remember_block(struct replica *r, uint64_t height, const tc_hash *h)
{
    r->recent[height % RECENT_BLOCKS] = *h;
    r->recent_height[height % RECENT_BLOCKS] = height;
}

/* The header of the stored block at height (TALLY_ENOTFOUND: none). */
static int block_header_at(struct replica *r, uint64_t height, struct ledger_block_header *out,
                           struct tally_err *err)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    bool found = false;
    int rc = ledger_get_block(r->ledger, height, &bytes, &len, &found, err);
    if (rc == 0 && !found)
        rc = TALLY_ENOTFOUND;
    if (rc == 0)
        rc = ledger_block_header_decode(bytes, len, out);
    free(bytes);
    return rc;
}

static int block_hash_at(struct replica *r, uint64_t height, tc_hash *out)
{
    if (r->recent_height[height % RECENT_BLOCKS] == height && height != 0) {
        *out = r->recent[height % RECENT_BLOCKS];
        return 0;
    }
    struct ledger_block_header hdr;
    struct tally_err err = {0};
    int rc = block_header_at(r, height, &hdr, &err);
    if (rc == 0) {
        ledger_block_header_hash(&hdr, out);
        remember_block(r, height, out);
    }
    return rc;
}

static void send_reply(struct replica *r, uint32_t pipe, uint64_t view, uint64_t height,
                       const tc_hash *block_hash, const struct msg_reply_entry *entries,
                       uint32_t count)
{
    msg_buf_reset(&r->scratch);
    if (msg_encode_reply(&r->scratch, r->id, view, height, block_hash, entries, count,
                         &r->signer) != 0)
        return;
    queue_send(r, -1, 1, pipe, r->scratch.data, r->scratch.len);
    atomic_fetch_add(&r->replies_sent, 1);
}

static int cmp_item(const void *a, const void *b)
{
    const struct reply_item *x = a, *y = b;
    if (x->pipe != y->pipe)
        return x->pipe < y->pipe ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (*cap >= need)
        return 0;
    size_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    void *n = realloc(*p, c * elem);
    if (n == NULL)
        return TALLY_ENOMEM;
    *p = n;
    *cap = c;
    return 0;
}

/* Block seq is in the ledger: its "pp" record need not hold the batch a
 * second time. The full record is replaced by one naming the block, staged
 * without a write of its own (it rides along with the next one; a stop or a
 * crash before that leaves the full record, which is as good). Both versions
 * are then mostly in the same memtable, so a flush writes only the short one
 * (a 60 s full-load run leaves 134 MB of SST files instead of 236;
 * BENCHMARKS.md, "Ninth pass"). Only for seq above the discarded log: a put
 * staged after the checkpoint's range deletion would outlive it. */
static void slim_pre_prepare(struct replica *r, uint64_t seq)
{
    if (seq <= r->persisted_lo)
        return;
    uint8_t key[10];
    seq_key(key, "pp", seq);
    void *val = NULL;
    size_t len = 0;
    bool found = false;
    struct tally_err err = {0};
    if (ledger_get_meta(r->ledger, key, sizeof(key), &val, &len, &found, &err) != 0 || !found)
        goto out;
    struct pp_record pp;
    if (!pp_record_parse(val, len, &pp))
        goto out; /* the restore will say what is wrong with it */
    if (pp.count == REPLICA_PP_IN_BLOCK)
        goto out; /* slim already */
    uint8_t slim[REPLICA_REC_FIXED + TC_SIG_BYTES];
    size_t slim_len = REPLICA_REC_FIXED;
    memcpy(slim, val, REPLICA_REC_HEAD); /* view, digest */
    ledger_put_u32(slim + REPLICA_REC_HEAD, REPLICA_PP_IN_BLOCK);
    if (pp.sig != NULL) {
        memcpy(slim + REPLICA_REC_FIXED, pp.sig, TC_SIG_BYTES);
        slim_len += TC_SIG_BYTES;
    }
    (void)ledger_stage_meta_put(r->ledger, key, sizeof(key), slim, slim_len, &err);
out:
    free(val);
}

static void io_execute(void *ctx, uint64_t view, uint64_t seq, const struct msg_batch *batch,
                       const tc_hash *tx_hashes, struct pbft_exec_result *out)
{
    struct replica *r = ctx;
    struct tally_err err = {0};
    if (atomic_load(&r->failed))
        return;
    uint64_t height = ledger_height(r->ledger);
    if (seq <= height) {
        LOG_DEBUG("L0502", "batch %llu already in the ledger (height %llu)",
                  (unsigned long long)seq, (unsigned long long)height);
        return;
    }
    uint32_t n = batch->count;
    size_t cap = r->sig_ok_cap;
    if (grow((void **)&r->sig_ok, &cap, n + 1, 1) != 0) {
        tally_errf(&err, TALLY_ENOMEM, "out of memory");
        fail(r, &err, "executing a batch");
        return;
    }
    r->sig_ok_cap = cap;
    /* Staged records that need no fsync go out first, on their own: with them
     * in its WriteBatch the block would be synced. */
    if (r->staged && !r->staged_sync) {
        if (ledger_meta_flush_unsynced(r->ledger, &err) != 0) {
            fail(r, &err, "writing protocol state");
            return;
        }
        r->staged = false;
    }
    for (uint32_t i = 0; i < n; i++)
        r->sig_ok[i] = (uint8_t)verifier_tx_sig_ok(
            r->verifier, batch->tx_bytes + (size_t)i * LEDGER_TX_BYTES, &tx_hashes[i]);
    struct ledger_block_result res;
    int rc = ledger_apply_block_verified(r->ledger, seq, batch->tx_bytes, n, r->sig_ok, &res, &err);
    if (rc != 0) {
        char what[64];
        snprintf(what, sizeof(what), "applying block %llu", (unsigned long long)seq);
        fail(r, &err, what);
        return;
    }
    r->staged = r->staged_sync = false; /* staged promises rode along in the block's WriteBatch */
    slim_pre_prepare(r, seq);
    out->block_hash = res.block_hash;
    out->state_digest = res.state_digest;
    remember_block(r, res.height, &res.block_hash);
    settled_executed(r, res.height);
    atomic_fetch_add(&r->blocks_executed, 1);
    atomic_fetch_add(&r->txs_executed, n);
    LOG_DEBUG("L0503", "v%llu s%llu executed %u txs", (unsigned long long)view,
              (unsigned long long)seq, n);

    /* Group the results by the client connection that submitted them. */
    cap = r->items_cap;
    if (n == 0 || grow((void **)&r->items, &cap, n, sizeof(*r->items)) != 0)
        return;
    r->items_cap = cap;
    free(r->entries);
    r->entries = malloc((size_t)n * sizeof(*r->entries));
    if (r->entries == NULL)
        return;
    size_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (res.results[i] == LEDGER_RESULT_DUPLICATE)
            continue; /* the first occurrence answers */
        struct pending_slot *s = pending_find(r, &res.tx_hashes[i]);
        if (s == NULL)
            continue; /* nobody asked here: a retry will be answered from the ledger */
        r->items[k++] = (struct reply_item){.pipe = s->pipe, .index = i};
        s->used = 0;
    }
    qsort(r->items, k, sizeof(*r->items), cmp_item);
    for (size_t a = 0; a < k;) {
        size_t b = a;
        uint32_t cnt = 0;
        while (b < k && r->items[b].pipe == r->items[a].pipe && cnt < MSG_MAX_BATCH) {
            uint32_t i = r->items[b].index;
            r->entries[cnt].tx_hash = res.tx_hashes[i];
            r->entries[cnt].result = res.results[i];
            cnt++;
            b++;
        }
        send_reply(r, r->items[a].pipe, view, res.height, &res.block_hash, r->entries, cnt);
        a = b;
    }
}

/* ---- state transfer (src/state_transfer.c decides, src/statexfer.h codec) -- */

/* Serve blocks from `from` up to the lowest certified checkpoint at or above
 * it: complete blocks while they fit in a message, headers for the rest. */
static int io_state_read(void *ctx, uint64_t from, uint64_t to, struct msg_buf *out)
{
    (void)to;
    struct replica *r = ctx;
    struct tally_err err = {0};
    struct ledger_cert cert;
    bool found = false;
    int rc = ledger_find_cert_from(r->ledger, from, &cert, &found, &err);
    if (rc != 0 || !found || cert.ck.height > ledger_height(r->ledger))
        return rc != 0 ? rc : TALLY_ENOTFOUND;
    size_t max = r->cfg->max_message_bytes - 1024; /* envelope and STATE-RESP header */
    struct stx_writer w;
    if ((rc = stx_writer_begin(&w, max, &cert, from)) != 0)
        goto done;
    bool headers_only = false;
    for (uint64_t h = from; h <= cert.ck.height && rc == 0; h++) {
        uint8_t *bytes = NULL;
        size_t len = 0;
        bool have = false;
        rc = ledger_get_block(r->ledger, h, &bytes, &len, &have, &err);
        if (rc == 0 && (!have || len < LEDGER_BLOCK_HEADER_BYTES))
            rc = TALLY_ENOTFOUND;
        if (rc == 0 && !headers_only) {
            rc = stx_writer_add_block(&w, bytes, len);
            if (rc == TALLY_ETOOBIG && w.nblocks > 0) {
                headers_only = true; /* the rest as headers: the next chunk brings them */
                rc = 0;
            } else {
                free(bytes);
                continue;
            }
        }
        if (rc == 0)
            rc = stx_writer_add_header(&w, bytes);
        free(bytes);
    }
    if (rc == 0) {
        stx_writer_finish(&w);
        msg_buf_reset(out);
        if (out->cap < w.len) {
            uint8_t *d = realloc(out->data, w.len);
            if (d == NULL)
                rc = TALLY_ENOMEM;
            else {
                out->data = d;
                out->cap = w.len;
            }
        }
        if (rc == 0) {
            memcpy(out->data, w.buf, w.len);
            out->len = w.len;
        }
    }
done:
    stx_writer_free(&w);
    if (rc != 0)
        LOG_DEBUG("L0512", "cannot serve state from %llu: %s", (unsigned long long)from,
                  tally_strerror(rc));
    return rc;
}

/* Verify a chunk completely, then apply its complete blocks. */
static int io_state_install(void *ctx, const uint8_t *bytes, size_t len,
                            struct pbft_install_result *out)
{
    struct replica *r = ctx;
    struct tally_err err = {0};
    struct stx_chunk c;
    tc_hash head;
    ledger_head_hash(r->ledger, &head);
    uint64_t height = ledger_height(r->ledger);
    int rc = stx_decode(bytes, len, &c, &err);
    if (rc == 0)
        rc = stx_verify(&c, &r->chain_id, r->keys, r->cfg->n, config_quorum(r->cfg), height, &head,
                        &err);
    if (rc != 0) {
        LOG_WARN("L0513", "state chunk rejected: %s", tally_err_text(&err));
        return rc;
    }
    for (uint32_t i = 0; i < c.nblocks; i++) {
        struct ledger_block b;
        if ((rc = stx_block(&c, i, &b, &err)) != 0)
            break;
        size_t cap = r->sig_ok_cap;
        if (grow((void **)&r->sig_ok, &cap, b.h.tx_count + 1, 1) != 0) {
            rc = tally_errf(&err, TALLY_ENOMEM, "out of memory");
            break;
        }
        r->sig_ok_cap = cap;
        for (uint32_t k = 0; k < b.h.tx_count; k++) {
            const uint8_t *tx = b.items + (size_t)k * LEDGER_TX_BYTES;
            tc_hash h;
            ledger_tx_hash_bytes(tx, &h);
            r->sig_ok[k] = (uint8_t)verifier_tx_sig_ok(r->verifier, tx, &h);
        }
        if (b.h.height == c.cert.ck.height &&
            (rc = ledger_stage_cert(r->ledger, &c.cert, &err)) != 0)
            break;
        struct ledger_block_result res;
        rc = ledger_apply_block_verified(r->ledger, b.h.height, b.items, b.h.tx_count, r->sig_ok,
                                         &res, &err);
        if (rc != 0)
            break;
        r->staged = false;
        tc_hash want;
        ledger_block_header_hash(&b.h, &want);
        if (memcmp(want.b, res.block_hash.b, TC_HASH_BYTES) != 0) {
            rc = tally_errf(&err, TALLY_EMISMATCH,
                            "re-executing certified block %llu gave another block: this "
                            "replica's execution diverges",
                            (unsigned long long)b.h.height);
            fail(r, &err, "state transfer");
            return rc;
        }
        remember_block(r, res.height, &res.block_hash);
        settled_executed(r, res.height);
        atomic_fetch_add(&r->blocks_executed, 1);
        atomic_fetch_add(&r->txs_executed, b.h.tx_count);
        atomic_fetch_add(&r->blocks_transferred, 1);
    }
    if (rc != 0) {
        fail(r, &err, "applying a state chunk");
        return rc;
    }
    out->height = ledger_height(r->ledger);
    out->certified = out->height == c.cert.ck.height;
    out->ck = c.cert.ck;
    out->cert = c.cert;
    LOG_INFO("L0514", "state transfer: applied blocks %llu..%llu%s", (unsigned long long)c.first,
             (unsigned long long)out->height, out->certified ? " (certified checkpoint)" : "");
    return 0;
}

/* ---- events ------------------------------------------------------------- */

static int cmp_found(const void *a, const void *b)
{
    const struct found_item *x = a, *y = b;
    if (x->height != y->height)
        return x->height < y->height ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Transactions of one REQUEST that are already in the ledger: one REPLY per
 * block they are in (a late or retried request costs one signature per
 * block, not per transaction). Height 0 holds those rejected before ordering
 * (bad signature), answered with a zero block hash. */
static void reply_from_ledger(struct replica *r, const struct verifier_event *ev, size_t nfound,
                              uint64_t view)
{
    qsort(r->found, nfound, sizeof(*r->found), cmp_found);
    size_t cap = r->found_entries_cap;
    if (grow((void **)&r->found_entries, &cap, nfound, sizeof(*r->found_entries)) != 0)
        return;
    r->found_entries_cap = cap;
    for (size_t a = 0; a < nfound;) {
        size_t b = a;
        uint32_t cnt = 0;
        while (b < nfound && r->found[b].height == r->found[a].height && cnt < MSG_MAX_BATCH) {
            r->found_entries[cnt].tx_hash = ev->hashes[r->found[b].index];
            r->found_entries[cnt].result = r->found[b].result;
            cnt++;
            b++;
        }
        tc_hash bh;
        memset(bh.b, 0, sizeof(bh.b)); /* height 0: rejected before ordering */
        if (r->found[a].height == 0 || block_hash_at(r, r->found[a].height, &bh) == 0) {
            send_reply(r, ev->pipe, view, r->found[a].height, &bh, r->found_entries, cnt);
            atomic_fetch_add(&r->replies_from_ledger, 1);
        }
        a = b;
    }
}

static void handle_request(struct replica *r, const struct verifier_event *ev, uint64_t now)
{
    const struct msg_batch *b = &ev->m.u.request;
    size_t cap = r->found_cap, nfound = 0;
    if (grow((void **)&r->found, &cap, b->count, sizeof(*r->found)) != 0)
        return;
    r->found_cap = cap;
    for (uint32_t i = 0; i < b->count; i++) {
        const tc_hash *h = &ev->hashes[i];
        uint64_t height = 0;
        uint8_t result = 0;
        bool found = false;
        struct tally_err err = {0};
        if (ledger_get_tx(r->ledger, h, &height, NULL, &result, &found, &err) != 0) {
            LOG_WARN("L0504", "looking up a transaction: %s", tally_err_text(&err));
            continue;
        }
        if (found) {
            /* Executed before: answer with the stored result, do not re-order. */
            r->found[nfound++] =
                (struct found_item){.height = height, .index = i, .result = result};
            continue;
        }
        if (!ev->sig_ok[i]) {
            /* Not signed by its sender: never ordered, never stored (anyone
             * could fill the ledger otherwise). The client still gets an
             * answer it can trust from f+1 replicas: rejected, at height 0. */
            r->found[nfound++] =
                (struct found_item){.height = 0, .index = i, .result = LEDGER_RESULT_BAD_SIGNATURE};
            continue;
        }
        bool fresh = false;
        struct pending_slot *s = pending_insert(r, h, now, &fresh);
        if (s == NULL) {
            verifier_count_queue_full(r->verifier);
            continue;
        }
        s->pipe = ev->pipe;
        if (!fresh && now - s->seen_ms < r->cfg->request_timeout_ms)
            continue; /* already with the core */
        s->seen_ms = now;
        struct ledger_tx tx;
        if (ledger_tx_decode(b->tx_bytes + (size_t)i * LEDGER_TX_BYTES, LEDGER_TX_BYTES, &tx) != 0)
            continue;
        pbft_on_request(r->core, &tx, h, now);
    }
    if (nfound > 0)
        reply_from_ledger(r, ev, nfound, pbft_view(r->core));
}

static void handle_query(struct replica *r, const struct verifier_event *ev)
{
    const struct msg *m = &ev->m;
    struct tally_err err = {0};
    uint8_t found = 0, c = 0;
    uint64_t a = 0, b = 0;
    if (m->u.query.kind == MSG_QUERY_BALANCE) {
        struct ledger_account acct;
        bool f = false;
        tc_pubkey pk;
        memcpy(pk.b, m->u.query.key, TC_PUBKEY_BYTES);
        if (ledger_get_account(r->ledger, &pk, &acct, &f, &err) != 0) {
            LOG_WARN("L0505", "balance query: %s", tally_err_text(&err));
            return;
        }
        found = f;
        a = acct.balance;
        b = acct.nonce;
    } else if (m->u.query.kind == MSG_QUERY_TX) {
        tc_hash h;
        memcpy(h.b, m->u.query.key, TC_HASH_BYTES);
        uint32_t index = 0;
        bool f = false;
        if (ledger_get_tx(r->ledger, &h, &a, &index, &c, &f, &err) != 0) {
            LOG_WARN("L0506", "tx query: %s", tally_err_text(&err));
            return;
        }
        found = f;
        b = index;
    } else {
        return;
    }
    msg_buf_reset(&r->scratch);
    if (msg_encode_query_reply(&r->scratch, r->id, m->u.query.kind, m->u.query.request_id,
                               m->u.query.key, found, ledger_height(r->ledger), a, b, c,
                               &r->signer) == 0)
        queue_send(r, -1, 1, ev->pipe, r->scratch.data, r->scratch.len);
}

static void handle_status(struct replica *r, const struct verifier_event *ev)
{
    struct pbft_status st;
    pbft_get_status(r->core, &st);
    struct verifier_stats vs;
    verifier_get_stats(r->verifier, &vs);
    struct transport_stats ts;
    transport_get_stats(r->transport, &ts);
    tc_hash head;
    ledger_head_hash(r->ledger, &head);
    char head_hex[2 * TC_HASH_BYTES + 1];
    tc_hex_encode(head.b, TC_HASH_BYTES, head_hex);
    json_t *peers = json_array();
    for (uint32_t i = 0; i < r->cfg->n; i++)
        json_array_append_new(
            peers,
            i == r->id ? json_true() : json_boolean(transport_peer_is_connected(r->transport, i)));
    json_t *o = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o,"
        " s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I},"
        " s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:{s:I, s:s}}",
        "id", (json_int_t)r->id, "view", (json_int_t)st.view, "primary", (json_int_t)st.primary,
        "last_executed", (json_int_t)st.last_executed, "last_stable_checkpoint",
        (json_int_t)st.last_stable_checkpoint, "low_watermark", (json_int_t)st.low_watermark,
        "high_watermark", (json_int_t)st.high_watermark, "queued_requests",
        (json_int_t)st.queued_requests, "peers_connected",
        (json_int_t)transport_peers_connected(r->transport), "peers", peers, "dropped",
        "bad_signature", (json_int_t)vs.bad_signature, "unknown_sender",
        (json_int_t)vs.unknown_sender, "oversized", (json_int_t)vs.oversized, "malformed",
        (json_int_t)vs.malformed, "queue_full", (json_int_t)vs.queue_full, "core_dropped",
        (json_int_t)st.dropped_messages, "tx_bad_signature", (json_int_t)vs.tx_bad_signature,
        "peer_send", (json_int_t)ts.peer_send_dropped, "client_send",
        (json_int_t)ts.client_send_dropped, "peer_connections_closed", (json_int_t)ts.peer_closed,
        "client_connections_closed", (json_int_t)ts.client_closed, "peer_bad_frames",
        (json_int_t)ts.peer_bad_frames, "client_bad_frames", (json_int_t)ts.client_bad_frames,
        "client_paused", (json_int_t)ts.client_paused, "counters", "blocks_executed",
        (json_int_t)atomic_load(&r->blocks_executed), "txs_executed",
        (json_int_t)atomic_load(&r->txs_executed), "replies_sent",
        (json_int_t)atomic_load(&r->replies_sent), "replies_from_ledger",
        (json_int_t)atomic_load(&r->replies_from_ledger), "tx_verified", (json_int_t)vs.tx_verified,
        "tx_cache_hits", (json_int_t)vs.tx_cache_hits, "settled_unverified",
        (json_int_t)vs.settled_unverified, "peer_received", (json_int_t)ts.peer_received,
        "client_received", (json_int_t)ts.client_received, "ledger", "height",
        (json_int_t)ledger_height(r->ledger), "head_hash", head_hex);
    if (o != NULL)
        json_object_set_new(
            o, "checkpoints",
            json_pack(
                "{s:I, s:I, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "stable",
                (json_int_t)st.last_stable_checkpoint, "stable_count",
                (json_int_t)st.checkpoints_stable, "state_transfer", st.state_transfer,
                "state_target", (json_int_t)st.state_target, "state_chunks",
                (json_int_t)st.state_chunks, "state_bad_chunks", (json_int_t)st.state_bad_chunks,
                "blocks_transferred", (json_int_t)atomic_load(&r->blocks_transferred), "log_slots",
                (json_int_t)st.log_slots_used, "checkpoint_votes", (json_int_t)st.checkpoint_votes,
                "protocol_log_span",
                (json_int_t)(r->persisted_hi > r->persisted_lo ? r->persisted_hi - r->persisted_lo
                                                               : 0)));
    if (o != NULL)
        json_object_set_new(o, "view_change",
                            json_pack("{s:b, s:I, s:I}", "view_active", st.view_active,
                                      "views_changed", (json_int_t)st.views_changed, "timeout_ms",
                                      (json_int_t)st.view_timeout_ms));
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text == NULL)
        return;
    msg_buf_reset(&r->scratch);
    if (msg_encode_status_reply(&r->scratch, r->id, text, strlen(text), &r->signer) == 0)
        queue_send(r, -1, 1, ev->pipe, r->scratch.data, r->scratch.len);
    free(text);
}

static void handle_event(struct replica *r, struct verifier_event *ev, uint64_t now)
{
    switch (ev->kind) {
    case VERIFIER_EV_PEER:
        pbft_on_message(r->core, &ev->m, now);
        break;
    case VERIFIER_EV_REQUEST:
        handle_request(r, ev, now);
        break;
    case VERIFIER_EV_QUERY:
        handle_query(r, ev);
        break;
    case VERIFIER_EV_STATUS:
        handle_status(r, ev);
        break;
    }
}

static void take_steps(struct replica *r, bool loop_thread);

/* State transfer and view changes can take long steps (installing blocks,
 * checking certificates): those are the loop thread's, never a reading
 * thread's. */
static bool loop_only(const struct verifier_event *ev)
{
    return ev->kind == VERIFIER_EV_PEER &&
           (ev->m.type == MSG_STATE_REQ || ev->m.type == MSG_STATE_RESP ||
            ev->m.type == MSG_VIEW_CHANGE || ev->m.type == MSG_NEW_VIEW);
}

/* Queue ev for a step. The normal case's messages from peers are stepped on
 * the thread that read and verified them, once the read's frames are all
 * queued (step_after_peer_read), unless a thread is stepping already: the
 * loop thread's wake-up was one of the three thread hand-offs each protocol
 * message cost between the socket and the core (BENCHMARKS.md, "Eighth
 * pass"). Everything else wakes the loop thread: client messages come from
 * the client threads, which have verifying to do, and loop_only ones;
 * except a REQUEST at a backup while traffic flows, which the primary
 * orders: it goes with the next step, a peer message's or the tick's, at
 * most LOOP_BACKUP_TICK_MS later (a wake-up fewer per request; a backup's
 * answer from the ledger to a retried tx, or its rejection of a bad
 * signature, may come that much later). */
static int deliver_event(void *ctx, struct verifier_event *ev)
{
    struct replica *r = ctx;
    pthread_mutex_lock(&r->lock);
    if (r->q_len >= LOOP_QUEUE_MAX || r->stopping) {
        pthread_mutex_unlock(&r->lock);
        return -1;
    }
    bool only_loop = loop_only(ev);
    /* Stepped by the thread that read it, once its read's frames are in. */
    bool normal_case = (ev->kind == VERIFIER_EV_PEER && !only_loop) || ev->read_here;
    if (only_loop)
        r->q_loop_only++;
    ev->next = NULL;
    if (r->q_tail != NULL)
        r->q_tail->next = ev;
    else
        r->q_head = ev;
    r->q_tail = ev;
    r->q_len++;
    bool backup_request = ev->kind == VERIFIER_EV_REQUEST && r->backup &&
                          r->next_tick_ms <= mono_now_ms() + LOOP_BACKUP_TICK_MS;
    if (!r->stepping && !(normal_case && r->started) && !backup_request)
        pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

static void step_after_peer_read(void *ctx)
{
    struct replica *r = ctx;
    pthread_mutex_lock(&r->lock);
    if (r->stepping || !r->started || r->stopping || r->q_head == NULL || r->q_loop_only > 0) {
        pthread_mutex_unlock(&r->lock);
        return; /* a stepping thread takes it, or the loop thread was woken */
    }
    r->stepping = true;
    take_steps(r, false);
}

static bool on_recv(void *ctx, enum transport_origin origin, uint32_t pipe, nng_msg *msg)
{
    struct replica *r = ctx;
    return verifier_process(r->verifier, origin, pipe, msg) == VERIFIER_KEEP;
}

/* End of a step: make the promises durable, then let the sends go; then
 * sync a block that went out without an fsync (its replies already left:
 * a block needs none before them, docs/PROTOCOL.md) once no synced write
 * has covered it for LOOP_BLOCK_SYNC_MS, i.e. when traffic stopped. */
static void end_step(struct replica *r, uint64_t now)
{
    if (r->staged) {
        struct tally_err err = {0};
        int rc = r->staged_sync ? ledger_meta_flush(r->ledger, &err)
                                : ledger_meta_flush_unsynced(r->ledger, &err);
        if (rc != 0) {
            fail(r, &err, "writing protocol state");
            r->nsends = 0;
            r->out_bytes.len = 0;
            return;
        }
        r->staged = r->staged_sync = false;
    }
    if (atomic_load(&r->failed)) {
        r->nsends = 0;
        r->out_bytes.len = 0;
        return;
    }
    flush_sends(r);
    if (!ledger_unsynced(r->ledger)) {
        r->unsynced_ms = 0;
    } else if (r->unsynced_ms == 0) {
        r->unsynced_ms = now;
    } else if (now - r->unsynced_ms >= LOOP_BLOCK_SYNC_MS) {
        struct tally_err err = {0};
        if (ledger_sync(r->ledger, &err) != 0)
            fail(r, &err, "syncing executed blocks");
        r->unsynced_ms = 0;
    }
}

/* Under r->lock, with r->stepping just set by the caller: take steps (each:
 * up to LOOP_STEP_MAX queued events and the tick if it is due, then end_step)
 * until nothing is left to do. Another thread than the loop thread takes at
 * most one, and none while a loop_only event is queued, so that the
 * connection it reads is not held up; what it leaves goes to the loop thread.
 * Clears stepping and returns with the lock released. */
static void take_steps(struct replica *r, bool loop_thread)
{
    for (unsigned n = 0;; n++) {
        if (r->stopping)
            break;
        uint64_t now = mono_now_ms();
        bool tick = now >= r->next_tick_ms;
        if (r->q_head == NULL && !tick)
            break;
        if (!loop_thread && (n == 1 || r->q_loop_only > 0)) {
            pthread_cond_signal(&r->cond); /* the rest is the loop thread's */
            break;
        }
        struct verifier_event *batch = r->q_head, *last = NULL;
        size_t taken = 0;
        for (struct verifier_event *e = batch; e != NULL && taken < LOOP_STEP_MAX; e = e->next) {
            last = e;
            taken++;
            if (loop_only(e))
                r->q_loop_only--;
        }
        if (last != NULL) {
            r->q_head = last->next;
            if (r->q_head == NULL)
                r->q_tail = NULL;
            last->next = NULL;
            r->q_len -= taken;
        }
        uint64_t next_tick = r->next_tick_ms;
        pthread_mutex_unlock(&r->lock);

        if (batch != NULL)
            r->last_event_ms = now;
        while (batch != NULL) {
            struct verifier_event *next = batch->next;
            if (!atomic_load(&r->failed))
                handle_event(r, batch, now);
            verifier_event_free(batch);
            batch = next;
        }
        /* The core's timers need a 1 ms tick only on the primary (its batch
         * timeout) and only while there is traffic. A backup's are coarser
         * (at the defaults: retransmission every 250 ms, view-change and
         * state-transfer timeouts of seconds), and an idle replica wakes 50
         * times a second instead of 1,000 (each wake-up costs ~15 us of CPU
         * on this kind of VM). An event pulls the tick in. */
        bool backup = pbft_primary_of(r->core, pbft_view(r->core)) != r->id;
        uint64_t period = now - r->last_event_ms >= LOOP_IDLE_TICK_MS ? LOOP_IDLE_TICK_MS
                          : backup                                    ? LOOP_BACKUP_TICK_MS
                                                                      : LOOP_TICK_MS;
        bool pulled_in = false;
        if (tick) {
            if (!atomic_load(&r->failed))
                pbft_on_tick(r->core, now);
            next_tick = now + period;
        } else if (next_tick > now + period) {
            next_tick = now + period;
            pulled_in = true;
        }
        end_step(r, now);

        pthread_mutex_lock(&r->lock);
        r->next_tick_ms = next_tick;
        r->backup = backup;
        if (pulled_in)
            pthread_cond_signal(&r->cond); /* it sleeps until the old tick */
    }
    r->stepping = false;
    if (r->loop_waiting)
        pthread_cond_signal(&r->cond);
    if (r->stopping)
        pthread_cond_broadcast(&r->idle);
    pthread_mutex_unlock(&r->lock);
}

/* Steps for what no reading thread steps: client messages, ticks, leftovers. */
static void *loop_main(void *arg)
{
    struct replica *r = arg;
    pthread_mutex_lock(&r->lock);
    r->started = true; /* r->transport is set: steps may send */
    for (;;) {
        for (;;) {
            if (r->stopping)
                break;
            if (r->stepping) { /* it ticks too; look again when it ends */
                r->loop_waiting = true;
                pthread_cond_wait(&r->cond, &r->lock);
                r->loop_waiting = false;
                continue;
            }
            uint64_t now = mono_now_ms();
            if (r->q_head != NULL || now >= r->next_tick_ms)
                break;
            struct timespec ts = mono_deadline(r->next_tick_ms - now);
            pthread_cond_timedwait(&r->cond, &r->lock, &ts);
        }
        if (r->stopping)
            break;
        r->stepping = true;
        take_steps(r, true);
        pthread_mutex_lock(&r->lock);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* ---- start / stop -------------------------------------------------------- */

/* The protocol state under name, exactly `len` bytes, into out; found false
 * when there is none. Any other length: TALLY_ECORRUPT. */
static int get_meta_exact(struct ledger *l, const char *name, uint8_t *out, size_t len, bool *found,
                          struct tally_err *err)
{
    void *val = NULL;
    size_t got = 0;
    int rc = ledger_get_meta(l, name, strlen(name), &val, &got, found, err);
    if (rc != 0)
        return rc;
    if (*found && got != len) {
        free(val);
        return tally_errf(err, TALLY_ECORRUPT, "protocol state '%s' has %zu bytes", name, got);
    }
    if (*found)
        memcpy(out, val, len);
    free(val);
    return 0;
}

static int get_meta_u64(struct ledger *l, const char *name, uint64_t *out, bool *found,
                        struct tally_err *err)
{
    uint8_t v[8];
    int rc = get_meta_exact(l, name, v, sizeof(v), found, err);
    if (rc == 0 && *found)
        *out = get_be64(v);
    return rc;
}

/* A record stage_view_seq wrote: into out's view and seq, and extra_len
 * bytes into extra; found false when there is none. */
static int get_meta_view_seq(struct ledger *l, const char *key, struct pbft_persist *out,
                             uint8_t *extra, size_t extra_len, bool *found, struct tally_err *err)
{
    uint8_t v[16 + REPLICA_BOOT_ID_BYTES];
    int rc = get_meta_exact(l, key, v, 16 + extra_len, found, err);
    if (rc == 0 && *found) {
        out->view = get_be64(v);
        out->seq = get_be64(v + 8);
        if (extra_len > 0)
            memcpy(extra, v + 16, extra_len);
    }
    return rc;
}

/* Sign our checkpoint vote for seq again from the stored block seq. Best
 * effort: a block that cannot be read here only costs the vote (a peer's
 * certificate or state transfer still moves us on), never the start. */
static void restore_checkpoint_vote(struct replica *r, uint64_t seq)
{
    struct tally_err err = {0};
    struct ledger_block_header h;
    if (block_header_at(r, seq, &h, &err) != 0) {
        LOG_WARN("L0515", "checkpoint %llu: our vote not signed again: %s", (unsigned long long)seq,
                 err.code ? tally_err_text(&err) : "block not readable");
        return;
    }
    struct pbft_exec_result res = {.state_digest = h.state_digest};
    ledger_block_header_hash(&h, &res.block_hash);
    pbft_restore_checkpoint_vote(r->core, seq, &res);
}

/* The batch of a slim "pp" record: the transactions of block seq, which
 * must hash to the record's digest. *block (free it) holds them. */
static int batch_of_block(struct replica *r, uint64_t seq, const tc_hash *digest,
                          struct msg_batch *batch, uint8_t **block, struct tally_err *err)
{
    size_t len = 0;
    bool found = false;
    int rc = ledger_get_block(r->ledger, seq, block, &len, &found, err);
    if (rc != 0)
        return rc;
    struct ledger_block b;
    tc_hash d;
    if (found && ledger_block_decode(*block, len, &b, err) == 0 &&
        b.item_bytes == LEDGER_TX_BYTES && b.h.tx_count <= MSG_MAX_BATCH) {
        batch->count = b.h.tx_count;
        batch->tx_bytes = b.items;
        msg_batch_digest(batch, &d);
        if (memcmp(d.b, digest->b, TC_HASH_BYTES) == 0)
            return 0;
    }
    return tally_errf(err, TALLY_ECORRUPT,
                      "protocol state pp/%llu names block %llu as its batch, but %s",
                      (unsigned long long)seq, (unsigned long long)seq,
                      found ? "that block's transactions do not match its digest"
                            : "the ledger has no such block");
}

static int restore_state(struct replica *r, struct tally_err *err)
{
    bool found = false;
    uint64_t view = 0, lo = 0, hi = 0;
    struct ledger_cert cert;
    int rc = ledger_last_cert(r->ledger, &cert, &found, err);
    if (rc != 0)
        return rc;
    if (found && cert.ck.height <= ledger_height(r->ledger)) {
        struct pbft_persist rec = {
            .kind = PBFT_PERSIST_CHECKPOINT, .seq = cert.ck.height, .cert = &cert};
        if ((rc = pbft_restore(r->core, &rec)) != 0)
            return tally_errf(err, rc, "restoring checkpoint %llu",
                              (unsigned long long)cert.ck.height);
    }
    rc = get_meta_u64(r->ledger, "view", &view, &found, err);
    if (rc != 0)
        return rc;
    if (found) {
        uint64_t changing = 0;
        bool have = false;
        if ((rc = get_meta_u64(r->ledger, "vchg", &changing, &have, err)) != 0)
            return rc;
        struct pbft_persist rec = {
            .kind = PBFT_PERSIST_VIEW, .view = view, .view_changing = have && changing != 0};
        if ((rc = pbft_restore(r->core, &rec)) != 0)
            return tally_errf(err, rc, "restoring view %llu", (unsigned long long)view);
    }
    struct pbft_persist as = {.kind = PBFT_PERSIST_ASSIGNED};
    if ((rc = get_meta_view_seq(r->ledger, "as", &as, NULL, 0, &found, err)) != 0)
        return rc;
    if (found && (rc = pbft_restore(r->core, &as)) != 0)
        return tally_errf(err, rc, "restoring the new view's re-proposals");
    struct pbft_persist hz = {.kind = PBFT_PERSIST_HORIZON};
    uint8_t hz_boot[REPLICA_BOOT_ID_BYTES] = {0};
    if ((rc = get_meta_view_seq(r->ledger, "hz", &hz, hz_boot, sizeof(hz_boot), &found, err)) != 0)
        return rc;
    /* In the boot that wrote it, every write the last process made is there
     * (the page cache outlives a process): no proposal or PREPARE was lost,
     * and the record is our horizon again. After a reboot (an OS crash, a
     * power loss) it is also a floor: see pbft_persist.deferrable. */
    static const uint8_t unknown[REPLICA_BOOT_ID_BYTES];
    hz.same_boot = memcmp(hz_boot, r->boot_id, REPLICA_BOOT_ID_BYTES) == 0 &&
                   memcmp(r->boot_id, unknown, REPLICA_BOOT_ID_BYTES) != 0;
    if (found) {
        if ((rc = pbft_restore(r->core, &hz)) != 0)
            return tally_errf(err, rc, "restoring the horizon");
        if (!hz.same_boot && hz.seq != 0)
            LOG_INFO("L0521",
                     "first start since a reboot: no proposals or prepares in view %llu up to "
                     "seq %llu (some may have been lost unsynced)",
                     (unsigned long long)hz.view, (unsigned long long)hz.seq);
    }
    if ((rc = get_meta_u64(r->ledger, "lo", &lo, &found, err)) != 0 ||
        (rc = get_meta_u64(r->ledger, "hi", &hi, &found, err)) != 0)
        return rc;
    r->persisted_lo = lo;
    r->persisted_hi = hi;
    /* Without checkpoints (or a stale lo) keep the restore bounded by the window. */
    uint64_t first = lo + 1;
    uint64_t span = 2 * r->cfg->log_window;
    if (hi > span && first < hi - span)
        first = hi - span;
    size_t restored = 0, from_blocks = 0;
    for (uint64_t seq = first; seq <= hi && seq != 0; seq++) {
        static const char *const prefixes[] = {"pp", "pr", "cm"};
        static const enum pbft_persist_kind kinds[] = {PBFT_PERSIST_PREPREPARE,
                                                       PBFT_PERSIST_PREPARE, PBFT_PERSIST_COMMIT};
        for (size_t i = 0; i < 3; i++) {
            uint8_t key[10];
            seq_key(key, prefixes[i], seq);
            void *val = NULL;
            size_t len = 0;
            if ((rc = ledger_get_meta(r->ledger, key, sizeof(key), &val, &len, &found, err)) != 0)
                return rc;
            if (!found)
                continue;
            struct pbft_persist rec = {.kind = kinds[i], .seq = seq};
            struct msg_batch batch = {0};
            uint8_t *block = NULL; /* the batch's block, for a slim "pp" record */
            tc_sig sigs[PBFT_MAX_REPLICAS];
            const uint8_t *v = val;
            bool ok = len >= REPLICA_REC_HEAD;
            if (ok) {
                rec.view = get_be64(v);
                memcpy(rec.digest.b, v + 8, TC_HASH_BYTES);
            }
            struct pp_record pp;
            if (ok && kinds[i] == PBFT_PERSIST_PREPREPARE) {
                ok = pp_record_parse(v, len, &pp);
                if (ok && pp.sig != NULL)
                    memcpy(rec.sig.b, pp.sig, TC_SIG_BYTES);
                if (ok && pp.count == REPLICA_PP_IN_BLOCK) {
                    if ((rc = batch_of_block(r, seq, &rec.digest, &batch, &block, err)) != 0) {
                        free(val);
                        free(block);
                        return rc;
                    }
                    from_blocks++;
                } else if (ok) {
                    batch.count = pp.count;
                    batch.tx_bytes = pp.tx_bytes;
                }
                rec.batch = &batch;
            }
            if (ok && kinds[i] == PBFT_PERSIST_COMMIT && len > REPLICA_REC_HEAD) {
                ok = len >= REPLICA_REC_FIXED;
                uint32_t from = ok ? ledger_get_u32(v + REPLICA_REC_HEAD) : 0;
                uint32_t n = (uint32_t)__builtin_popcount(from);
                ok = ok && len == REPLICA_REC_FIXED + (size_t)n * TC_SIG_BYTES;
                if (ok) {
                    const uint8_t *at = v + REPLICA_REC_FIXED;
                    for (uint32_t k = 0; k < PBFT_MAX_REPLICAS; k++)
                        if (from & (1u << k)) {
                            memcpy(sigs[k].b, at, TC_SIG_BYTES);
                            at += TC_SIG_BYTES;
                        }
                    rec.prepare_from = from;
                    rec.prepare_sigs = sigs;
                }
            }
            if (!ok) {
                free(val);
                return tally_errf(err, TALLY_ECORRUPT, "protocol state %s/%llu is malformed",
                                  prefixes[i], (unsigned long long)seq);
            }
            rc = pbft_restore(r->core, &rec);
            free(val);
            free(block);
            if (rc != 0)
                return tally_errf(err, rc, "restoring protocol state %s/%llu", prefixes[i],
                                  (unsigned long long)seq);
            restored++;
        }
    }
    /* Our vote for the last checkpoint seq at or below the ledger height may
     * never have left (stopped in the step that signed it) or may have been
     * lost with its certificate short of 2f+1: sign it again from that block's
     * header (Ed25519 is deterministic: the same vote).
     * pbft_restore_checkpoint_vote decides whether it is still needed. */
    uint64_t height = ledger_height(r->ledger);
    uint64_t ck = height - height % r->cfg->checkpoint_interval;
    if (ck > 0)
        restore_checkpoint_vote(r, ck);
    if (restored > 0 || view > 0)
        LOG_INFO("L0507",
                 "restored view %llu and %zu protocol records (seq %llu..%llu; %zu batches read "
                 "from their blocks)",
                 (unsigned long long)view, restored, (unsigned long long)first,
                 (unsigned long long)hi, from_blocks);
    return 0;
}

int replica_start(const struct replica_opts *o, struct replica **out, struct tally_err *err)
{
    const struct tally_config *cfg = o->cfg;
    int rc;
    if (o->id >= cfg->n)
        return tally_errf(err, TALLY_EINVAL, "replica id %u: the cluster has replicas 0..%u", o->id,
                          cfg->n - 1);
    struct replica *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return tally_errf(err, TALLY_ENOMEM, "out of memory");
    r->cfg = cfg;
    r->id = o->id;
    r->kp = o->kp;
    r->signer = msg_signer_keypair(o->kp);
#ifdef TALLY_FAULTS
    r->fault = getenv("TALLY_FAULT");
    if (r->fault != NULL && *r->fault != 0)
        LOG_WARN("L0520", "fault injection: TALLY_FAULT=%s (a test build)", r->fault);
    else
        r->fault = NULL;
#endif
    pthread_mutex_init(&r->lock, NULL);
    pthread_mutex_init(&r->settled_mtx, NULL);
    mono_cond_init(&r->cond); /* a wall-clock step never stalls ticks */
    pthread_cond_init(&r->idle, NULL);
    r->next_tick_ms = r->last_event_ms = mono_now_ms();
    pthread_mutex_init(&r->fail_lock, NULL);
    msg_buf_init(&r->out_bytes);
    msg_buf_init(&r->scratch);
    r->pending = calloc(PENDING_SLOTS, sizeof(*r->pending));
    if (r->pending == NULL) {
        rc = tally_errf(err, TALLY_ENOMEM, "out of memory");
        goto fail;
    }

    /* A block needs no fsync of its own before its replies: what makes it
     * safe is the COMMIT record, synced before our COMMIT went out
     * (docs/PROTOCOL.md, "What is persisted"). It becomes durable with the
     * next synced write, or LOOP_BLOCK_SYNC_MS later (end_step). */
    struct ledger_open_opts lopts = LEDGER_OPEN_OPTS_DEFAULT;
    lopts.defer_block_sync = true;
    if ((rc = ledger_open_opts(o->data_dir, &lopts, &r->ledger, err)) != 0)
        goto fail;
    /* Never serve from damaged files: check every block checksum first. */
    uint64_t keys = 0;
    if ((rc = ledger_verify_files(r->ledger, &keys, err)) != 0)
        goto fail;
    if ((rc = ledger_init_genesis(r->ledger, cfg->genesis.accounts, cfg->genesis.count, err)) !=
        0) {
        if (strstr(err->msg, o->data_dir) == NULL) /* name it once */
            tally_err_wrap(err, "data directory %s: ", o->data_dir);
        goto fail;
    }

    struct pbft_config pc = {
        .n = cfg->n,
        .f = cfg->f,
        .id = o->id,
        .checkpoint_interval = cfg->checkpoint_interval,
        .window = cfg->log_window,
        .batch_max_txs = cfg->batch_max_txs,
        .batch_timeout_ms = cfg->batch_timeout_ms,
        .max_inflight = cfg->max_inflight_batches,
        .request_timeout_ms = cfg->request_timeout_ms,
    };
    ledger_genesis_hash(r->ledger, &r->chain_id);
    pc.chain_id = r->chain_id;
    for (uint32_t i = 0; i < cfg->n; i++) {
        pc.replica_keys[i] = cfg->replicas[i].pk;
        r->keys[i] = cfg->replicas[i].pk;
    }
    struct pbft_io io = {.ctx = r,
                         .sign = io_sign,
                         .persist = io_persist,
                         .send = io_send,
                         .execute = io_execute,
                         .state_read = io_state_read,
                         .state_install = io_state_install};
    uint64_t height = ledger_height(r->ledger);
    settled_executed(r, height);
    r->core = pbft_create(&pc, &io, height);
    if (r->core == NULL) {
        rc = tally_errf(err, TALLY_ECONFIG, "the protocol core rejected the configuration");
        goto fail;
    }

    struct verifier_opts vo = {.self = o->id,
                               .n = cfg->n,
                               .max_message_bytes = cfg->max_message_bytes,
                               .deliver = deliver_event,
                               .ctx = r,
                               .chain_id = r->chain_id,
                               .settled = replica_settled};
    for (uint32_t i = 0; i < cfg->n; i++)
        vo.replica_keys[i] = cfg->replicas[i].pk;
    if ((rc = verifier_start(&vo, &r->verifier, err)) != 0)
        goto fail;
    read_boot_id(r->boot_id);
    if ((rc = restore_state(r, err)) != 0) {
        if (strstr(err->msg, o->data_dir) == NULL) /* name it once */
            tally_err_wrap(err, "data directory %s: ", o->data_dir);
        goto fail;
    }

    struct transport_opts to = {.self = o->id,
                                .n = cfg->n,
                                .peer_listen = cfg->replicas[o->id].peer_address,
                                .client_listen = cfg->replicas[o->id].client_address,
                                .max_message_bytes = cfg->max_message_bytes,
                                .on_recv = on_recv,
                                .peer_read_done = step_after_peer_read,
                                .ctx = r};
    for (uint32_t i = 0; i < cfg->n; i++)
        to.peer_addrs[i] = cfg->replicas[i].peer_address;
    if ((rc = transport_start(&to, &r->transport, err)) != 0)
        goto fail;

    tc_hash head; /* read now: steps (on any thread) start with the loop thread */
    ledger_head_hash(r->ledger, &head);
    if (pthread_create(&r->loop, NULL, loop_main, r) != 0) {
        rc = tally_errf(err, TALLY_EIO, "cannot start the loop thread");
        goto fail;
    }
    r->loop_started = true;
    char hex[2 * TC_HASH_BYTES + 1];
    tc_hex_encode(head.b, TC_HASH_BYTES, hex);
    LOG_INFO("L0508",
             "replica %u of %u (f = %u) up: ledger height %llu, head %.16s, peers %s, "
             "clients %s",
             o->id, cfg->n, cfg->f, (unsigned long long)height, hex,
             cfg->replicas[o->id].peer_address, cfg->replicas[o->id].client_address);
    *out = r;
    return TALLY_OK;

fail:
    replica_stop(r);
    return rc;
}

void replica_stop(struct replica *r)
{
    if (r == NULL)
        return;
    /* Steps first (they send through the transport and ask the verifier's
     * cache): no new one starts once stopping is set, and a running one is
     * waited for. Then the receive side, then the verifier pool. */
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    pthread_cond_broadcast(&r->cond);
    while (r->stepping)
        pthread_cond_wait(&r->idle, &r->lock);
    pthread_mutex_unlock(&r->lock);
    if (r->loop_started)
        pthread_join(r->loop, NULL);
    /* Only steps used the ledger: make it durable and close it now,
     * before the sockets (whose teardown is NNG's business). With it
     * durable, nothing we sent can be lost: release the horizon, so that
     * after a reboot we go on in our view (pbft_release_horizon). */
    if (r->core != NULL && r->ledger != NULL && !atomic_load(&r->failed))
        pbft_release_horizon(r->core);
    if (r->ledger != NULL && r->staged) {
        struct tally_err err = {0};
        if (ledger_meta_flush(r->ledger, &err) != 0)
            LOG_ERROR("L0509", "writing protocol state: %s", tally_err_text(&err));
        r->staged = r->staged_sync = false;
    }
    ledger_close(r->ledger);
    r->ledger = NULL;
    if (r->loop_started)
        LOG_INFO("L0510", "ledger flushed and closed");
    transport_stop(r->transport);
    r->transport = NULL;
    verifier_stop(r->verifier);
    r->verifier = NULL;
    while (r->q_head != NULL) {
        struct verifier_event *n = r->q_head->next;
        verifier_event_free(r->q_head);
        r->q_head = n;
    }
    pbft_destroy(r->core);
    free(r->pending);
    free(r->sends);
    msg_buf_free(&r->out_bytes);
    msg_buf_free(&r->scratch);
    free(r->meta_buf);
    free(r->sig_ok);
    free(r->items);
    free(r->entries);
    free(r->found);
    free(r->found_entries);
    pthread_mutex_destroy(&r->lock);
    pthread_mutex_destroy(&r->settled_mtx);
    pthread_cond_destroy(&r->cond);
    pthread_cond_destroy(&r->idle);
    pthread_mutex_destroy(&r->fail_lock);
    free(r);
}
