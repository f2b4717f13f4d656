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

#define WINDOW_TXS 8192
#define WINDOW_BLOCKS 1024
#define MAX_WORKERS 64

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

struct audit {
    struct ledger *l;
    rocksdb_t *db;
    rocksdb_readoptions_t *ro;
    struct ledger_audit_report *rep;
    struct amap accts;
    struct hset seen;
    uint8_t key[crypto_shorthash_KEYBYTES];
    tc_lthash lt;
    uint64_t next_height;
    tc_hash prev_hash;
    uint64_t index_entries; /* expected tx index entries */
    uint32_t *touched;      /* accounts touched in the current block */
    size_t ntouched, touched_cap;
    unsigned workers;
};

struct window;
struct vjob {
    struct window *w;
    size_t start, stride;
};

/* A window of consecutive stored blocks: read by the main thread, its
 * transactions verified and hashed by worker threads while the main thread
 * checks the previous window (double buffering). */
struct window {
    uint8_t *buf; /* the blocks' bytes, copied out of RocksDB */
    size_t len, cap;
    size_t *off, *blen;
    uint64_t *kheight; /* height from the key */
    size_t nblocks;
    size_t window_txs;
    struct ledger_block *blocks;
    size_t ok_blocks; /* blocks[0..ok_blocks) decoded */
    struct tally_err derr;
    const uint8_t **tx;
    uint8_t *verdict; /* 0 bad signature, 1 good, 2 malformed */
    tc_hash *hashes;  /* tx hashes */
    tc_hash *leaves;  /* Merkle leaves */
    size_t ntx;
    pthread_t th[MAX_WORKERS];
    struct vjob jobs[MAX_WORKERS];
    unsigned nthreads; /* running */
};

static void problem(struct audit *a, uint64_t height, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void problem(struct audit *a, uint64_t height, const char *fmt, ...)
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
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p + used, size - used, fmt, ap);
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

/* ---- parallel signature verification ----------------------------------------- */

static void *verify_worker(void *arg)
{
    struct vjob *j = arg;
    struct window *w = j->w;
    for (size_t i = j->start; i < w->ntx; i += j->stride) {
        struct ledger_tx tx;
        ledger_tx_hash_bytes(w->tx[i], &w->hashes[i]);
        ledger_block_leaf(w->tx[i], LEDGER_TX_BYTES, &w->leaves[i]);
        if (ledger_tx_decode(w->tx[i], LEDGER_TX_BYTES, &tx) != TALLY_OK)
            w->verdict[i] = 2;
        else
            w->verdict[i] = ledger_tx_verify(&tx) == TALLY_OK;
    }
    return NULL;
}

static void window_verify_start(struct audit *a, struct window *w)
{
    struct vjob *jobs = w->jobs;
    unsigned n = a->workers;
    if (w->ntx < 64)
        n = 1;
    w->nthreads = 0;
    for (unsigned i = 0; i < n; i++) {
        jobs[i] = (struct vjob){w, i, n};
        if (pthread_create(&w->th[i], NULL, verify_worker, &jobs[i]) != 0)
            break;
        w->nthreads++;
    }
    if (w->nthreads < n) {
        /* Could not start them all: let the started ones finish, redo all here. */
        for (unsigned i = 0; i < w->nthreads; i++)
            pthread_join(w->th[i], NULL);
        w->nthreads = 0;
        struct vjob all = {w, 0, 1};
        verify_worker(&all);
    }
}

