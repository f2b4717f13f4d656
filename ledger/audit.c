/* Offline audit: re-verify and re-execute a data directory from genesis.
 * See ledger/audit.h. Independent of ledger.c's execution code on purpose:
 * the rules are implemented a second time from docs/FORMAT.md. */
#include "ledger/audit.h"

#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ledger/block.h"
#include "ledger/cert.h"
#include "ledger/ledger_internal.h"
#include "ledger/tx.h"
#include "src/mono.h"

/* The audit is a pipeline over windows of consecutive blocks, on a pool of
 * worker threads and the auditing (main) thread:
 *
 *   main:    read + decode window k+1 ─┐    execute window k in order ─┐
 *   workers:        verify + hash window k+1 (decode, signature,      │
 *                   tx hash, Merkle leaf per item)  ◄───────────────┘ │
 *   workers:        LtHash of each executed block: expand its (old, new)
 *                   account elements into partial lane sums  ◄─────────┘
 *   main:    add each block's partial sums to the state in height order and
 *            compare with its state_digest.
 *
 * Everything order-dependent (hash links, execution, results, the tx index,
 * duplicate detection) stays on the main thread; the workers do the per-item
 * and per-element crypto, which is independent. LtHash is a sum of lane
 * vectors (mod 2^16 per lane), so a block's delta can be expanded and summed
 * in any order and split over workers. A block's state digest is compared
 * later than its other checks; problem() first settles every outstanding
 * digest so that the first problem by height is the one reported. */

#define WINDOW_TXS 8192
#define WINDOW_BLOCKS 1024
#define MAX_WORKERS 64
#define VERIFY_CHUNK 32 /* items per verify task (~1.5 ms) */
#define LT_CHUNK 128    /* LtHash elements per task (~0.5 ms) */

/* ---- the re-executed state: accounts by pk, open addressing ------------------ */

struct acct {
    tc_pubkey pk;
    uint64_t balance, nonce, last_height;
    uint64_t old_balance, old_nonce; /* at the start of the block being executed */
    uint64_t touched;                /* height + 1 of the block that last touched it */
    bool existed;                    /* existed at the start of that block */
};

struct amap {
    struct acct *v;
    size_t n, cap;
    uint32_t *slots; /* index + 1 */
    size_t mask;
};

struct hset {
    tc_hash *v;
    uint8_t *used;
    size_t n, mask;
};

/* ---- a pool of worker threads running tasks in FIFO order ---------------------- */

/* Tasks submitted together; pending is guarded by the pool's mutex. */
struct batch {
    size_t pending;
};

struct task {
    void (*fn)(void *arg, size_t start, size_t end);
    void *arg;
    size_t start, end;
    struct batch *batch;
};

struct pool {
    pthread_mutex_t mu;
    pthread_cond_t work; /* a task was queued, or stop */
    pthread_cond_t done; /* a batch finished */
    struct task *q;      /* ring of cap tasks, len from head */
    size_t head, len, cap;
    bool stop;
    pthread_t th[MAX_WORKERS];
    unsigned nthreads;
};

/* One executed block whose state digest awaits its LtHash delta: nadd
 * account elements added, then nrem removed, summed by tasks of LT_CHUNK
 * elements into part[task]. */
struct ltblock {
    struct ltblock *next;
    uint64_t height;
    uint64_t txs;    /* report's transaction count after this block */
    size_t accounts; /* accounts in the state after this block */
    tc_hash want;    /* the block's state_digest */
    tc_hash hash;    /* the block's hash */
    uint8_t *elems;  /* (nadd + nrem) * LEDGER_ACCOUNT_ELEM_BYTES */
    size_t nadd, nrem;
    tc_lthash *part;
    struct batch batch;
};

struct audit {
    struct ledger *l;
    rocksdb_t *db;
    rocksdb_column_family_handle_t *cf_acct; /* the accounts (ledger_accounts_cf) */
    rocksdb_readoptions_t *ro;
    struct ledger_audit_report *rep;
    struct amap accts;
    struct hset seen;
    uint8_t key[crypto_shorthash_KEYBYTES];
    tc_lthash lt;           /* state after the last settled block */
    uint64_t next_height;   /* executed up to here (digests may be pending) */
    tc_hash prev_hash;      /* hash of block next_height - 1 */
    uint64_t index_entries; /* expected tx index entries */
    uint32_t *touched;      /* accounts touched in the current block */
    size_t ntouched, touched_cap;
    unsigned workers;
    struct pool *pool;                 /* NULL outside walk_blocks */
    struct ltblock *lt_head, *lt_tail; /* executed, digest not yet compared */
    size_t accounts_at_problem;        /* state size at a digest mismatch, or SIZE_MAX */
    uint64_t index_stored;             /* tx index entries stored, when index_counted */
    bool index_counted;
    struct batch index_batch;
};

/* A window of consecutive stored blocks: read and decoded by the main thread,
 * its items verified and hashed by the pool while the main thread executes
 * the previous window (double buffering). */
struct window {
    uint8_t *buf; /* the blocks' bytes, copied out of RocksDB */
    size_t len, cap;
    size_t *off, *blen;
    uint64_t *kheight; /* height from the key */
    size_t *first;     /* index of each block's first item */
    size_t nblocks;
    size_t window_txs;
    struct ledger_block *blocks;
    size_t ok_blocks; /* blocks[0..ok_blocks) decoded */
    struct tally_err derr;
    const uint8_t **item; /* transactions, or genesis entries where genesis[i] */
    uint8_t *genesis;
    uint8_t *verdict; /* 0 bad signature, 1 good, 2 malformed */
    tc_hash *hashes;  /* tx hashes */
    tc_hash *leaves;  /* Merkle leaves */
    size_t nitems;
    struct batch batch;
};

static void lt_settle(struct audit *a, bool all);

static void vproblem(struct audit *a, uint64_t height, const char *fmt, va_list ap)
{
    if (!a->rep->intact)
        return;
    a->rep->intact = false;
    a->rep->problem_height = height;
    char *p = a->rep->problem;
    size_t size = sizeof(a->rep->problem), used = 0;
    if (height != LEDGER_AUDIT_NO_HEIGHT) {
        int n = snprintf(p, size, "height %llu: ", (unsigned long long)height);
        used = n > 0 && (size_t)n < size ? (size_t)n : 0;
    }
    vsnprintf(p + used, size - used, fmt, ap);
}

/* Report a problem found by the main thread. The state digests of the blocks
 * executed before it are compared first: a mismatch there is the first
 * problem and wins. */