static void window_verify_join(struct window *w)
{
    for (unsigned i = 0; i < w->nthreads; i++)
        pthread_join(w->th[i], NULL);
    w->nthreads = 0;
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
    hex32(h->b, hex);
    if (val == NULL) {
        problem(a, height, "tx %u (%s) is missing from the tx index", i, hex);
        return;
    }
    const uint8_t *p = (const uint8_t *)val;
    if (len != LEDGER_TXINDEX_BYTES || ledger_get_u64(p) != height || ledger_get_u32(p + 8) != i ||
        p[12] != result)
        problem(a, height, "tx %u (%s): tx index entry does not match the block", i, hex);
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

static void lt_account(tc_lthash *lt, const tc_pubkey *pk, uint64_t bal, uint64_t nonce, bool add)
{
    uint8_t elem[LEDGER_ACCOUNT_ELEM_BYTES];
    ledger_account_elem(pk, bal, nonce, elem);
    if (add)
        tc_lthash_add(lt, elem, sizeof(elem));
    else
        tc_lthash_remove(lt, elem, sizeof(elem));
}

static int check_genesis(struct audit *a, const struct ledger_block *b)
{
    for (uint32_t i = 0; i < b->h.tx_count; i++) {
        const uint8_t *item = b->items + (size_t)i * LEDGER_GENESIS_ENTRY_BYTES;
        if (i > 0 && memcmp(item - LEDGER_GENESIS_ENTRY_BYTES, item, TC_PUBKEY_BYTES) >= 0) {
            problem(a, 0, "genesis entry %u is out of order or a duplicate", i);
            return TALLY_OK;
        }
        if (b->results[i] != 0) {
            problem(a, 0, "genesis entry %u has a non-zero result", i);
            return TALLY_OK;
        }
        tc_pubkey pk;
        uint64_t bal;
        ledger_genesis_entry_decode(item, &pk, &bal);
        struct acct *e = amap_insert(a, &pk);
        if (e == NULL)
            return TALLY_ENOMEM;
        e->balance = bal;
        lt_account(&a->lt, &pk, bal, 0, true);
    }
    return TALLY_OK;
}

/* Check block k of the window. Returns TALLY_OK (problems go to the report). */
static int check_block(struct audit *a, struct window *w, size_t k, size_t first_tx)
{
    const struct ledger_block *b = &w->blocks[k];
    uint64_t height = w->kheight[k];
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
    if (height == 0)
        ledger_block_tx_root(b->items, b->item_bytes, b->h.tx_count, &root);
    else
        tc_merkle_root(w->leaves + first_tx, b->h.tx_count, &root);
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
            const tc_hash *h = &w->hashes[first_tx + i];
            int seen = hset_add(a, h);
            if (seen < 0)
                return TALLY_ENOMEM;
            uint8_t result;
            uint8_t v = w->verdict[first_tx + i];
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
        for (size_t t = 0; t < a->ntouched; t++) {
            struct acct *e = &a->accts.v[a->touched[t]];
            if (e->existed)
                lt_account(&a->lt, &e->pk, e->old_balance, e->old_nonce, false);
            lt_account(&a->lt, &e->pk, e->balance, e->nonce, true);
        }
        rep->txs += b->h.tx_count;
    }
    tc_hash digest;
    tc_lthash_digest(&a->lt, &digest);
    if (memcmp(digest.b, b->h.state_digest.b, TC_HASH_BYTES) != 0) {
        problem(a, height, "state_digest does not match the re-executed state");
        return TALLY_OK;
    }
    ledger_block_header_hash(&b->h, &a->prev_hash);
    if (height == 0)
        rep->genesis_hash = a->prev_hash;
    rep->head_hash = a->prev_hash;
    rep->head_height = height;
    rep->state_digest = digest;
    rep->blocks++;
    a->next_height++;
    return TALLY_OK;
}

/* Window capacity in transactions: a full window plus one maximal block. */
#define WINDOW_TX_CAP (WINDOW_TXS + LEDGER_BLOCK_MAX_TXS)

static int window_init(struct window *w)
{
    w->off = malloc(WINDOW_BLOCKS * sizeof(size_t));
    w->blen = malloc(WINDOW_BLOCKS * sizeof(size_t));
    w->kheight = malloc(WINDOW_BLOCKS * sizeof(uint64_t));
    w->blocks = malloc(WINDOW_BLOCKS * sizeof(struct ledger_block));
    w->tx = malloc(WINDOW_TX_CAP * sizeof(*w->tx));
    w->verdict = malloc(WINDOW_TX_CAP);
    w->hashes = malloc(WINDOW_TX_CAP * sizeof(tc_hash));
    w->leaves = malloc(WINDOW_TX_CAP * sizeof(tc_hash));
    if (!w->off || !w->blen || !w->kheight || !w->blocks || !w->tx || !w->verdict || !w->hashes ||
        !w->leaves)
        return TALLY_ENOMEM;
    return TALLY_OK;
}

static void window_free(struct window *w)
{
    window_verify_join(w);
    free(w->buf);
    free(w->off);
    free(w->blen);
    free(w->kheight);
    free(w->blocks);
    free(w->tx);
    free(w->verdict);
    free(w->hashes);
    free(w->leaves);
}

static void window_reset(struct window *w)
{
    w->nblocks = 0;
    w->len = 0;
    w->ntx = 0;
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

/* Decode the window's blocks (up to the first that does not decode) and
 * start verifying their transactions in the background. */
static void window_seal(struct audit *a, struct window *w)
{
    memset(&w->derr, 0, sizeof(w->derr));
    w->ntx = 0;
    for (w->ok_blocks = 0; w->ok_blocks < w->nblocks; w->ok_blocks++) {
        struct ledger_block *b = &w->blocks[w->ok_blocks];
        if (ledger_block_decode(w->buf + w->off[w->ok_blocks], w->blen[w->ok_blocks], b,
                                &w->derr) != TALLY_OK)
            break;
        if (b->h.height != 0 && b->item_bytes == LEDGER_TX_BYTES)
            for (uint32_t i = 0; i < b->h.tx_count && w->ntx < WINDOW_TX_CAP; i++)
                w->tx[w->ntx++] = b->items + (size_t)i * LEDGER_TX_BYTES;
    }
    window_verify_start(a, w);
}

/* Check a sealed window's blocks in height order (joins its verifiers first). */
static int window_check(struct audit *a, struct window *w)
{
    window_verify_join(w);
    int rc = TALLY_OK;
    size_t first_tx = 0;
    for (size_t k = 0; k < w->ok_blocks && rc == TALLY_OK && a->rep->intact; k++) {
        rc = check_block(a, w, k, first_tx);
        if (w->blocks[k].h.height != 0)
            first_tx += w->blocks[k].h.tx_count;
    }
    if (rc == TALLY_OK && a->rep->intact && w->ok_blocks < w->nblocks)
        problem(a, w->kheight[w->ok_blocks], "block does not decode: %s", w->derr.msg);
    window_reset(w);
    return rc;
}

static int walk_blocks(struct audit *a, const struct ledger_audit_opts *opts, uint64_t head)
{
    struct window *win = calloc(2, sizeof(struct window));
    if (win == NULL)
        return TALLY_ENOMEM;
    int rc = window_init(&win[0]);
    if (rc == TALLY_OK)
        rc = window_init(&win[1]);
    if (rc != TALLY_OK) {
        window_free(&win[0]);
        window_free(&win[1]);
        free(win);
        return rc;
    }
    int cur = 0;          /* the window being filled */
    bool pending = false; /* the other window is sealed and awaits its check */
    size_t bad_key = 0;   /* length of a malformed block key, 0 if none */
    uint64_t last_report = 0;
    rocksdb_iterator_t *it = rocksdb_create_iterator(a->db, a->ro);
    char first = LEDGER_KEY_BLOCK;
    for (rocksdb_iter_seek(it, &first, 1); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *key = rocksdb_iter_key(it, &klen);
        if (klen < 1 || key[0] != LEDGER_KEY_BLOCK)
            break;
        if (klen != 9) {
            bad_key = klen; /* reported after the blocks before it are checked */
            break;
        }
        uint64_t height = 0;
        for (int i = 0; i < 8; i++)
            height = (height << 8) | (uint8_t)key[1 + i];
        const char *val = rocksdb_iter_value(it, &vlen);
        uint32_t count =
            vlen >= LEDGER_BLOCK_HEADER_BYTES ? ledger_get_u32((const uint8_t *)val + 140) : 0;
        if (count > LEDGER_BLOCK_MAX_TXS)
            count = 0; /* the decoder will complain */
        struct window *w = &win[cur];
        if (w->nblocks > 0 && window_full(w, count)) {
            /* Seal this window, check the previous one meanwhile. */
            window_seal(a, w);
            if (pending)
                rc = window_check(a, &win[1 - cur]);
            pending = true;
            cur = 1 - cur;
            if (rc != TALLY_OK || !a->rep->intact)
                break;
            if (opts->progress != NULL && a->rep->txs - last_report >= 4096) {
                opts->progress(opts->progress_ctx, a->next_height ? a->next_height - 1 : 0, head,
                               a->rep->txs);
                last_report = a->rep->txs;
            }
            w = &win[cur];
        }
        rc = window_add(w, height, val, vlen, count);
        if (rc != TALLY_OK)
            break;
    }
    char *e = NULL;
    rocksdb_iter_get_error(it, &e);
    rocksdb_iter_destroy(it);
    if (rc == TALLY_OK && pending && a->rep->intact)
        rc = window_check(a, &win[1 - cur]);
    if (rc == TALLY_OK && a->rep->intact && win[cur].nblocks > 0) {
        window_seal(a, &win[cur]);
        rc = window_check(a, &win[cur]);
    }
    if (rc == TALLY_OK && bad_key != 0)
        problem(a, a->next_height, "a block key of %zu bytes is stored after this height", bad_key);
    if (e != NULL) {
        problem(a, a->next_height, "reading blocks: %s", e);
        rocksdb_free(e);
    }
    window_free(&win[0]);
    window_free(&win[1]);
    free(win);
    return rc;
}

/* Stored accounts against the re-executed state, both ways. */
static void check_accounts(struct audit *a)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator(a->db, a->ro);
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
        hex32(pk.b, hex);
        stored++;
        struct acct *e = amap_find(a, &pk);
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
            char *val = rocksdb_get(a->db, a->ro, (const char *)key, sizeof(key), &len, &e);
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

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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
    double t0 = now_seconds();

    struct audit a = {.rep = out};
    int rc = ledger_open_unchecked(dir, &a.l, err);
    if (rc != TALLY_OK)
        return tally_err_wrap(err, "audit");
    a.db = ledger_rocksdb(a.l);
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
        opts->progress(opts->progress_ctx, a.next_height, head_height, out->txs);
done:
    out->accounts = a.accts.n;
    out->seconds = now_seconds() - t0;
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