static void problem(struct audit *a, uint64_t height, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void problem(struct audit *a, uint64_t height, const char *fmt, ...)
{
    if (!a->rep->intact)
        return;
    lt_settle(a, true);
    va_list ap;
    va_start(ap, fmt);
    vproblem(a, height, fmt, ap);
    va_end(ap);
}

/* The same without settling (for the digest comparison itself). */
static void digest_problem(struct audit *a, uint64_t height, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void digest_problem(struct audit *a, uint64_t height, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vproblem(a, height, fmt, ap);
    va_end(ap);
}

static size_t keyhash(const struct audit *a, const uint8_t *k32)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, k32, 32, a->key);
    return (size_t)ledger_get_u64(h);
}

static int amap_grow(struct audit *a)
{
    struct amap *m = &a->accts;
    size_t nslots = m->mask ? 2 * (m->mask + 1) : 1024;
    uint32_t *slots = calloc(nslots, sizeof(uint32_t));
    struct acct *v = realloc(m->v, nslots / 2 * sizeof(struct acct));
    if (slots == NULL || v == NULL) {
        free(slots);
        if (v != NULL)
            m->v = v;
        return TALLY_ENOMEM;
    }
    m->v = v;
    m->cap = nslots / 2;
    free(m->slots);
    m->slots = slots;
    m->mask = nslots - 1;
    for (size_t i = 0; i < m->n; i++) {
        size_t s = keyhash(a, m->v[i].pk.b) & m->mask;
        while (m->slots[s] != 0)
            s = (s + 1) & m->mask;
        m->slots[s] = (uint32_t)(i + 1);
    }
    return TALLY_OK;
}

static struct acct *amap_find(struct audit *a, const tc_pubkey *pk)
{
    struct amap *m = &a->accts;
    if (m->mask == 0)
        return NULL;
    size_t s = keyhash(a, pk->b) & m->mask;
    while (m->slots[s] != 0) {
        struct acct *e = &m->v[m->slots[s] - 1];
        if (memcmp(e->pk.b, pk->b, TC_PUBKEY_BYTES) == 0)
            return e;
        s = (s + 1) & m->mask;
    }
    return NULL;
}

/* Insert a new zero account (pk must be absent). NULL when out of memory. */
static struct acct *amap_insert(struct audit *a, const tc_pubkey *pk)
{
    struct amap *m = &a->accts;
    if (m->n + 1 > m->cap && amap_grow(a) != TALLY_OK)
        return NULL;
    if (m->n >= UINT32_MAX - 1)
        return NULL;
    size_t s = keyhash(a, pk->b) & m->mask;
    while (m->slots[s] != 0)
        s = (s + 1) & m->mask;
    struct acct *e = &m->v[m->n];
    memset(e, 0, sizeof(*e));
    e->pk = *pk;
    m->slots[s] = (uint32_t)(++m->n);
    return e;
}

/* Add h to the set of seen tx hashes; returns 1 if it was already there, 0 if
 * added, -1 when out of memory. */
static int hset_add(struct audit *a, const tc_hash *h)
{
    struct hset *set = &a->seen;
    if (set->mask == 0 || 2 * (set->n + 1) > set->mask + 1) {
        size_t nslots = set->mask ? 2 * (set->mask + 1) : 65536;
        tc_hash *v = malloc(nslots * sizeof(tc_hash));
        uint8_t *used = calloc(nslots, 1);
        if (v == NULL || used == NULL) {
            free(v);
            free(used);
            return -1;
        }
        for (size_t i = 0; set->mask && i <= set->mask; i++) {
            if (!set->used[i])
                continue;
            size_t s = keyhash(a, set->v[i].b) & (nslots - 1);
            while (used[s])
                s = (s + 1) & (nslots - 1);
            used[s] = 1;
            v[s] = set->v[i];
        }
        free(set->v);
        free(set->used);
        set->v = v;
        set->used = used;
        set->mask = nslots - 1;
    }
    size_t s = keyhash(a, h->b) & set->mask;
    while (set->used[s]) {
        if (memcmp(set->v[s].b, h->b, TC_HASH_BYTES) == 0)
            return 1;
        s = (s + 1) & set->mask;
    }
    set->used[s] = 1;
    set->v[s] = *h;
    set->n++;
    return 0;
}

/* ---- the worker pool ----------------------------------------------------------- */

/* Run one task with the mutex held on entry and on return. */
static void pool_run_one(struct pool *p)
{
    struct task t = p->q[p->head];
    p->head = (p->head + 1) % p->cap;
    p->len--;
    pthread_mutex_unlock(&p->mu);
    t.fn(t.arg, t.start, t.end);
    pthread_mutex_lock(&p->mu);
    if (--t.batch->pending == 0)
        pthread_cond_broadcast(&p->done);
}

static void *pool_worker(void *arg)
{
    struct pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->len == 0 && !p->stop)
            pthread_cond_wait(&p->work, &p->mu);
        if (p->stop)
            break;
        pool_run_one(p);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Start up to n worker threads. With none started (thread limits) the tasks
 * run on the waiting thread in pool_wait. */
static int pool_init(struct pool *p, unsigned n)
{
    memset(p, 0, sizeof(*p));
    p->cap = 1024;
    p->q = malloc(p->cap * sizeof(struct task));
    if (p->q == NULL)
        return TALLY_ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    for (unsigned i = 0; i < n && i < MAX_WORKERS; i++) {
        if (pthread_create(&p->th[i], NULL, pool_worker, p) != 0)
            break;
        p->nthreads++;
    }
    return TALLY_OK;
}

/* Drop the queued tasks, let the running ones finish, join the threads. */
static void pool_destroy(struct pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->len = 0;
    p->stop = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->th[i], NULL);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->mu);
    free(p->q);
}

/* Queue fn over [0, n) in tasks of `chunk`, counted in b. */
static int pool_submit(struct pool *p, struct batch *b, void (*fn)(void *, size_t, size_t),
                       void *arg, size_t n, size_t chunk)
{
    size_t ntasks = (n + chunk - 1) / chunk;
    pthread_mutex_lock(&p->mu);
    if (p->len + ntasks > p->cap) {
        size_t cap = p->cap;
        while (cap < p->len + ntasks)
            cap *= 2;
        struct task *q = malloc(cap * sizeof(struct task));
        if (q == NULL) {
            pthread_mutex_unlock(&p->mu);
            return TALLY_ENOMEM;
        }
        for (size_t i = 0; i < p->len; i++)
            q[i] = p->q[(p->head + i) % p->cap];
        free(p->q);
        p->q = q;
        p->cap = cap;
        p->head = 0;
    }
    for (size_t s = 0; s < n; s += chunk) {
        p->q[(p->head + p->len) % p->cap] =
            (struct task){fn, arg, s, s + chunk < n ? s + chunk : n, b};
        p->len++;
        b->pending++;
    }
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    return TALLY_OK;
}

/* Wait until b's tasks are done, running queued tasks meanwhile when there
 * are no worker threads. */
static void pool_wait(struct pool *p, struct batch *b)
{
    pthread_mutex_lock(&p->mu);
    while (b->pending > 0) {
        if (p->nthreads == 0 && p->len > 0)
            pool_run_one(p);
        else
            pthread_cond_wait(&p->done, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
}

static bool pool_done(struct pool *p, struct batch *b)
{
    pthread_mutex_lock(&p->mu);
    bool done = b->pending == 0;
    pthread_mutex_unlock(&p->mu);
    return done;
}

/* ---- per-item work: decode, signature, tx hash, Merkle leaf --------------------- */

static void verify_task(void *arg, size_t start, size_t end)
{
    struct window *w = arg;
    for (size_t i = start; i < end; i++) {
        if (w->genesis[i]) {
            ledger_block_leaf(w->item[i], LEDGER_GENESIS_ENTRY_BYTES, &w->leaves[i]);
            continue;
        }
        struct ledger_tx tx;
        ledger_tx_hash_bytes(w->item[i], &w->hashes[i]);
        ledger_block_leaf(w->item[i], LEDGER_TX_BYTES, &w->leaves[i]);
        if (ledger_tx_decode(w->item[i], LEDGER_TX_BYTES, &tx) != TALLY_OK)
            w->verdict[i] = 2;
        else
            w->verdict[i] = ledger_tx_verify(&tx) == TALLY_OK;
    }
}

/* ---- per-block LtHash deltas ------------------------------------------------------ */

static void lt_task(void *arg, size_t start, size_t end)
{
    struct ltblock *lb = arg;
    tc_lthash *part = &lb->part[start / LT_CHUNK];
    tc_lthash_zero(part);
    for (size_t i = start; i < end; i++) {
        const uint8_t *e = lb->elems + i * LEDGER_ACCOUNT_ELEM_BYTES;
        if (i < lb->nadd)
            tc_lthash_add(part, e, LEDGER_ACCOUNT_ELEM_BYTES);
        else
            tc_lthash_remove(part, e, LEDGER_ACCOUNT_ELEM_BYTES);
    }
}

/* acc += d, lane by lane: LtHash add is lane-wise addition modulo the lane
 * width, so partial sums of elements combine by adding their lane vectors. */
static void lanes_add(tc_lthash *acc, const tc_lthash *d)
{
    for (size_t i = 0; i < sizeof(acc->lane) / sizeof(acc->lane[0]); i++)
        acc->lane[i] += d->lane[i];
}

static void ltblock_free(struct ltblock *lb)
{
    free(lb->elems);
    free(lb->part);
    free(lb);
}

/* A new block record with room for n elements; NULL when out of memory. */
static struct ltblock *ltblock_new(const struct ledger_block_header *h, size_t n)
{
    struct ltblock *lb = calloc(1, sizeof(*lb));
    if (lb == NULL)
        return NULL;
    lb->height = h->height;
    lb->want = h->state_digest;
    ledger_block_header_hash(h, &lb->hash);
    lb->elems = malloc((n ? n : 1) * LEDGER_ACCOUNT_ELEM_BYTES);
    lb->part = malloc(((n + LT_CHUNK - 1) / LT_CHUNK + 1) * sizeof(tc_lthash));
    if (lb->elems == NULL || lb->part == NULL) {
        ltblock_free(lb);
        return NULL;
    }
    return lb;
}

/* Hand an executed block's elements to the pool; its digest is compared in
 * lt_settle. Takes lb (frees it on failure). */
static int lt_submit(struct audit *a, struct ltblock *lb)
{
    lb->txs = a->rep->txs;
    lb->accounts = a->accts.n;
    int rc = pool_submit(a->pool, &lb->batch, lt_task, lb, lb->nadd + lb->nrem, LT_CHUNK);
    if (rc != TALLY_OK) {
        ltblock_free(lb);
        return rc;
    }
    if (a->lt_tail != NULL)
        a->lt_tail->next = lb;
    else
        a->lt_head = lb;
    a->lt_tail = lb;
    return TALLY_OK;
}

/* Add the finished deltas to the state in height order and compare each
 * block's state digest: all of them (waiting), or those already finished.
 * A block is counted in the report when its digest matches. */
static void lt_settle(struct audit *a, bool all)
{
    struct ledger_audit_report *rep = a->rep;
    while (a->lt_head != NULL && rep->intact) {
        struct ltblock *lb = a->lt_head;
        if (!all && !pool_done(a->pool, &lb->batch))
            return;
        pool_wait(a->pool, &lb->batch);
        size_t nparts = (lb->nadd + lb->nrem + LT_CHUNK - 1) / LT_CHUNK;
        for (size_t i = 0; i < nparts; i++)
            lanes_add(&a->lt, &lb->part[i]);
        tc_hash digest;
        tc_lthash_digest(&a->lt, &digest);
        if (memcmp(digest.b, lb->want.b, TC_HASH_BYTES) != 0) {
            rep->txs = lb->txs; /* as if the main thread had stopped here */
            a->accounts_at_problem = lb->accounts;
            digest_problem(a, lb->height, "state_digest does not match the re-executed state");
            return; /* the later records are freed after the pool has stopped */
        }
        if (lb->height == 0)
            rep->genesis_hash = lb->hash;
        rep->head_hash = lb->hash;
        rep->head_height = lb->height;
        rep->state_digest = digest;
        rep->blocks++;
        a->lt_head = lb->next;
        if (a->lt_head == NULL)
            a->lt_tail = NULL;
        ltblock_free(lb);
    }
}

/* Put account e's element (current, or at the start of the block) at slot i. */
static void put_elem(struct ltblock *lb, size_t i, const struct acct *e, bool old)
{
    ledger_account_elem(&e->pk, old ? e->old_balance : e->balance, old ? e->old_nonce : e->nonce,
                        lb->elems + i * LEDGER_ACCOUNT_ELEM_BYTES);
}

/* ---- checking one block -------------------------------------------------------- */

static void hex32(const uint8_t *b, char out[65])
{
    tc_hex_encode(b, 32, out);
}

static void touch(struct audit *a, struct acct *e, uint64_t height)
{
    if (e->touched == height + 1)
        return;
    e->touched = height + 1;
    e->existed = true;
    e->old_balance = e->balance;
    e->old_nonce = e->nonce;
    a->touched[a->ntouched++] = (uint32_t)(e - a->accts.v);
}

/* Execute one transfer that passed decoding, signature and de-duplication. */
static int execute(struct audit *a, uint64_t height, const struct ledger_tx *tx, uint8_t *result)
{
    struct acct *from = amap_find(a, &tx->from);
    uint64_t fbal = from ? from->balance : 0, fnonce = from ? from->nonce : 0;
    if (fnonce == UINT64_MAX || tx->nonce != fnonce + 1)
        *result = LEDGER_RESULT_BAD_NONCE;
    else if (tx->amount == 0)
        *result = LEDGER_RESULT_ZERO_AMOUNT;
    else if (memcmp(tx->from.b, tx->to.b, TC_PUBKEY_BYTES) == 0)
        *result = LEDGER_RESULT_SELF_TRANSFER;
    else if (fbal < tx->amount)
        *result = LEDGER_RESULT_INSUFFICIENT_FUNDS;
    else {
        struct acct *to = amap_find(a, &tx->to);
        if (to != NULL && to->balance > UINT64_MAX - tx->amount) {
            *result = LEDGER_RESULT_OVERFLOW;
            return TALLY_OK;
        }
        if (to == NULL) {
            size_t fi = (size_t)(from - a->accts.v); /* insert may move the array */
            to = amap_insert(a, &tx->to);
            if (to == NULL)
                return TALLY_ENOMEM;
            from = &a->accts.v[fi];
            to->touched = height + 1; /* new in this block: nothing to remove */
            to->existed = false;
            a->touched[a->ntouched++] = (uint32_t)(to - a->accts.v);
        }
        touch(a, from, height);
        touch(a, to, height);
        from->balance -= tx->amount;
        from->nonce = tx->nonce;
        from->last_height = height;
        to->balance += tx->amount;
        to->last_height = height;
        *result = LEDGER_RESULT_OK;
    }
    return TALLY_OK;
}

/* Check the tx index entry of tx i of block `height`. */
static void check_index(struct audit *a, uint64_t height, uint32_t i, const tc_hash *h,
                        uint8_t result)
{
    uint8_t key[1 + TC_HASH_BYTES];
    key[0] = LEDGER_KEY_TX;
    memcpy(key + 1, h->b, TC_HASH_BYTES);
    char *e = NULL;
    size_t len = 0;
    char *val = rocksdb_get(a->db, a->ro, (const char *)key, sizeof(key), &len, &e);
    if (e != NULL) {
        problem(a, height, "tx %u: reading its tx index entry: %s", i, e);
        rocksdb_free(e);
        return;
    }
    char hex[65];
    if (val == NULL) {
        hex32(h->b, hex);
        problem(a, height, "tx %u (%s) is missing from the tx index", i, hex);
        return;
    }
    const uint8_t *p = (const uint8_t *)val;
    if (len != LEDGER_TXINDEX_BYTES || ledger_get_u64(p) != height || ledger_get_u32(p + 8) != i ||
        p[12] != result) {
        hex32(h->b, hex);
        problem(a, height, "tx %u (%s): tx index entry does not match the block", i, hex);
    }
    free(val);
}

/* The first tx of a block whose bytes are not what the tx index knows: the
 * likely culprit when tx_root does not match. -1 when none stands out. */
static long find_altered_tx(struct audit *a, const struct ledger_block *b)
{
    for (uint32_t i = 0; i < b->h.tx_count; i++) {
        tc_hash h;
        ledger_tx_hash_bytes(b->items + (size_t)i * LEDGER_TX_BYTES, &h);
        uint8_t key[1 + TC_HASH_BYTES];
        key[0] = LEDGER_KEY_TX;
        memcpy(key + 1, h.b, TC_HASH_BYTES);
        char *e = NULL;
        size_t len = 0;
        char *val = rocksdb_get(a->db, a->ro, (const char *)key, sizeof(key), &len, &e);
        if (e != NULL)
            rocksdb_free(e);
        if (val == NULL)
            return i;
        free(val);
    }
    return -1;
}

static int check_genesis(struct audit *a, const struct ledger_block *b)
{
    struct ltblock *lb = ltblock_new(&b->h, b->h.tx_count);
    if (lb == NULL)
        return TALLY_ENOMEM;
    for (uint32_t i = 0; i < b->h.tx_count; i++) {
        const uint8_t *item = b->items + (size_t)i * LEDGER_GENESIS_ENTRY_BYTES;
        if (i > 0 && memcmp(item - LEDGER_GENESIS_ENTRY_BYTES, item, TC_PUBKEY_BYTES) >= 0) {
            ltblock_free(lb);
            problem(a, 0, "genesis entry %u is out of order or a duplicate", i);
            return TALLY_OK;
        }
        if (b->results[i] != 0) {
            ltblock_free(lb);
            problem(a, 0, "genesis entry %u has a non-zero result", i);
            return TALLY_OK;
        }
        tc_pubkey pk;
        uint64_t bal;
        ledger_genesis_entry_decode(item, &pk, &bal);
        struct acct *e = amap_insert(a, &pk);
        if (e == NULL) {
            ltblock_free(lb);
            return TALLY_ENOMEM;
        }
        e->balance = bal;
        put_elem(lb, lb->nadd++, e, false);
    }
    return lt_submit(a, lb);
}

/* The LtHash elements of a block's touched accounts: the new states added,
 * the states before the block removed. */
static int submit_block_delta(struct audit *a, const struct ledger_block *b)
{
    size_t nrem = 0;
    for (size_t t = 0; t < a->ntouched; t++)
        nrem += a->accts.v[a->touched[t]].existed;
    struct ltblock *lb = ltblock_new(&b->h, a->ntouched + nrem);
    if (lb == NULL)
        return TALLY_ENOMEM;
    lb->nadd = a->ntouched;
    lb->nrem = nrem;
    size_t r = lb->nadd;
    for (size_t t = 0; t < a->ntouched; t++) {
        const struct acct *e = &a->accts.v[a->touched[t]];
        put_elem(lb, t, e, false);
        if (e->existed)
            put_elem(lb, r++, e, true);
    }
    return lt_submit(a, lb);
}

/* Check block k of the window, all but its state digest, which is compared
 * when its LtHash delta is ready (lt_settle). Returns TALLY_OK (problems go
 * to the report). */
static int check_block(struct audit *a, struct window *w, size_t k)
{
    const struct ledger_block *b = &w->blocks[k];
    uint64_t height = w->kheight[k];
    size_t first = w->first[k];
    struct ledger_audit_report *rep = a->rep;
    if (height != a->next_height) {
        if (height > a->next_height)
            problem(a, a->next_height, "block is missing (the next stored block is %llu)",
                    (unsigned long long)height);
        else
            problem(a, height, "block stored twice");
        return TALLY_OK;
    }
    if (b->h.height != height) {
        problem(a, height, "block says it is height %llu", (unsigned long long)b->h.height);
        return TALLY_OK;
    }
    static const tc_hash zero;
    const tc_hash *want_prev = height == 0 ? &zero : &a->prev_hash;
    if (memcmp(b->h.prev_hash.b, want_prev->b, TC_HASH_BYTES) != 0) {
        if (height == 0)
            problem(a, 0, "genesis prev_hash is not zero");
        else
            problem(a, height, "prev_hash does not match block %llu",
                    (unsigned long long)(height - 1));
        return TALLY_OK;
    }
    tc_hash root, rh;
    tc_merkle_root(w->leaves + first, b->h.tx_count, &root);
    if (memcmp(root.b, b->h.tx_root.b, TC_HASH_BYTES) != 0) {
        long bad = height == 0 ? -1 : find_altered_tx(a, b);
        if (bad >= 0)
            problem(a, height,
                    "tx %ld hash mismatch (tx_root): its bytes are not the ones "
                    "committed",
                    bad);
        else
            problem(a, height, "tx_root does not match the block's %s",
                    height == 0 ? "genesis entries" : "transactions");
        return TALLY_OK;
    }
    ledger_block_results_hash(b->results, b->h.tx_count, &rh);
    if (memcmp(rh.b, b->h.results_hash.b, TC_HASH_BYTES) != 0) {
        problem(a, height, "results_hash does not match the recorded results");
        return TALLY_OK;
    }

    if (height == 0) {
        int rc = check_genesis(a, b);
        if (rc != TALLY_OK || !rep->intact)
            return rc;
    } else {
        a->ntouched = 0;
        if (2 * (size_t)b->h.tx_count > a->touched_cap) {
            uint32_t *t = realloc(a->touched, 2 * (size_t)b->h.tx_count * sizeof(uint32_t));
            if (t == NULL)
                return TALLY_ENOMEM;
            a->touched = t;
            a->touched_cap = 2 * (size_t)b->h.tx_count;
        }
        for (uint32_t i = 0; i < b->h.tx_count; i++) {
            const uint8_t *p = b->items + (size_t)i * LEDGER_TX_BYTES;
            const tc_hash *h = &w->hashes[first + i];
            int seen = hset_add(a, h);
            if (seen < 0)
                return TALLY_ENOMEM;
            uint8_t result;
            uint8_t v = w->verdict[first + i];
            struct ledger_tx tx;
            if (v == 2)
                result = LEDGER_RESULT_MALFORMED;
            else if (v == 0)
                result = LEDGER_RESULT_BAD_SIGNATURE;
            else if (seen)
                result = LEDGER_RESULT_DUPLICATE;
            else {
                if (ledger_tx_decode(p, LEDGER_TX_BYTES, &tx) != TALLY_OK)
                    return TALLY_EINVAL; /* cannot happen: verdict said it decodes */
                int rc = execute(a, height, &tx, &result);
                if (rc != TALLY_OK)
                    return rc;
            }
            if (result != b->results[i]) {
                problem(a, height, "tx %u: recorded result '%s' but re-execution gives '%s'", i,
                        ledger_result_name(b->results[i]), ledger_result_name(result));
                return TALLY_OK;
            }
            if (!seen) {
                a->index_entries++;
                check_index(a, height, i, h, result);
                if (!rep->intact)
                    return TALLY_OK;
            }
        }
        rep->txs += b->h.tx_count;
        int rc = submit_block_delta(a, b);
        if (rc != TALLY_OK)
            return rc;
    }
    ledger_block_header_hash(&b->h, &a->prev_hash);
    a->next_height++;
    return TALLY_OK;
}

/* ---- windows of blocks ----------------------------------------------------------- */

/* Window capacity in items: a full window plus one maximal block. */
#define WINDOW_TX_CAP (WINDOW_TXS + LEDGER_BLOCK_MAX_TXS)

static int window_init(struct window *w)
{
    w->off = malloc(WINDOW_BLOCKS * sizeof(size_t));
    w->blen = malloc(WINDOW_BLOCKS * sizeof(size_t));
    w->kheight = malloc(WINDOW_BLOCKS * sizeof(uint64_t));
    w->first = malloc(WINDOW_BLOCKS * sizeof(size_t));
    w->blocks = malloc(WINDOW_BLOCKS * sizeof(struct ledger_block));
    w->item = malloc(WINDOW_TX_CAP * sizeof(*w->item));
    w->genesis = malloc(WINDOW_TX_CAP);
    w->verdict = malloc(WINDOW_TX_CAP);
    w->hashes = malloc(WINDOW_TX_CAP * sizeof(tc_hash));
    w->leaves = malloc(WINDOW_TX_CAP * sizeof(tc_hash));
    if (!w->off || !w->blen || !w->kheight || !w->first || !w->blocks || !w->item || !w->genesis ||
        !w->verdict || !w->hashes || !w->leaves)
        return TALLY_ENOMEM;
    return TALLY_OK;
}

static void window_free(struct window *w)
{
    free(w->buf);
    free(w->off);
    free(w->blen);
    free(w->kheight);
    free(w->first);
    free(w->blocks);
    free(w->item);
    free(w->genesis);
    free(w->verdict);
    free(w->hashes);
    free(w->leaves);
}

static void window_reset(struct window *w)
{
    w->nblocks = 0;
    w->len = 0;
    w->nitems = 0;
    w->window_txs = 0;
    w->ok_blocks = 0;
}

static bool window_full(const struct window *w, uint32_t next_count)
{
    return w->nblocks == WINDOW_BLOCKS || w->window_txs >= WINDOW_TXS ||
           w->window_txs + next_count > WINDOW_TX_CAP;
}

static int window_add(struct window *w, uint64_t height, const char *val, size_t len,
                      uint32_t count)
{
    if (w->len + len > w->cap) {
        size_t cap = w->cap ? w->cap : 1 << 20;
        while (cap < w->len + len)
            cap *= 2;
        uint8_t *buf = realloc(w->buf, cap);
        if (buf == NULL)
            return TALLY_ENOMEM;
        w->buf = buf;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, val, len);
    w->off[w->nblocks] = w->len;
    w->blen[w->nblocks] = len;
    w->kheight[w->nblocks] = height;
    w->nblocks++;
    w->len += len;
    w->window_txs += count;
    return TALLY_OK;
}

/* The block reader: a RocksDB iterator over the 'B' keys. */
struct reader {
    rocksdb_iterator_t *it;
    bool end;       /* no more blocks to read */
    size_t bad_key; /* length of a malformed block key, 0 if none */
};

/* Copy the next blocks into the empty window w until it is full. */
static int window_fill(struct reader *r, struct window *w)
{
    for (; !r->end && rocksdb_iter_valid(r->it); rocksdb_iter_next(r->it)) {
        size_t klen, vlen;
        const char *key = rocksdb_iter_key(r->it, &klen);
        if (klen < 1 || key[0] != LEDGER_KEY_BLOCK)
            break;
        if (klen != 9) {
            r->bad_key = klen; /* reported after the blocks before it are checked */
            break;
        }
        uint64_t height = 0;
        for (int i = 0; i < 8; i++)
            height = (height << 8) | (uint8_t)key[1 + i];
        const char *val = rocksdb_iter_value(r->it, &vlen);
        uint32_t count =
            vlen >= LEDGER_BLOCK_HEADER_BYTES ? ledger_get_u32((const uint8_t *)val + 140) : 0;
        if (count > LEDGER_BLOCK_MAX_TXS)
            count = 0; /* the decoder will complain */
        if (w->nblocks > 0 && window_full(w, count))
            return TALLY_OK; /* this block starts the next window */
        int rc = window_add(w, height, val, vlen, count);
        if (rc != TALLY_OK)
            return rc;
    }
    r->end = true;
    return TALLY_OK;
}

/* Decode the window's blocks (up to the first that does not decode) and
 * queue their items for verification and hashing. */
static int window_seal(struct audit *a, struct window *w)
{
    memset(&w->derr, 0, sizeof(w->derr));
    w->nitems = 0;
    for (w->ok_blocks = 0; w->ok_blocks < w->nblocks; w->ok_blocks++) {
        struct ledger_block *b = &w->blocks[w->ok_blocks];
        if (ledger_block_decode(w->buf + w->off[w->ok_blocks], w->blen[w->ok_blocks], b,
                                &w->derr) != TALLY_OK)
            break;
        if (w->nitems + b->h.tx_count > WINDOW_TX_CAP)
            break; /* cannot happen: window_full leaves room for a maximal block */
        w->first[w->ok_blocks] = w->nitems;
        uint8_t gen = b->h.height == 0;
        for (uint32_t i = 0; i < b->h.tx_count; i++) {
            w->item[w->nitems] = b->items + (size_t)i * b->item_bytes;
            w->genesis[w->nitems++] = gen;
        }
    }
    w->batch.pending = 0;
    return pool_submit(a->pool, &w->batch, verify_task, w, w->nitems, VERIFY_CHUNK);
}

/* Check a sealed window's blocks in height order (waits for its items). */
static int window_check(struct audit *a, struct window *w)
{
    pool_wait(a->pool, &w->batch);
    int rc = TALLY_OK;
    for (size_t k = 0; k < w->ok_blocks && rc == TALLY_OK && a->rep->intact; k++) {
        rc = check_block(a, w, k);
        if (rc == TALLY_OK)
            lt_settle(a, false);
    }
    if (rc == TALLY_OK && a->rep->intact && w->ok_blocks < w->nblocks)
        problem(a, w->kheight[w->ok_blocks], "block does not decode: %s", w->derr.msg);
    return rc;
}

/* Count the stored tx index entries (run by the pool next to the walk). */
static void count_index_task(void *arg, size_t start, size_t end)
{
    (void)start;
    (void)end;
    struct audit *a = arg;
    rocksdb_iterator_t *it = rocksdb_create_iterator(a->db, a->ro);
    char first = LEDGER_KEY_TX;
    uint64_t n = 0;
    for (rocksdb_iter_seek(it, &first, 1); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen;
        const char *key = rocksdb_iter_key(it, &klen);
        if (klen < 1 || key[0] != LEDGER_KEY_TX)
            break;
        n++;
    }
    rocksdb_iter_destroy(it);
    a->index_stored = n;
}

static int walk_blocks(struct audit *a, const struct ledger_audit_opts *opts, uint64_t head)
{
    struct pool pool;
    struct window *win = calloc(2, sizeof(struct window));
    if (win == NULL)
        return TALLY_ENOMEM;
    int rc = window_init(&win[0]);
    if (rc == TALLY_OK)
        rc = window_init(&win[1]);
    if (rc == TALLY_OK)
        rc = pool_init(&pool, a->workers);
    if (rc != TALLY_OK) {
        window_free(&win[0]);
        window_free(&win[1]);
        free(win);
        return rc;
    }
    a->pool = &pool;
    rc = pool_submit(&pool, &a->index_batch, count_index_task, a, 1, 1);
    uint64_t last_report = 0;
    char first = LEDGER_KEY_BLOCK;
    struct reader r = {.it = rocksdb_create_iterator(a->db, a->ro)};
    rocksdb_iter_seek(r.it, &first, 1);
    /* Two windows in flight: while window cur is executed, the other one is
     * verified; then cur is refilled with the blocks after it. */
    int cur = 0;
    for (int i = 0; i < 2 && rc == TALLY_OK; i++) {
        rc = window_fill(&r, &win[i]);
        if (rc == TALLY_OK && win[i].nblocks > 0)
            rc = window_seal(a, &win[i]);
    }
    while (rc == TALLY_OK && a->rep->intact && win[cur].nblocks > 0) {
        struct window *w = &win[cur];
        bool decode_failed = w->ok_blocks < w->nblocks;
        rc = window_check(a, w);
        window_reset(w);
        if (rc != TALLY_OK || !a->rep->intact)
            break;
        if (opts->progress != NULL && a->rep->txs - last_report >= 4096) {
            opts->progress(opts->progress_ctx, a->next_height ? a->next_height - 1 : 0, head,
                           a->rep->txs);
            last_report = a->rep->txs;
        }
        if (!decode_failed) {
            rc = window_fill(&r, w);
            if (rc == TALLY_OK && w->nblocks > 0)
                rc = window_seal(a, w);
        }
        cur = 1 - cur;
    }
    if (rc == TALLY_OK)
        lt_settle(a, true);
    if (rc == TALLY_OK && a->rep->intact) {
        pool_wait(&pool, &a->index_batch);
        a->index_counted = true;
    }
    char *e = NULL;
    rocksdb_iter_get_error(r.it, &e);
    rocksdb_iter_destroy(r.it);
    if (rc == TALLY_OK && r.bad_key != 0)
        problem(a, a->next_height, "a block key of %zu bytes is stored after this height",
                r.bad_key);
    if (e != NULL) {
        problem(a, a->next_height, "reading blocks: %s", e);
        rocksdb_free(e);
    }
    pool_destroy(&pool);
    a->pool = NULL;
    while (a->lt_head != NULL) {
        struct ltblock *lb = a->lt_head;
        a->lt_head = lb->next;
        ltblock_free(lb);
    }
    a->lt_tail = NULL;
    window_free(&win[0]);
    window_free(&win[1]);
    free(win);
    return rc;
}

/* Stored accounts against the re-executed state, both ways. */
static void check_accounts(struct audit *a)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(a->db, a->ro, a->cf_acct);
    char first = LEDGER_KEY_ACCOUNT;
    size_t stored = 0;
    char hex[65];
    for (rocksdb_iter_seek(it, &first, 1); rocksdb_iter_valid(it) && a->rep->intact;
         rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *key = rocksdb_iter_key(it, &klen);
        if (klen < 1 || key[0] != LEDGER_KEY_ACCOUNT)
            break;
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
        if (klen != 1 + TC_PUBKEY_BYTES) {
            problem(a, LEDGER_AUDIT_NO_HEIGHT, "an account key of %zu bytes is stored", klen);
            break;
        }
        tc_pubkey pk;
        memcpy(pk.b, key + 1, TC_PUBKEY_BYTES);
        stored++;
        struct acct *e = amap_find(a, &pk);
        if (e != NULL && vlen == LEDGER_ACCOUNT_BYTES && ledger_get_u64(v) == e->balance &&
            ledger_get_u64(v + 8) == e->nonce && ledger_get_u64(v + 16) == e->last_height)
            continue; /* the common case: no hex to format */
        hex32(pk.b, hex);
        if (e == NULL) {
            problem(a, LEDGER_AUDIT_NO_HEIGHT, "account %s is stored but no transaction created it",
                    hex);
            break;
        }
        if (vlen != LEDGER_ACCOUNT_BYTES) {
            problem(a, LEDGER_AUDIT_NO_HEIGHT, "account %s: stored record has %zu bytes", hex,
                    vlen);
            break;
        }
        uint64_t bal = ledger_get_u64(v), nonce = ledger_get_u64(v + 8),
                 last = ledger_get_u64(v + 16);
        if (bal != e->balance)
            problem(a, LEDGER_AUDIT_NO_HEIGHT,
                    "account %s: stored balance %llu != re-executed %llu (last changed at "
                    "height %llu)",
                    hex, (unsigned long long)bal, (unsigned long long)e->balance,
                    (unsigned long long)e->last_height);
        else if (nonce != e->nonce)
            problem(a, LEDGER_AUDIT_NO_HEIGHT,
                    "account %s: stored nonce %llu != re-executed %llu (last changed at height "
                    "%llu)",
                    hex, (unsigned long long)nonce, (unsigned long long)e->nonce,
                    (unsigned long long)e->last_height);
        else if (last != e->last_height)
            problem(a, LEDGER_AUDIT_NO_HEIGHT,
                    "account %s: stored last-changed height %llu != re-executed %llu", hex,
                    (unsigned long long)last, (unsigned long long)e->last_height);
    }
    rocksdb_iter_destroy(it);
    if (a->rep->intact && stored != a->accts.n) {
        /* Name the first (in creation order) re-executed account not stored. */
        for (size_t i = 0; i < a->accts.n; i++) {
            uint8_t key[1 + TC_PUBKEY_BYTES];
            key[0] = LEDGER_KEY_ACCOUNT;
            memcpy(key + 1, a->accts.v[i].pk.b, TC_PUBKEY_BYTES);
            char *e = NULL;
            size_t len;
            char *val =
                rocksdb_get_cf(a->db, a->ro, a->cf_acct, (const char *)key, sizeof(key), &len, &e);
            if (e != NULL)
                rocksdb_free(e);
            if (val == NULL) {
                hex32(a->accts.v[i].pk.b, hex);
                problem(a, LEDGER_AUDIT_NO_HEIGHT,
                        "account %s is missing from the stored state (last changed at height "
                        "%llu)",
                        hex, (unsigned long long)a->accts.v[i].last_height);
                break;
            }
            free(val);
        }
        problem(a, LEDGER_AUDIT_NO_HEIGHT, "%zu accounts stored, %zu re-executed", stored,
                a->accts.n);
    }
}

static void check_index_count(struct audit *a)
{
    if (!a->index_counted)
        count_index_task(a, 0, 1);
    uint64_t n = a->index_stored;
    if (n != a->index_entries)
        problem(a, LEDGER_AUDIT_NO_HEIGHT,
                "the tx index has %llu entries but the blocks have %llu first occurrences",
                (unsigned long long)n, (unsigned long long)a->index_entries);
}

static void check_head(struct audit *a, const char *head, size_t len)
{
    if (head == NULL) {
        problem(a, LEDGER_AUDIT_NO_HEIGHT, "the head record is missing");
        return;
    }
    if (len != LEDGER_HEAD_BYTES) {
        problem(a, LEDGER_AUDIT_NO_HEIGHT, "the head record has %zu bytes", len);
        return;
    }
    const uint8_t *p = (const uint8_t *)head;
    uint64_t h = ledger_get_u64(p);
    if (h != a->rep->head_height) {
        problem(a, LEDGER_AUDIT_NO_HEIGHT,
                "the head record says height %llu but the last block is %llu",
                (unsigned long long)h, (unsigned long long)a->rep->head_height);
        return;
    }
    if (memcmp(p + 8, a->rep->head_hash.b, TC_HASH_BYTES) != 0)
        problem(a, h, "the head record's block hash does not match the block");
    else if (memcmp(p + 40, a->rep->genesis_hash.b, TC_HASH_BYTES) != 0)
        problem(a, LEDGER_AUDIT_NO_HEIGHT, "the head record's genesis hash is wrong");
    else {
        uint8_t lanes[TC_LTHASH_BYTES];
        tc_lthash_serialize(&a->lt, lanes);
        if (memcmp(p + 72, lanes, TC_LTHASH_BYTES) != 0)
            problem(a, h, "the head record's state (LtHash) does not match the re-executed state");
    }
}

/* Checkpoint certificates against the audited chain (and, with keys, their
 * signatures). Runs after the walk: blocks 0..head are then known to be the
 * re-executed chain, so the stored block at a certified height is the audited
 * one. */
static void check_certs(struct audit *a, const struct ledger_audit_opts *opts)
{
    struct ledger_audit_report *rep = a->rep;
    rocksdb_iterator_t *it = rocksdb_create_iterator(a->db, a->ro);
    char first = LEDGER_KEY_CERT;
    char want[65], have[65];
    for (rocksdb_iter_seek(it, &first, 1); rocksdb_iter_valid(it) && rep->intact;
         rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *key = rocksdb_iter_key(it, &klen);
        if (klen < 1 || key[0] != LEDGER_KEY_CERT)
            break;
        if (klen != 9) {
            problem(a, LEDGER_AUDIT_NO_HEIGHT,
                    "a checkpoint certificate key of %zu bytes is stored", klen);
            break;
        }
        uint64_t height = ledger_key_height((const uint8_t *)key);
        const char *val = rocksdb_iter_value(it, &vlen);
        struct ledger_cert c;
        struct tally_err derr = {0};
        if (ledger_cert_decode((const uint8_t *)val, vlen, &c, &derr) != TALLY_OK) {
            problem(a, height, "checkpoint certificate does not decode: %s", derr.msg);
            break;
        }
        if (c.ck.height != height) {
            problem(a, height, "checkpoint certificate for height %llu is stored under this one",
                    (unsigned long long)c.ck.height);
            break;
        }
        if (height > rep->head_height) {
            problem(a, height, "checkpoint certificate above the head (block %llu)",
                    (unsigned long long)rep->head_height);
            break;
        }
        uint8_t bkey[9];
        ledger_block_key(height, bkey);
        char *e = NULL;
        size_t blen = 0;
        char *blk = rocksdb_get(a->db, a->ro, (const char *)bkey, sizeof(bkey), &blen, &e);
        struct ledger_block_header h;
        if (e != NULL) {
            problem(a, height, "checkpoint certificate: reading its block: %s", e);
            rocksdb_free(e);
            break;
        }
        if (blk == NULL || ledger_block_header_decode((const uint8_t *)blk, blen, &h) != TALLY_OK) {
            free(blk);
            problem(a, height, "checkpoint certificate: its block is unreadable");
            break;
        }
        free(blk);
        tc_hash hash;
        ledger_block_header_hash(&h, &hash);
        if (memcmp(hash.b, c.ck.block_hash.b, TC_HASH_BYTES) != 0) {
            hex32(c.ck.block_hash.b, want);
            hex32(hash.b, have);
            problem(a, height, "checkpoint certificate names block hash %s but the block is %s",
                    want, have);
            break;
        }
        if (memcmp(h.state_digest.b, c.ck.state_digest.b, TC_HASH_BYTES) != 0) {
            hex32(c.ck.state_digest.b, want);
            hex32(h.state_digest.b, have);
            problem(a, height, "checkpoint certificate names state digest %s but the block's is %s",
                    want, have);
            break;
        }
        if (opts->cert_keys != NULL &&
            ledger_cert_verify(&c, &rep->genesis_hash, opts->cert_keys, opts->cert_n,
                               opts->cert_quorum, &derr) != TALLY_OK) {
            problem(a, height, "checkpoint certificate: %s", derr.msg);
            break;
        }
        rep->certs++;
        rep->last_cert_height = height;
    }
    char *e = NULL;
    rocksdb_iter_get_error(it, &e);
    rocksdb_iter_destroy(it);
    if (e != NULL) {
        problem(a, LEDGER_AUDIT_NO_HEIGHT, "reading checkpoint certificates: %s", e);
        rocksdb_free(e);
    }
}

int ledger_audit(const char *dir, const struct ledger_audit_opts *opts,
                 struct ledger_audit_report *out, struct tally_err *err)
{
    static const struct ledger_audit_opts no_opts;
    if (opts == NULL)
        opts = &no_opts;
    memset(out, 0, sizeof(*out));
    out->intact = true;
    out->problem_height = LEDGER_AUDIT_NO_HEIGHT;
    out->last_cert_height = LEDGER_AUDIT_NO_HEIGHT;
    out->cert_signatures_checked = opts->cert_keys != NULL;
    double t0 = mono_now_s();

    struct audit a = {.rep = out, .accounts_at_problem = SIZE_MAX};
    int rc = ledger_open_unchecked(dir, &a.l, err);
    if (rc != TALLY_OK)
        return tally_err_wrap(err, "audit");
    a.db = ledger_rocksdb(a.l);
    a.cf_acct = ledger_accounts_cf(a.l);
    a.ro = ledger_readoptions(a.l);
    randombytes_buf(a.key, sizeof(a.key));
    tc_lthash_zero(&a.lt);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    a.workers = opts->workers ? opts->workers : (ncpu > 0 ? (unsigned)ncpu : 1);
    if (a.workers > MAX_WORKERS)
        a.workers = MAX_WORKERS;
    char *head = NULL;
    char *e = NULL;
    size_t head_len = 0;
    uint8_t hkey = LEDGER_KEY_HEAD;
    head = rocksdb_get(a.db, a.ro, (const char *)&hkey, 1, &head_len, &e);
    if (e != NULL) {
        problem(&a, LEDGER_AUDIT_NO_HEIGHT, "reading the head record: %s", e);
        rocksdb_free(e);
        goto done;
    }
    uint64_t head_height = head && head_len >= 8 ? ledger_get_u64((uint8_t *)head) : 0;

    rc = walk_blocks(&a, opts, head_height);
    if (rc != TALLY_OK) {
        tally_errf(err, rc, "audit of %s: out of memory", dir);
        goto out;
    }
    if (out->intact && out->blocks == 0)
        problem(&a, LEDGER_AUDIT_NO_HEIGHT, "data directory %s has no genesis block", dir);
    if (out->intact)
        check_head(&a, head, head_len);
    if (out->intact)
        check_accounts(&a);
    if (out->intact)
        check_index_count(&a);
    if (out->intact)
        check_certs(&a, opts);
    if (opts->progress != NULL)
        opts->progress(opts->progress_ctx, a.next_height ? a.next_height - 1 : 0, head_height,
                       out->txs);
done:
    out->accounts = a.accounts_at_problem != SIZE_MAX ? a.accounts_at_problem : a.accts.n;
    out->seconds = mono_now_s() - t0;
    out->tx_per_sec = out->seconds > 0 ? (double)out->txs / out->seconds : 0;
out:
    free(head);
    free(a.touched);
    free(a.accts.v);
    free(a.accts.slots);
    free(a.seen.v);
    free(a.seen.used);
    ledger_close(a.l);
    return rc;
}
