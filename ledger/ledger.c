/* The ledger state machine over RocksDB. See ledger/ledger.h and docs/FORMAT.md. */
#include "ledger/ledger.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "ledger/block.h"
#include "ledger/ledger_internal.h"

/* RocksDB's block cache (uncompressed blocks; grows as used). 1,000,000
 * accounts take ~60 MB of account blocks. */
#define LEDGER_BLOCK_CACHE_BYTES ((size_t)256 << 20)
#define LEDGER_MAX_WAL_BYTES ((uint64_t)128 << 20) /* two of RocksDB's default 64 MiB memtables */
/* The accounts family (see ledger_open_opts): hash buckets of its memtable
 * (2 MiB of pointers each) and the size of its SST data blocks. */
#define LEDGER_ACCT_MEMTABLE_BUCKETS ((size_t)1 << 18)
#define LEDGER_ACCT_BLOCK_BYTES ((size_t)1024)

/* Free space an open needs above the floor (LEDGER_MIN_FREE_BYTES): RocksDB
 * preallocates a new 4 MiB MANIFEST at every open. */
#define LEDGER_OPEN_FREE_BYTES ((uint64_t)4 << 20)

/* One account touched by the block being applied, in first-touch order. */
struct acct_entry {
    tc_pubkey pk;
    struct ledger_account cur;
    struct ledger_account old;
    uint64_t hash; /* keyed hash of pk: places it in acct_slots and acct_cache */
    bool loaded;   /* cur, old and existed are read from RocksDB (or acct_cache) */
    bool existed;
    bool dirty;
};

/* Committed records of the accounts the last blocks read or changed, so that
 * a block's batched read skips RocksDB for hot accounts: finding a key in
 * the memtable (a skip list of ~500k entries under load) was ~7 % of a
 * replica's CPU at full load. Direct-mapped by the keyed hash of the public
 * key. A slot is written only after the block that read or changed the
 * account is committed (apply_block is the only writer of accounts after
 * genesis), so a hit is always what RocksDB holds. */
#define LEDGER_ACCT_CACHE_SLOTS 65536u /* 4 MiB, allocated at the first block */
struct acct_cache_slot {
    tc_pubkey pk;
    struct ledger_account a;
    bool used;
};

struct ledger {
    rocksdb_t *db;
    rocksdb_column_family_handle_t *cf;      /* "default": everything but accounts */
    rocksdb_column_family_handle_t *cf_acct; /* LEDGER_ACCOUNTS_CF: the 'A' keys */
    rocksdb_options_t *options;
    rocksdb_options_t *acct_options; /* options plus in-place updates */
    rocksdb_env_t *env;              /* in-memory env, or NULL */
    rocksdb_block_based_table_options_t *table;
    rocksdb_block_based_table_options_t *acct_table; /* table, with LEDGER_ACCT_BLOCK_BYTES */
    rocksdb_cache_t *cache;                          /* block cache, LEDGER_BLOCK_CACHE_BYTES */
    rocksdb_readoptions_t *ro;
    rocksdb_readoptions_t *ro_block; /* prefetch_block's batched read: see there */
    rocksdb_writeoptions_t *wo;
    rocksdb_writeoptions_t *wo_deferred; /* no fsync: a block without meta (defer_block_sync) */
    bool defer_block_sync;               /* opts.sync && opts.defer_block_sync */
    bool unsynced;                       /* a deferred write is not yet covered by an fsync */
    rocksdb_writebatch_t *batch;         /* staged meta changes + the block being written */
    bool cert_staged;                    /* batch holds a certificate ...        */
    uint64_t cert_staged_max;            /* ... the highest staged one is for this height */
    char *dir;
    bool read_only;
    uint64_t min_free; /* bytes kept free in dir (0: no check; in-memory, read-only) */
    int dir_fd;        /* dir, kept open for fstatvfs (-1: statvfs by path) */

    bool has_genesis;
    uint64_t height;
    tc_hash head_hash;
    tc_hash genesis_hash;
    tc_lthash lt;
    tc_lthash lt_next;

    /* Scratch reused across blocks, sized for `cap` transactions. */
    uint32_t cap;
    uint8_t *results;
    tc_hash *hashes;
    uint8_t *indexed; /* 1 when tx i gets a tx-index entry (first occurrence) */
    uint8_t *block_buf;
    struct acct_entry *accts; /* up to 2 * cap */
    uint32_t nacct;
    uint32_t *acct_slots; /* open addressing: entry index + 1, 0 = empty */
    uint32_t *tx_slots;   /* same, over hashes[] of first occurrences */
    uint32_t *order;      /* up to 3 * cap: keys of the WriteBatch (or of the batched read)
                           * in ascending order */
    /* The block's batched read (prefetch_block), up to 3 * cap keys. */
    uint8_t (*mg_key)[1 + TC_PUBKEY_BYTES];
    const char **mg_keys;
    size_t *mg_lens;
    rocksdb_pinnableslice_t **mg_vals;
    char **mg_errs;
    uint32_t slot_mask;
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
    struct acct_cache_slot *acct_cache; /* LEDGER_ACCT_CACHE_SLOTS, or NULL */
};

rocksdb_t *ledger_rocksdb(struct ledger *l)
{
    return l->db;
}

rocksdb_column_family_handle_t *ledger_accounts_cf(struct ledger *l)
{
    return l->cf_acct;
}

rocksdb_readoptions_t *ledger_readoptions(struct ledger *l)
{
    return l->ro;
}

const tc_lthash *ledger_lthash(const struct ledger *l)
{
    return &l->lt;
}

/* Classify a RocksDB error string and set err. Frees msg. */
static int rocks_err(struct tally_err *err, char *msg, const char *dir, const char *what)
{
    int code = TALLY_EIO;
    if (strncmp(msg, "Corruption", 10) == 0)
        code = TALLY_ECORRUPT;
    else if (strncmp(msg, "IO error", 8) == 0 &&
             (strstr(msg, "/LOCK") != NULL || strstr(msg, "lock file") != NULL ||
              strstr(msg, "lock hold") != NULL))
        code = TALLY_EBUSY; /* RocksDB's LOCK file: flock()ed by another open */
    else if (strstr(msg, "No space left") != NULL)
        code = TALLY_ENOSPC;
    if (code == TALLY_EBUSY)
        tally_errf(err, code, "data directory %s is in use by another process (%s)", dir, msg);
    else if (code == TALLY_ECORRUPT)
        tally_errf(err, code, "data directory %s is corrupt: %s: %s", dir, what, msg);
    else
        tally_errf(err, code, "data directory %s: %s: %s", dir, what, msg);
    rocksdb_free(msg);
    return code;
}

/* RocksDB counts every read and write in a thread-local perf context
 * (perf level "enable_count" by default), reached from its shared library
 * through __tls_get_addr: ~0.8 % of the machine at full load, for counters
 * nobody reads. The level is per thread, so each thread that reads or
 * writes turns it off once, before its first call. */
static void perf_counters_off(void)
{
    static __thread bool off;
    if (!off) {
        rocksdb_set_perf_level(rocksdb_disable);
        off = true;
    }
}

/* Get a value from column family cf; *val NULL when absent. The value is
 * malloc'd by RocksDB. */
static int db_get_cf(struct ledger *l, rocksdb_column_family_handle_t *cf, const uint8_t *key,
                     size_t klen, char **val, size_t *len, struct tally_err *err)
{
    perf_counters_off();
    char *e = NULL;
    *val = rocksdb_get_cf(l->db, l->ro, cf, (const char *)key, klen, len, &e);
    if (e != NULL)
        return rocks_err(err, e, l->dir, "read");
    return TALLY_OK;
}

/* The same from the default column family (every key but the accounts). */
static int db_get(struct ledger *l, const uint8_t *key, size_t klen, char **val, size_t *len,
                  struct tally_err *err)
{
    return db_get_cf(l, l->cf, key, klen, val, len, err);
}

static void account_key(const tc_pubkey *pk, uint8_t key[1 + TC_PUBKEY_BYTES])
{
    key[0] = LEDGER_KEY_ACCOUNT;
    memcpy(key + 1, pk->b, TC_PUBKEY_BYTES);
}

/* The same for an account's record; *val NULL when there is no account. */
static int acct_db_get(struct ledger *l, const tc_pubkey *pk, char **val, size_t *len,
                       struct tally_err *err)
{
    uint8_t key[1 + TC_PUBKEY_BYTES];
    account_key(pk, key);
    return db_get_cf(l, l->cf_acct, key, sizeof(key), val, len, err);
}

/* The free-space floor: refuse (TALLY_ENOSPC, nothing written) when the
 * filesystem of the data directory would have less than l->min_free bytes
 * free after `need` more. RocksDB is never the one to find the disk full: its
 * out-of-space handling (background errors, auto-recovery that polls for
 * space, LOG writes into the full directory) is version-dependent, and the
 * replica then stops on a clear line instead. Cost: one fstatvfs() per write
 * batch, on a descriptor kept open (a path lookup each time was ~5 % of the
 * loop thread at light load). When it fails there is no verdict: the write
 * goes on. */
static int space_check(const struct ledger *l, uint64_t need, const char *what,
                       struct tally_err *err)
{
    struct statvfs st;
    if (l->min_free == 0 || (l->dir_fd >= 0 ? fstatvfs(l->dir_fd, &st) : statvfs(l->dir, &st)) != 0)
        return TALLY_OK;
    uint64_t avail = (uint64_t)st.f_bavail * st.f_frsize;
    if (avail >= l->min_free && avail - l->min_free >= need)
        return TALLY_OK;
    return tally_errf(err, TALLY_ENOSPC,
                      "data directory %s is nearly full: %llu KiB free, the ledger keeps %llu KiB "
                      "free and %s needs %llu KiB more: nothing written (free space on that "
                      "filesystem, then restart)",
                      l->dir, (unsigned long long)(avail >> 10),
                      (unsigned long long)(l->min_free >> 10), what,
                      (unsigned long long)((need + 1023) >> 10));
}

/* Write l->batch; with fsync (per opts.sync) unless `deferred` (a block
 * without staged meta, on a ledger opened with defer_block_sync). */
static int db_write(struct ledger *l, bool deferred, struct tally_err *err)
{
    perf_counters_off();
    char *e = NULL;
    /* Twice the batch: its WAL record now, its share of a memtable flush later. */
    size_t bytes = 0;
    (void)rocksdb_writebatch_data(l->batch, &bytes);
    int rc = space_check(l, 2 * (uint64_t)bytes, "this write", err);
    if (rc != TALLY_OK)
        return rc;
    deferred = deferred && l->defer_block_sync;
    rocksdb_write(l->db, deferred ? l->wo_deferred : l->wo, l->batch, &e);
    if (e != NULL)
        return rocks_err(err, e, l->dir, "write");
    /* One WAL, written in order: an fsync covers every write before it. */
    l->unsynced = deferred;
    return TALLY_OK;
}

/* Forget what was staged: it has been written. */
static void batch_clear(struct ledger *l)
{
    rocksdb_writebatch_clear(l->batch);
    l->cert_staged = false;
    l->cert_staged_max = 0;
}

/* Undo the block's puts after a failed write, keeping staged meta changes.
 * RocksDB aborts on a NULL error pointer when the rollback itself fails: then
 * drop everything staged (the caller reports the write error and the replica
 * stops). */
static void batch_rollback(struct ledger *l)
{
    char *e = NULL;
    rocksdb_writebatch_rollback_to_save_point(l->batch, &e);
    if (e != NULL) {
        rocksdb_free(e);
        batch_clear(l);
    }
}

/* ---- head ------------------------------------------------------------------- */

static void head_encode(const struct ledger *l, uint64_t height, const tc_hash *hash,
                        const tc_lthash *lt, uint8_t out[LEDGER_HEAD_BYTES])
{
    ledger_put_u64(out, height);
    memcpy(out + 8, hash->b, TC_HASH_BYTES);
    memcpy(out + 40, l->genesis_hash.b, TC_HASH_BYTES);
    tc_lthash_serialize(lt, out + 72);
}

/* Load the head record and cross-check it against the head block. */
static int head_load(struct ledger *l, struct tally_err *err)
{
    uint8_t key = LEDGER_KEY_HEAD;
    char *val = NULL, *blk = NULL;
    size_t len = 0, blen = 0;
    int rc = db_get(l, &key, 1, &val, &len, err);
    if (rc != TALLY_OK)
        goto out;
    if (val == NULL) {
        l->has_genesis = false;
        goto out;
    }
    if (len != LEDGER_HEAD_BYTES) {
        rc = tally_errf(err, TALLY_ECORRUPT,
                        "data directory %s is corrupt: head record has %zu bytes", l->dir, len);
        goto out;
    }
    /* The state digest's construction is part of the format: a directory
     * from another format would mix two digests. Refuse it by name. */
    uint8_t vkey = LEDGER_KEY_FORMAT;
    char *tag = NULL;
    size_t tlen = 0;
    rc = db_get(l, &vkey, 1, &tag, &tlen, err);
    if (rc != TALLY_OK)
        goto out;
    if (tag == NULL || tlen != strlen(LEDGER_FORMAT_TAG) ||
        memcmp(tag, LEDGER_FORMAT_TAG, tlen) != 0) {
        rc = tally_errf(err, TALLY_EMISMATCH,
                        "data directory %s holds ledger format \"%.*s\", this build reads \"%s\" "
                        "(export it with the old build, or start over with an empty directory)",
                        l->dir, tag != NULL ? (int)(tlen > 40 ? 40 : tlen) : 4,
                        tag != NULL ? tag : "none", LEDGER_FORMAT_TAG);
        free(tag);
        goto out;
    }
    free(tag);
    const uint8_t *p = (const uint8_t *)val;
    l->height = ledger_get_u64(p);
    memcpy(l->head_hash.b, p + 8, TC_HASH_BYTES);
    memcpy(l->genesis_hash.b, p + 40, TC_HASH_BYTES);
    tc_lthash_deserialize(&l->lt, p + 72);
    l->has_genesis = true;

    uint8_t bkey[9];
    ledger_block_key(l->height, bkey);
    rc = db_get(l, bkey, sizeof(bkey), &blk, &blen, err);
    if (rc != TALLY_OK)
        goto out;
    struct ledger_block b;
    struct tally_err derr = {0};
    if (blk == NULL || ledger_block_decode((const uint8_t *)blk, blen, &b, &derr) != TALLY_OK) {
        rc = tally_errf(err, TALLY_ECORRUPT, "data directory %s is corrupt: head block %llu is %s",
                        l->dir, (unsigned long long)l->height, blk == NULL ? "missing" : derr.msg);
        goto out;
    }
    tc_hash h, digest;
    ledger_block_header_hash(&b.h, &h);
    tc_lthash_digest(&l->lt, &digest);
    if (b.h.height != l->height || !tc_equal(h.b, l->head_hash.b, TC_HASH_BYTES) ||
        !tc_equal(digest.b, b.h.state_digest.b, TC_HASH_BYTES)) {
        rc = tally_errf(err, TALLY_ECORRUPT,
                        "data directory %s is corrupt: head record does not match block %llu",
                        l->dir, (unsigned long long)l->height);
        goto out;
    }
out:
    free(val);
    free(blk);
    return rc;
}

/* ---- open / close ------------------------------------------------------------ */

int ledger_open(const char *dir, struct ledger **out, struct tally_err *err)
{
    return ledger_open_opts(dir, NULL, out, err);
}

/* A data directory from before the accounts column family (format v2 and
 * older) is refused by name, before the open, which would otherwise add the
 * family and leave a directory the old build cannot open either. */
static int accounts_cf_check(struct ledger *l, const char *dir, bool read_only,
                             struct tally_err *err)
{
    char *e = NULL;
    size_t n = 0;
    char **names = rocksdb_list_column_families(l->options, dir, &n, &e);
    if (e != NULL) { /* no database yet, or one the open will name the fault of */
        rocksdb_free(e);
        if (names != NULL) /* an empty array, allocated all the same */
            rocksdb_list_column_families_destroy(names, 0);
        return TALLY_OK;
    }
    bool found = false;
    for (size_t i = 0; i < n; i++)
        found = found || strcmp(names[i], LEDGER_ACCOUNTS_CF) == 0;
    rocksdb_list_column_families_destroy(names, n);
    if (found || (n == 0 && !read_only))
        return TALLY_OK;
    return tally_errf(err, TALLY_EMISMATCH,
                      "data directory %s holds an older ledger format (no \"%s\" column family), "
                      "this build reads \"%s\" (export it with the old build, or start over with "
                      "an empty directory)",
                      dir, LEDGER_ACCOUNTS_CF, LEDGER_FORMAT_TAG);
}

/* SST options shared by both families: a bloom filter (10 bits per key),
 * the ledger's one block cache, a hash index inside each data block, and
 * data blocks of block_bytes (0: RocksDB's default, 4 KiB). */
static void table_options_init(rocksdb_block_based_table_options_t *t, rocksdb_cache_t *cache,
                               size_t block_bytes)
{
    rocksdb_block_based_options_set_filter_policy(t, rocksdb_filterpolicy_create_bloom_full(10));
    rocksdb_block_based_options_set_block_cache(t, cache);
    rocksdb_block_based_options_set_data_block_index_type(
        t, rocksdb_block_based_table_data_block_index_type_binary_search_and_hash);
    if (block_bytes > 0)
        rocksdb_block_based_options_set_block_size(t, block_bytes);
}

static int open_impl(const char *dir, const struct ledger_open_opts *opts, bool load_head,
                     struct ledger **out, struct tally_err *err)
{
    static const struct ledger_open_opts defaults = LEDGER_OPEN_OPTS_DEFAULT;
    if (opts == NULL)
        opts = &defaults;
    *out = NULL;
    if (dir == NULL || dir[0] == '\0')
        return tally_errf(err, TALLY_EINVAL, "no data directory given");
    if (!opts->in_memory && !opts->read_only && mkdir(dir, 0700) != 0 && errno != EEXIST)
        return tally_errf(err, TALLY_EIO, "cannot create data directory %s: %s", dir,
                          strerror(errno));
    if (!opts->in_memory && opts->read_only) {
        struct stat st;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
            return tally_errf(err, TALLY_ENOTFOUND, "data directory %s does not exist", dir);
    }

    int rc = TALLY_OK;
    struct ledger *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return tally_errf(err, TALLY_ENOMEM, "out of memory opening %s", dir);
    l->dir = strdup(dir);
    l->read_only = opts->read_only;
    l->dir_fd = -1;
    if (!opts->in_memory && !opts->read_only) {
        l->min_free = opts->min_free_bytes ? opts->min_free_bytes : LEDGER_MIN_FREE_BYTES;
        l->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    l->options = rocksdb_options_create();
    l->table = rocksdb_block_based_options_create();
    l->ro = rocksdb_readoptions_create();
    l->ro_block = rocksdb_readoptions_create();
    l->wo = rocksdb_writeoptions_create();
    l->wo_deferred = rocksdb_writeoptions_create(); /* sync off: RocksDB's default */
    l->batch = rocksdb_writebatch_create();
    if (l->dir == NULL) {
        rc = tally_errf(err, TALLY_ENOMEM, "out of memory opening %s", dir);
        goto fail;
    }
    randombytes_buf(l->hash_key, sizeof(l->hash_key));
    /* Tuned for what apply_block does: two random point reads per transfer
     * (accounts) and one that misses (the tx index); see BENCHMARKS.md,
     * "The ledger alone". None of this changes the keys or values stored. */
    l->cache = rocksdb_cache_create_lru(LEDGER_BLOCK_CACHE_BYTES);
    table_options_init(l->table, l->cache, 0);
    rocksdb_options_set_block_based_table_factory(l->options, l->table);
    /* Account keys and values, tx hashes and signed blocks are random bytes:
     * compressing them costs CPU on every flush, compaction and read and saves
     * next to nothing. */
    rocksdb_options_set_compression(l->options, rocksdb_no_compression);
    /* A bloom filter over the memtable's keys: most reads (every tx-index
     * probe, most accounts) miss the memtable and skip its skip list. */
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(l->options, 0.05);
    rocksdb_options_set_memtable_whole_key_filtering(l->options, 1);
    /* Read SST files through mmap: a block-cache miss is a page-cache hit
     * without a pread() and a copy (one per account not touched lately).
     * RocksDB's in-memory environment cannot mmap. */
    rocksdb_options_set_allow_mmap_reads(l->options, !opts->in_memory);
    rocksdb_options_set_create_if_missing(l->options, !opts->read_only);
    rocksdb_options_set_paranoid_checks(l->options, 1);
    /* After an OS crash or power loss the WAL may end in a torn record
     * (defer_block_sync leaves unsynced blocks at its tail by design):
     * recover up to it, as RocksDB 7.8 does by default, rather than refuse
     * to open (rocksdb_absolute_consistency_recovery). */
    rocksdb_options_set_wal_recovery_mode(l->options, rocksdb_point_in_time_recovery);
    rocksdb_options_set_keep_log_file_num(l->options, 4);
    /* FATAL only: RocksDB's own LOG lives in the data directory, and on a
     * full disk its background threads abort the process when they cannot
     * write a warning there (seen with Debian's 7.8.3). */
    rocksdb_options_set_info_log_level(l->options, 4 /* FATAL */);
    if (opts->in_memory) {
        l->env = rocksdb_create_mem_env();
        rocksdb_options_set_env(l->options, l->env);
    }
    rocksdb_readoptions_set_verify_checksums(l->ro, 1);
    /* Iterators see every key in order, whatever the accounts family's
     * prefix extractor (one account's key): tally audit walks the family. */
    rocksdb_readoptions_set_total_order_seek(l->ro, 1);
    rocksdb_readoptions_set_verify_checksums(l->ro_block, 1);
    rocksdb_readoptions_set_ignore_range_deletions(l->ro_block, 1);
    rocksdb_writeoptions_set_sync(l->wo, opts->sync);
    l->defer_block_sync = opts->sync && opts->defer_block_sync && !opts->read_only;

    /* Opening writes too (MANIFEST, OPTIONS, a new WAL, the replayed
     * memtable): below the floor, refuse before RocksDB starts. */
    rc = space_check(l, LEDGER_OPEN_FREE_BYTES, "opening it", err);
    if (rc != TALLY_OK)
        goto fail;
    /* Accounts have a column family of their own, whose memtable updates a
     * record in place: an account written in every block then stays one
     * entry instead of one per block, so the skip list that every block's
     * account writes search is ~the accounts touched lately, not every
     * version of them since the last flush. That search was the largest
     * cost of applying a block after signatures (BENCHMARKS.md, "Ninth
     * pass"). Nothing reads the accounts family at a snapshot or through an
     * iterator while a block is written, which in-place updates rule out. */
    rc = accounts_cf_check(l, dir, opts->read_only, err);
    if (rc != TALLY_OK)
        goto fail;
    rocksdb_options_set_allow_concurrent_memtable_write(l->options, 0); /* in-place needs it */
    rocksdb_options_set_create_missing_column_families(l->options, !opts->read_only);
    /* The accounts family flushes rarely (its memtable hardly grows), and
     * RocksDB keeps every WAL file until each family's data in it is
     * flushed: this bound makes it flush the accounts when the WAL reaches
     * two memtables' worth, so a restart replays about as much as before. */
    rocksdb_options_set_max_total_wal_size(l->options, LEDGER_MAX_WAL_BYTES);
    l->acct_options = rocksdb_options_create_copy(l->options);
    rocksdb_options_set_inplace_update_support(l->acct_options, 1);
    /* Its memtable is a hash table of account keys (the prefix extractor
     * takes the whole 33-byte key) rather than a skip list: writing an
     * account the memtable does not hold yet, as with most of 1,000,000,
     * searched the skip list twice (the in-place check, then the insert),
     * each a chain of cache misses that lengthened with the memtable. Its
     * SST blocks are 1 KiB: an account read from a file loads and checksums
     * one block. Both cut applying a block with 1,000,000 accounts by 21-26 %
     * and leave 1,000 unchanged (BENCHMARKS.md, "Tenth pass").
     * Every key in the family is one account's whole key (account_key):
     * Debian's RocksDB asserts on a shorter one. Only tally audit and
     * ledger_verify_files iterate the family, with total_order_seek. */
    rocksdb_options_set_prefix_extractor(
        l->acct_options, rocksdb_slicetransform_create_fixed_prefix(1 + TC_PUBKEY_BYTES));
    rocksdb_options_set_hash_link_list_rep(l->acct_options, LEDGER_ACCT_MEMTABLE_BUCKETS);
    l->acct_table = rocksdb_block_based_options_create();
    table_options_init(l->acct_table, l->cache, LEDGER_ACCT_BLOCK_BYTES);
    rocksdb_options_set_block_based_table_factory(l->acct_options, l->acct_table);
    char *e = NULL;
    const char *cf_names[2] = {"default", LEDGER_ACCOUNTS_CF};
    const rocksdb_options_t *cf_opts[2] = {l->options, l->acct_options};
    rocksdb_column_family_handle_t *cfs[2] = {NULL, NULL};
    if (opts->read_only)
        l->db = rocksdb_open_for_read_only_column_families(l->options, dir, 2, cf_names, cf_opts,
                                                           cfs, 0, &e);
    else
        l->db = rocksdb_open_column_families(l->options, dir, 2, cf_names, cf_opts, cfs, &e);
    if (e != NULL) {
        rc = rocks_err(err, e, dir, "open");
        goto fail;
    }
    l->cf = cfs[0];
    l->cf_acct = cfs[1];
    if (load_head) {
        rc = head_load(l, err);
        if (rc != TALLY_OK)
            goto fail;
    }
    *out = l;
    return TALLY_OK;
fail:
    ledger_close(l);
    return rc;
}

int ledger_open_opts(const char *dir, const struct ledger_open_opts *opts, struct ledger **out,
                     struct tally_err *err)
{
    return open_impl(dir, opts, true, out, err);
}

int ledger_open_unchecked(const char *dir, struct ledger **out, struct tally_err *err)
{
    struct ledger_open_opts opts = {.read_only = true};
    return open_impl(dir, &opts, false, out, err);
}

void ledger_close(struct ledger *l)
{
    if (l == NULL)
        return;
    if (l->db != NULL && l->unsynced) {
        struct tally_err ignored = {0};
        (void)ledger_sync(l, &ignored); /* best effort, like the flush below */
    }
    if (l->db != NULL && !l->read_only && l->env == NULL) {
        /* Flush the memtables so the next open need not replay the WAL. Best
         * effort: everything is already durable (or deliberately not synced). */
        rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
        char *e = NULL;
        rocksdb_flushoptions_set_wait(fo, 1);
        rocksdb_flush(l->db, fo, &e);
        rocksdb_free(e);
        e = NULL;
        if (l->cf_acct != NULL)
            rocksdb_flush_cf(l->db, fo, l->cf_acct, &e);
        rocksdb_free(e);
        rocksdb_flushoptions_destroy(fo);
    }
    if (l->cf != NULL)
        rocksdb_column_family_handle_destroy(l->cf);
    if (l->cf_acct != NULL)
        rocksdb_column_family_handle_destroy(l->cf_acct);
    if (l->db != NULL)
        rocksdb_close(l->db);
    rocksdb_writebatch_destroy(l->batch);
    rocksdb_writeoptions_destroy(l->wo);
    rocksdb_writeoptions_destroy(l->wo_deferred);
    rocksdb_readoptions_destroy(l->ro);
    rocksdb_readoptions_destroy(l->ro_block);
    rocksdb_options_destroy(l->options);
    if (l->acct_options != NULL)
        rocksdb_options_destroy(l->acct_options);
    rocksdb_block_based_options_destroy(l->table);
    if (l->acct_table != NULL)
        rocksdb_block_based_options_destroy(l->acct_table);
    if (l->cache != NULL)
        rocksdb_cache_destroy(l->cache);
    if (l->env != NULL)
        rocksdb_env_destroy(l->env);
    if (l->dir_fd >= 0)
        close(l->dir_fd);
    free(l->results);
    free(l->hashes);
    free(l->indexed);
    free(l->block_buf);
    free(l->accts);
    free(l->acct_slots);
    free(l->tx_slots);
    free(l->order);
    free(l->mg_key);
    free(l->mg_keys);
    free(l->mg_lens);
    free(l->mg_vals);
    free(l->mg_errs);
    free(l->acct_cache);
    free(l->dir);
    free(l);
}

/* ---- head accessors ---------------------------------------------------------- */

bool ledger_has_genesis(const struct ledger *l)
{
    return l->has_genesis;
}

uint64_t ledger_height(const struct ledger *l)
{
    return l->height;
}

void ledger_head_hash(const struct ledger *l, tc_hash *out)
{
    *out = l->head_hash;
}

void ledger_state_digest(const struct ledger *l, tc_hash *out)
{
    tc_lthash_digest(&l->lt, out);
}

void ledger_genesis_hash(const struct ledger *l, tc_hash *out)
{
    *out = l->genesis_hash;
}

/* ---- genesis ----------------------------------------------------------------- */

static int cmp_genesis(const void *a, const void *b)
{
    const struct ledger_genesis_account *x = a, *y = b;
    return memcmp(x->pk.b, y->pk.b, TC_PUBKEY_BYTES);
}

static void account_encode(const struct ledger_account *a, uint8_t out[LEDGER_ACCOUNT_BYTES])
{
    ledger_put_u64(out, a->balance);
    ledger_put_u64(out + 8, a->nonce);
    ledger_put_u64(out + 16, a->last_height);
}

int ledger_init_genesis(struct ledger *l, const struct ledger_genesis_account *accts, size_t n,
                        struct tally_err *err)
{
    if (l->read_only)
        return tally_errf(err, TALLY_EINVAL, "ledger %s is open read-only", l->dir);
    if (n > LEDGER_BLOCK_MAX_TXS)
        return tally_errf(err, TALLY_ETOOBIG, "genesis has %zu accounts (limit %d)", n,
                          LEDGER_BLOCK_MAX_TXS);
    int rc = TALLY_OK;
    struct ledger_genesis_account *sorted = malloc((n ? n : 1) * sizeof(*sorted));
    size_t size = ledger_block_encoded_size(0, (uint32_t)n);
    uint8_t *buf = calloc(1, size);
    if (sorted == NULL || buf == NULL) {
        rc = tally_errf(err, TALLY_ENOMEM, "out of memory building genesis");
        goto out;
    }
    if (n > 0)
        memcpy(sorted, accts, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), cmp_genesis);
    for (size_t i = 1; i < n; i++) {
        if (memcmp(sorted[i - 1].pk.b, sorted[i].pk.b, TC_PUBKEY_BYTES) == 0) {
            char hex[2 * TC_PUBKEY_BYTES + 1];
            tc_hex_encode(sorted[i].pk.b, TC_PUBKEY_BYTES, hex);
            rc = tally_errf(err, TALLY_EINVAL, "genesis lists account %s twice", hex);
            goto out;
        }
    }

    struct ledger_block_header h = {.version = LEDGER_BLOCK_VERSION, .tx_count = (uint32_t)n};
    uint8_t *items = buf + LEDGER_BLOCK_HEADER_BYTES;
    uint8_t *results = items + n * LEDGER_GENESIS_ENTRY_BYTES; /* zeros: calloc */
    tc_lthash lt;
    tc_lthash_zero(&lt);
    for (size_t i = 0; i < n; i++) {
        uint8_t elem[LEDGER_ACCOUNT_ELEM_BYTES];
        ledger_genesis_entry_encode(&sorted[i].pk, sorted[i].balance,
                                    items + i * LEDGER_GENESIS_ENTRY_BYTES);
        ledger_account_elem(&sorted[i].pk, sorted[i].balance, 0, elem);
        tc_lthash_add(&lt, elem, sizeof(elem));
    }
    ledger_block_tx_root(items, LEDGER_GENESIS_ENTRY_BYTES, (uint32_t)n, &h.tx_root);
    ledger_block_results_hash(results, (uint32_t)n, &h.results_hash);
    tc_lthash_digest(&lt, &h.state_digest);
    ledger_block_header_encode(&h, buf);
    tc_hash hash;
    ledger_block_header_hash(&h, &hash);

    if (l->has_genesis) {
        if (!tc_equal(hash.b, l->genesis_hash.b, TC_HASH_BYTES)) {
            char want[65], have[65];
            tc_hex_encode(hash.b, TC_HASH_BYTES, want);
            tc_hex_encode(l->genesis_hash.b, TC_HASH_BYTES, have);
            rc = tally_errf(err, TALLY_EMISMATCH,
                            "data directory %s belongs to another cluster (its genesis block is "
                            "%s, the configured genesis is %s)",
                            l->dir, have, want);
        }
        goto out; /* identical: nothing to do */
    }

    rocksdb_writebatch_set_save_point(l->batch);
    uint8_t vkey = LEDGER_KEY_FORMAT;
    rocksdb_writebatch_put(l->batch, (const char *)&vkey, 1, LEDGER_FORMAT_TAG,
                           strlen(LEDGER_FORMAT_TAG));
    uint8_t bkey[9];
    ledger_block_key(0, bkey);
    rocksdb_writebatch_put(l->batch, (const char *)bkey, sizeof(bkey), (const char *)buf, size);
    for (size_t i = 0; i < n; i++) {
        uint8_t akey[1 + TC_PUBKEY_BYTES], aval[LEDGER_ACCOUNT_BYTES];
        struct ledger_account a = {.balance = sorted[i].balance};
        account_key(&sorted[i].pk, akey);
        account_encode(&a, aval);
        rocksdb_writebatch_put_cf(l->batch, l->cf_acct, (const char *)akey, sizeof(akey),
                                  (const char *)aval, sizeof(aval));
    }
    l->genesis_hash = hash;
    uint8_t hkey = LEDGER_KEY_HEAD, head[LEDGER_HEAD_BYTES];
    head_encode(l, 0, &hash, &lt, head);
    rocksdb_writebatch_put(l->batch, (const char *)&hkey, 1, (const char *)head, sizeof(head));
    rc = db_write(l, false, err);
    if (rc != TALLY_OK) {
        batch_rollback(l);
        memset(&l->genesis_hash, 0, sizeof(l->genesis_hash));
        tally_err_wrap(err, "writing genesis");
        goto out;
    }
    batch_clear(l);
    l->has_genesis = true;
    l->height = 0;
    l->head_hash = hash;
    l->lt = lt;
out:
    free(sorted);
    free(buf);
    return rc;
}

/* ---- apply ------------------------------------------------------------------- */

static int ensure_capacity(struct ledger *l, uint32_t count, struct tally_err *err)
{
    uint32_t want = count < 64 ? 64 : count;
    if (want <= l->cap)
        return TALLY_OK;
    uint32_t slots = 1;
    while (slots < 4 * want)
        slots <<= 1;
    uint8_t *results = realloc(l->results, want);
    if (results != NULL)
        l->results = results;
    tc_hash *hashes = realloc(l->hashes, (size_t)want * sizeof(tc_hash));
    if (hashes != NULL)
        l->hashes = hashes;
    uint8_t *indexed = realloc(l->indexed, want);
    if (indexed != NULL)
        l->indexed = indexed;
    uint8_t *buf = realloc(l->block_buf, ledger_block_encoded_size(1, want));
    if (buf != NULL)
        l->block_buf = buf;
    struct acct_entry *accts = realloc(l->accts, 2 * (size_t)want * sizeof(*accts));
    if (accts != NULL)
        l->accts = accts;
    uint32_t *as = realloc(l->acct_slots, (size_t)slots * sizeof(uint32_t));
    if (as != NULL)
        l->acct_slots = as;
    uint32_t *ts = realloc(l->tx_slots, (size_t)slots * sizeof(uint32_t));
    if (ts != NULL)
        l->tx_slots = ts;
    uint32_t *order = realloc(l->order, 3 * (size_t)want * sizeof(uint32_t));
    if (order != NULL)
        l->order = order;
    size_t nkeys = 3 * (size_t)want;
    uint8_t(*mg_key)[1 + TC_PUBKEY_BYTES] = realloc(l->mg_key, nkeys * sizeof(*mg_key));
    if (mg_key != NULL)
        l->mg_key = mg_key;
    const char **mg_keys = realloc(l->mg_keys, nkeys * sizeof(*mg_keys));
    if (mg_keys != NULL)
        l->mg_keys = mg_keys;
    size_t *mg_lens = realloc(l->mg_lens, nkeys * sizeof(*mg_lens));
    if (mg_lens != NULL)
        l->mg_lens = mg_lens;
    rocksdb_pinnableslice_t **mg_vals = realloc(l->mg_vals, nkeys * sizeof(*mg_vals));
    if (mg_vals != NULL)
        l->mg_vals = mg_vals;
    char **mg_errs = realloc(l->mg_errs, nkeys * sizeof(*mg_errs));
    if (mg_errs != NULL)
        l->mg_errs = mg_errs;
    if (!results || !hashes || !indexed || !buf || !accts || !as || !ts || !order || !mg_key ||
        !mg_keys || !mg_lens || !mg_vals || !mg_errs)
        return tally_errf(err, TALLY_ENOMEM, "out of memory for a block of %u transactions", count);
    l->cap = want;
    l->slot_mask = slots - 1;
    return TALLY_OK;
}

static uint64_t key_hash(const struct ledger *l, const uint8_t *key32)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, key32, 32, l->hash_key);
    return ledger_get_u64(h);
}

static uint32_t slot_of(const struct ledger *l, const uint8_t *key32)
{
    return (uint32_t)key_hash(l, key32) & l->slot_mask;
}

/* Has an earlier tx in this block the same hash? If not, remember tx i. */
static bool tx_seen_in_block(struct ledger *l, uint32_t i)
{
    uint32_t s = slot_of(l, l->hashes[i].b);
    while (l->tx_slots[s] != 0) {
        uint32_t j = l->tx_slots[s] - 1;
        if (memcmp(l->hashes[j].b, l->hashes[i].b, TC_HASH_BYTES) == 0)
            return true;
        s = (s + 1) & l->slot_mask;
    }
    l->tx_slots[s] = i + 1;
    return false;
}

static int account_decode(const struct ledger *l, const tc_pubkey *pk, const char *val, size_t len,
                          struct ledger_account *a, struct tally_err *err)
{
    if (len != LEDGER_ACCOUNT_BYTES) {
        char hex[65];
        tc_hex_encode(pk->b, TC_PUBKEY_BYTES, hex);
        return tally_errf(err, TALLY_ECORRUPT,
                          "data directory %s is corrupt: account %s has a %zu-byte record", l->dir,
                          hex, len);
    }
    const uint8_t *p = (const uint8_t *)val;
    a->balance = ledger_get_u64(p);
    a->nonce = ledger_get_u64(p + 8);
    a->last_height = ledger_get_u64(p + 16);
    return TALLY_OK;
}

/* The block-local entry of an account: found, or added zeroed and not loaded. */
static struct acct_entry *acct_entry_of(struct ledger *l, const tc_pubkey *pk, bool *added)
{
    uint64_t hash = key_hash(l, pk->b);
    uint32_t s = (uint32_t)hash & l->slot_mask;
    while (l->acct_slots[s] != 0) {
        struct acct_entry *e = &l->accts[l->acct_slots[s] - 1];
        if (memcmp(e->pk.b, pk->b, TC_PUBKEY_BYTES) == 0) {
            *added = false;
            return e;
        }
        s = (s + 1) & l->slot_mask;
    }
    struct acct_entry *e = &l->accts[l->nacct];
    memset(e, 0, sizeof(*e));
    e->pk = *pk;
    e->hash = hash;
    l->acct_slots[s] = ++l->nacct;
    *added = true;
    return e;
}

/* The block-local copy of an account: prefetched, or read now. */
static int acct_get(struct ledger *l, const tc_pubkey *pk, struct acct_entry **out,
                    struct tally_err *err)
{
    bool added;
    struct acct_entry *e = acct_entry_of(l, pk, &added);
    *out = e;
    if (e->loaded)
        return TALLY_OK;
    char *val = NULL;
    size_t len = 0;
    int rc = acct_db_get(l, pk, &val, &len, err);
    if (rc == TALLY_OK && val != NULL) {
        rc = account_decode(l, pk, val, len, &e->cur, err);
        e->existed = true;
    }
    free(val);
    if (rc != TALLY_OK)
        return rc;
    e->old = e->cur;
    e->loaded = true;
    return TALLY_OK;
}

/* Execute one decoded, signature-checked, non-duplicate transfer. */
static int execute_transfer(struct ledger *l, uint64_t height, const struct ledger_tx *tx,
                            uint8_t *result, struct tally_err *err)
{
    struct acct_entry *from = NULL, *to = NULL;
    int rc = acct_get(l, &tx->from, &from, err);
    if (rc != TALLY_OK)
        return rc;
    if (from->cur.nonce == UINT64_MAX || tx->nonce != from->cur.nonce + 1) {
        *result = LEDGER_RESULT_BAD_NONCE;
        return TALLY_OK;
    }
    if (tx->amount == 0) {
        *result = LEDGER_RESULT_ZERO_AMOUNT;
        return TALLY_OK;
    }
    if (memcmp(tx->from.b, tx->to.b, TC_PUBKEY_BYTES) == 0) {
        *result = LEDGER_RESULT_SELF_TRANSFER;
        return TALLY_OK;
    }
    if (from->cur.balance < tx->amount) {
        *result = LEDGER_RESULT_INSUFFICIENT_FUNDS;
        return TALLY_OK;
    }
    rc = acct_get(l, &tx->to, &to, err);
    if (rc != TALLY_OK)
        return rc;
    if (to->cur.balance > UINT64_MAX - tx->amount) {
        *result = LEDGER_RESULT_OVERFLOW;
        return TALLY_OK;
    }
    from->cur.balance -= tx->amount;
    from->cur.nonce = tx->nonce;
    from->cur.last_height = height;
    from->dirty = true;
    to->cur.balance += tx->amount;
    to->cur.last_height = height;
    to->dirty = true;
    *result = LEDGER_RESULT_OK;
    return TALLY_OK;
}

static int cmp_acct_idx(const void *a, const void *b, void *ctx)
{
    const struct acct_entry *v = ctx;
    return memcmp(v[*(const uint32_t *)a].pk.b, v[*(const uint32_t *)b].pk.b, TC_PUBKEY_BYTES);
}

static int cmp_hash_idx(const void *a, const void *b, void *ctx)
{
    const tc_hash *v = ctx;
    return memcmp(v[*(const uint32_t *)a].b, v[*(const uint32_t *)b].b, TC_HASH_BYTES);
}

static struct acct_cache_slot *acct_cache_slot_of(const struct ledger *l,
                                                  const struct acct_entry *e)
{
    return &l->acct_cache[e->hash & (LEDGER_ACCT_CACHE_SLOTS - 1)];
}

/* Fill a new block-local entry from the cache: true on a hit. */
static bool acct_cache_load(struct ledger *l, struct acct_entry *e)
{
    if (l->acct_cache == NULL)
        return false;
    const struct acct_cache_slot *c = acct_cache_slot_of(l, e);
    if (!c->used || memcmp(c->pk.b, e->pk.b, TC_PUBKEY_BYTES) != 0)
        return false;
    e->cur = e->old = c->a;
    e->existed = true;
    e->loaded = true;
    return true;
}

/* After a block is committed: remember every account it read or wrote. */
static void acct_cache_store(struct ledger *l)
{
    if (l->acct_cache == NULL)
        l->acct_cache = calloc(LEDGER_ACCT_CACHE_SLOTS, sizeof(*l->acct_cache));
    if (l->acct_cache == NULL)
        return; /* out of memory: every block reads RocksDB, as without it */
    for (uint32_t i = 0; i < l->nacct; i++) {
        const struct acct_entry *e = &l->accts[i];
        if (!e->loaded || !(e->existed || e->dirty))
            continue; /* unread, or does not exist */
        struct acct_cache_slot *c = acct_cache_slot_of(l, e);
        c->pk = e->pk;
        c->a = e->cur;
        c->used = true;
    }
}

/* Read what the block will look up in one batched read, keys in ascending
 * order: every account its transfers name (both sides of each transfer that
 * decodes, whatever its signature or nonce) that the account cache does not
 * hold (acct_cache_load fills those) and the tx-index entry of each
 * transaction's first occurrence in the block. RocksDB then looks each SST
 * file's index and filter up once per batch instead of once per key
 * (BENCHMARKS.md, "The ledger alone"). Sets hashes[] and indexed[] (1: the
 * first occurrence in the block, and not in the ledger). An account record
 * that does not decode stays unloaded: acct_get reads it again and reports
 * it only if a transfer touches the account, as before. */
static int prefetch_block(struct ledger *l, const uint8_t *tx_bytes, uint32_t count,
                          struct tally_err *err)
{
    uint32_t na = 0, nt = 0;
    uint32_t *txi = l->order + 2 * (size_t)count; /* after the accounts' indexes */
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *p = tx_bytes + (size_t)i * LEDGER_TX_BYTES;
        ledger_tx_hash_bytes(p, &l->hashes[i]);
        l->indexed[i] = !tx_seen_in_block(l, i);
        if (l->indexed[i])
            txi[nt++] = i;
        struct ledger_tx tx;
        if (ledger_tx_decode(p, LEDGER_TX_BYTES, &tx) != TALLY_OK)
            continue;
        bool added;
        struct acct_entry *e = acct_entry_of(l, &tx.from, &added);
        if (added && !acct_cache_load(l, e))
            l->order[na++] = (uint32_t)(e - l->accts);
        e = acct_entry_of(l, &tx.to, &added);
        if (added && !acct_cache_load(l, e))
            l->order[na++] = (uint32_t)(e - l->accts);
    }
    if (na + nt == 0)
        return TALLY_OK;
    /* Sorted: the accounts (read from their family) first, then the tx index keys. */
    qsort_r(l->order, na, sizeof(uint32_t), cmp_acct_idx, l->accts);
    qsort_r(txi, nt, sizeof(uint32_t), cmp_hash_idx, l->hashes);
    for (uint32_t k = 0; k < na + nt; k++) {
        if (k < na) {
            account_key(&l->accts[l->order[k]].pk, l->mg_key[k]);
        } else {
            l->mg_key[k][0] = LEDGER_KEY_TX;
            memcpy(l->mg_key[k] + 1, l->hashes[txi[k - na]].b, TC_HASH_BYTES);
        }
        l->mg_keys[k] = (const char *)l->mg_key[k];
        l->mg_lens[k] = sizeof(l->mg_key[k]);
    }
    /* ro_block ignores range deletions. They are written only by
     * ledger_[stage_]delete_meta_range, inside the meta key space, so none covers an
     * account or tx-index key; and while the memtable holds one, RocksDB
     * 7.8's MemTable::MultiGet skips its bloom filter and searches the skip
     * list for every key, including each tx-index key that is not there
     * (~3 % of a replica's CPU at full load; a replica prunes its protocol
     * log with a range deletion at every checkpoint). */
    perf_counters_off();
    if (na > 0)
        rocksdb_batched_multi_get_cf(l->db, l->ro_block, l->cf_acct, na, l->mg_keys, l->mg_lens,
                                     l->mg_vals, l->mg_errs, true);
    if (nt > 0)
        rocksdb_batched_multi_get_cf(l->db, l->ro_block, l->cf, nt, l->mg_keys + na,
                                     l->mg_lens + na, l->mg_vals + na, l->mg_errs + na, true);
    int rc = TALLY_OK;
    for (uint32_t k = 0; k < na + nt; k++) {
        if (l->mg_errs[k] != NULL) {
            if (rc == TALLY_OK)
                rc = rocks_err(err, l->mg_errs[k], l->dir, "read");
            else
                rocksdb_free(l->mg_errs[k]);
            continue;
        }
        if (k >= na) {
            if (l->mg_vals[k] != NULL)
                l->indexed[txi[k - na]] = 0; /* in the ledger already */
        } else if (l->mg_vals[k] != NULL) {
            struct acct_entry *e = &l->accts[l->order[k]];
            size_t len = 0;
            const char *val = rocksdb_pinnableslice_value(l->mg_vals[k], &len);
            if (len == LEDGER_ACCOUNT_BYTES &&
                account_decode(l, &e->pk, val, len, &e->cur, err) == TALLY_OK) {
                e->existed = true;
                e->loaded = true;
            }
            e->old = e->cur;
        } else {
            l->accts[l->order[k]].loaded = true; /* no such account yet */
        }
        rocksdb_pinnableslice_destroy(l->mg_vals[k]); /* NULL: nothing */
    }
    return rc;
}

static int apply_block(struct ledger *l, uint64_t height, const uint8_t *tx_bytes, uint32_t count,
                       const uint8_t *sig_ok, bool verify, struct ledger_block_result *out,
                       struct tally_err *err)
{
    if (l->read_only)
        return tally_errf(err, TALLY_EINVAL, "ledger %s is open read-only", l->dir);
    if (!l->has_genesis)
        return tally_errf(err, TALLY_EINVAL, "ledger %s has no genesis block", l->dir);
    if (height != l->height + 1)
        return tally_errf(err, TALLY_EINVAL, "block %llu cannot follow block %llu",
                          (unsigned long long)height, (unsigned long long)l->height);
    if (count > LEDGER_BLOCK_MAX_TXS)
        return tally_errf(err, TALLY_ETOOBIG, "block of %u transactions (limit %d)", count,
                          LEDGER_BLOCK_MAX_TXS);
    if (count > 0 && tx_bytes == NULL)
        return tally_errf(err, TALLY_EINVAL, "no transaction bytes");
    int rc = ensure_capacity(l, count, err);
    if (rc != TALLY_OK)
        return rc;
    memset(l->acct_slots, 0, ((size_t)l->slot_mask + 1) * sizeof(uint32_t));
    memset(l->tx_slots, 0, ((size_t)l->slot_mask + 1) * sizeof(uint32_t));
    l->nacct = 0;
    rc = prefetch_block(l, tx_bytes, count, err);
    if (rc != TALLY_OK)
        goto fail;

    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *p = tx_bytes + (size_t)i * LEDGER_TX_BYTES;
        struct ledger_tx tx;
        bool seen = !l->indexed[i]; /* prefetch_block */
        if (ledger_tx_decode(p, LEDGER_TX_BYTES, &tx) != TALLY_OK) {
            l->results[i] = LEDGER_RESULT_MALFORMED;
            continue;
        }
        bool sig_valid = verify ? ledger_tx_verify(&tx) == TALLY_OK : sig_ok == NULL || sig_ok[i];
        if (!sig_valid) {
            l->results[i] = LEDGER_RESULT_BAD_SIGNATURE;
            continue;
        }
        if (seen) {
            l->results[i] = LEDGER_RESULT_DUPLICATE;
            continue;
        }
        rc = execute_transfer(l, height, &tx, &l->results[i], err);
        if (rc != TALLY_OK)
            goto fail;
    }

    /* State digest: remove each changed account's old element, add the new one. */
    l->lt_next = l->lt;
    for (uint32_t i = 0; i < l->nacct; i++) {
        struct acct_entry *e = &l->accts[i];
        if (!e->dirty)
            continue;
        uint8_t elem[LEDGER_ACCOUNT_ELEM_BYTES];
        if (e->existed) {
            ledger_account_elem(&e->pk, e->old.balance, e->old.nonce, elem);
            tc_lthash_remove(&l->lt_next, elem, sizeof(elem));
        }
        ledger_account_elem(&e->pk, e->cur.balance, e->cur.nonce, elem);
        tc_lthash_add(&l->lt_next, elem, sizeof(elem));
    }

    struct ledger_block_header h = {.version = LEDGER_BLOCK_VERSION,
                                    .height = height,
                                    .prev_hash = l->head_hash,
                                    .tx_count = count};
    if (count > 0)
        ledger_block_tx_root(tx_bytes, LEDGER_TX_BYTES, count, &h.tx_root);
    ledger_block_results_hash(l->results, count, &h.results_hash);
    tc_lthash_digest(&l->lt_next, &h.state_digest);
    size_t size = ledger_block_encoded_size(height, count);
    uint8_t *buf = l->block_buf;
    ledger_block_header_encode(&h, buf);
    if (count > 0) {
        memcpy(buf + LEDGER_BLOCK_HEADER_BYTES, tx_bytes, (size_t)count * LEDGER_TX_BYTES);
        memcpy(buf + LEDGER_BLOCK_HEADER_BYTES + (size_t)count * LEDGER_TX_BYTES, l->results,
               count);
    }
    tc_hash hash;
    ledger_block_header_hash(&h, &hash);

    /* One WriteBatch: staged meta (already in l->batch), then accounts, block,
     * head and tx index, in ascending key order. The order changes nothing
     * stored; RocksDB's memtable (a skip list) is its biggest cost here, and
     * keys inserted in order share the upper part of their search paths
     * (still in cache) instead of each walking a random one (BENCHMARKS.md,
     * "The ledger alone"). */
    /* Staged meta holds promises the caller is about to send: then the
     * block's batch is synced, whatever defer_block_sync says. */
    bool deferred = rocksdb_writebatch_count(l->batch) == 0;
    rocksdb_writebatch_set_save_point(l->batch);
    uint32_t n = 0;
    for (uint32_t i = 0; i < l->nacct; i++)
        if (l->accts[i].dirty)
            l->order[n++] = i;
    qsort_r(l->order, n, sizeof(uint32_t), cmp_acct_idx, l->accts);
    for (uint32_t k = 0; k < n; k++) {
        const struct acct_entry *e = &l->accts[l->order[k]];
        uint8_t key[1 + TC_PUBKEY_BYTES], val[LEDGER_ACCOUNT_BYTES];
        account_key(&e->pk, key);
        account_encode(&e->cur, val);
        rocksdb_writebatch_put_cf(l->batch, l->cf_acct, (const char *)key, sizeof(key),
                                  (const char *)val, sizeof(val));
    }
    uint8_t bkey[9];
    ledger_block_key(height, bkey);
    rocksdb_writebatch_put(l->batch, (const char *)bkey, sizeof(bkey), (const char *)buf, size);
    uint8_t hkey = LEDGER_KEY_HEAD, head[LEDGER_HEAD_BYTES];
    head_encode(l, height, &hash, &l->lt_next, head);
    rocksdb_writebatch_put(l->batch, (const char *)&hkey, 1, (const char *)head, sizeof(head));
    n = 0;
    for (uint32_t i = 0; i < count; i++)
        if (l->indexed[i])
            l->order[n++] = i;
    qsort_r(l->order, n, sizeof(uint32_t), cmp_hash_idx, l->hashes);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = l->order[k];
        uint8_t key[1 + TC_HASH_BYTES], val[LEDGER_TXINDEX_BYTES];
        key[0] = LEDGER_KEY_TX;
        memcpy(key + 1, l->hashes[i].b, TC_HASH_BYTES);
        ledger_put_u64(val, height);
        ledger_put_u32(val + 8, i);
        val[12] = l->results[i];
        rocksdb_writebatch_put(l->batch, (const char *)key, sizeof(key), (const char *)val,
                               sizeof(val));
    }
    rc = db_write(l, deferred, err);
    if (rc != TALLY_OK) {
        batch_rollback(l); /* keep staged meta */
        goto fail;
    }
    batch_clear(l);
    acct_cache_store(l);
    l->height = height;
    l->head_hash = hash;
    l->lt = l->lt_next;
    if (out != NULL) {
        out->height = height;
        out->block_hash = hash;
        out->state_digest = h.state_digest;
        out->count = count;
        out->results = l->results;
        out->tx_hashes = l->hashes;
    }
    return TALLY_OK;
fail:
    return tally_err_wrap(err, "applying block %llu", (unsigned long long)height);
}

int ledger_apply_block(struct ledger *l, uint64_t height, const uint8_t *tx_bytes, uint32_t count,
                       struct ledger_block_result *out, struct tally_err *err)
{
    return apply_block(l, height, tx_bytes, count, NULL, true, out, err);
}

int ledger_apply_block_verified(struct ledger *l, uint64_t height, const uint8_t *tx_bytes,
                                uint32_t count, const uint8_t *sig_ok,
                                struct ledger_block_result *out, struct tally_err *err)
{
    return apply_block(l, height, tx_bytes, count, sig_ok, false, out, err);
}

/* ---- queries ----------------------------------------------------------------- */

int ledger_get_block(struct ledger *l, uint64_t height, uint8_t **bytes, size_t *len, bool *found,
                     struct tally_err *err)
{
    *bytes = NULL;
    *len = 0;
    *found = false;
    uint8_t key[9];
    ledger_block_key(height, key);
    char *val = NULL;
    size_t vlen = 0;
    int rc = db_get(l, key, sizeof(key), &val, &vlen, err);
    if (rc != TALLY_OK || val == NULL)
        return rc;
    struct ledger_block b;
    struct tally_err derr = {0};
    if (ledger_block_decode((const uint8_t *)val, vlen, &b, &derr) != TALLY_OK ||
        b.h.height != height) {
        free(val);
        return tally_errf(err, TALLY_ECORRUPT, "data directory %s is corrupt: block %llu: %s",
                          l->dir, (unsigned long long)height,
                          derr.code ? derr.msg : "stored under the wrong height");
    }
    *bytes = (uint8_t *)val;
    *len = vlen;
    *found = true;
    return TALLY_OK;
}

int ledger_get_account(struct ledger *l, const tc_pubkey *pk, struct ledger_account *out,
                       bool *found, struct tally_err *err)
{
    memset(out, 0, sizeof(*out));
    *found = false;
    char *val = NULL;
    size_t len = 0;
    int rc = acct_db_get(l, pk, &val, &len, err);
    if (rc == TALLY_OK && val != NULL) {
        rc = account_decode(l, pk, val, len, out, err);
        *found = rc == TALLY_OK;
    }
    free(val);
    return rc;
}

int ledger_get_tx(struct ledger *l, const tc_hash *h, uint64_t *height, uint32_t *index,
                  uint8_t *result, bool *found, struct tally_err *err)
{
    *found = false;
    uint8_t key[1 + TC_HASH_BYTES];
    key[0] = LEDGER_KEY_TX;
    memcpy(key + 1, h->b, TC_HASH_BYTES);
    char *val = NULL;
    size_t len = 0;
    int rc = db_get(l, key, sizeof(key), &val, &len, err);
    if (rc != TALLY_OK || val == NULL)
        return rc;
    if (len != LEDGER_TXINDEX_BYTES) {
        free(val);
        return tally_errf(err, TALLY_ECORRUPT,
                          "data directory %s is corrupt: tx index entry of %zu bytes", l->dir, len);
    }
    const uint8_t *p = (const uint8_t *)val;
    if (height != NULL)
        *height = ledger_get_u64(p);
    if (index != NULL)
        *index = ledger_get_u32(p + 8);
    if (result != NULL)
        *result = p[12];
    *found = true;
    free(val);
    return TALLY_OK;
}

/* ---- meta -------------------------------------------------------------------- */

static int meta_key(const void *key, size_t key_len, uint8_t out[1 + LEDGER_META_MAX_KEY],
                    struct tally_err *err)
{
    if (key == NULL || key_len == 0 || key_len > LEDGER_META_MAX_KEY)
        return tally_errf(err, TALLY_EINVAL, "meta key of %zu bytes (1..%d)", key_len,
                          LEDGER_META_MAX_KEY);
    out[0] = LEDGER_KEY_META;
    memcpy(out + 1, key, key_len);
    return TALLY_OK;
}

int ledger_stage_meta_put(struct ledger *l, const void *key, size_t key_len, const void *val,
                          size_t val_len, struct tally_err *err)
{
    uint8_t k[1 + LEDGER_META_MAX_KEY];
    int rc = meta_key(key, key_len, k, err);
    if (rc != TALLY_OK)
        return rc;
    if (val_len > LEDGER_META_MAX_VALUE || (val == NULL && val_len > 0))
        return tally_errf(err, TALLY_ETOOBIG, "meta value of %zu bytes", val_len);
    if (l->read_only)
        return tally_errf(err, TALLY_EINVAL, "ledger %s is open read-only", l->dir);
    rocksdb_writebatch_put(l->batch, (const char *)k, key_len + 1, val ? (const char *)val : "",
                           val_len);
    return TALLY_OK;
}

int ledger_stage_meta_delete(struct ledger *l, const void *key, size_t key_len,
                             struct tally_err *err)
{
    uint8_t k[1 + LEDGER_META_MAX_KEY];
    int rc = meta_key(key, key_len, k, err);
    if (rc != TALLY_OK)
        return rc;
    if (l->read_only)
        return tally_errf(err, TALLY_EINVAL, "ledger %s is open read-only", l->dir);
    rocksdb_writebatch_delete(l->batch, (const char *)k, key_len + 1);
    return TALLY_OK;
}

bool ledger_unsynced(const struct ledger *l)
{
    return l->unsynced;
}

int ledger_sync(struct ledger *l, struct tally_err *err)
{
    if (!l->unsynced)
        return TALLY_OK;
    perf_counters_off();
    char *e = NULL;
    rocksdb_flush_wal(l->db, 1 /* and fsync it */, &e);
    if (e != NULL)
        return rocks_err(err, e, l->dir, "sync of the write-ahead log");
    l->unsynced = false;
    return TALLY_OK;
}

static int meta_flush(struct ledger *l, bool deferred, struct tally_err *err)
{
    if (rocksdb_writebatch_count(l->batch) == 0)
        return TALLY_OK;
    if (l->cert_staged && l->cert_staged_max > l->height)
        return tally_errf(err, TALLY_EINVAL,
                          "a checkpoint certificate for height %llu is staged but the ledger ends "
                          "at %llu: apply block %llu first (nothing written)",
                          (unsigned long long)l->cert_staged_max, (unsigned long long)l->height,
                          (unsigned long long)l->cert_staged_max);
    int rc = db_write(l, deferred, err);
    if (rc != TALLY_OK)
        return tally_err_wrap(err, "writing protocol state");
    batch_clear(l);
    return TALLY_OK;
}

int ledger_meta_flush(struct ledger *l, struct tally_err *err)
{
    return meta_flush(l, false, err);
}

int ledger_meta_flush_unsynced(struct ledger *l, struct tally_err *err)
{
    return meta_flush(l, true, err);
}

int ledger_put_meta(struct ledger *l, const void *key, size_t key_len, const void *val,
                    size_t val_len, struct tally_err *err)
{
    int rc = ledger_stage_meta_put(l, key, key_len, val, val_len, err);
    return rc != TALLY_OK ? rc : ledger_meta_flush(l, err);
}

int ledger_delete_meta(struct ledger *l, const void *key, size_t key_len, struct tally_err *err)
{
    int rc = ledger_stage_meta_delete(l, key, key_len, err);
    return rc != TALLY_OK ? rc : ledger_meta_flush(l, err);
}

int ledger_stage_meta_delete_range(struct ledger *l, const void *begin, size_t begin_len,
                                   const void *end, size_t end_len, struct tally_err *err)
{
    uint8_t b[1 + LEDGER_META_MAX_KEY], e[1 + LEDGER_META_MAX_KEY];
    int rc = meta_key(begin, begin_len, b, err);
    if (rc == TALLY_OK)
        rc = meta_key(end, end_len, e, err);
    if (rc != TALLY_OK)
        return rc;
    if (l->read_only)
        return tally_errf(err, TALLY_EINVAL, "ledger %s is open read-only", l->dir);
    rocksdb_writebatch_delete_range(l->batch, (const char *)b, begin_len + 1, (const char *)e,
                                    end_len + 1);
    return TALLY_OK;
}

int ledger_delete_meta_range(struct ledger *l, const void *begin, size_t begin_len, const void *end,
                             size_t end_len, struct tally_err *err)
{
    int rc = ledger_stage_meta_delete_range(l, begin, begin_len, end, end_len, err);
    return rc != TALLY_OK ? rc : ledger_meta_flush(l, err);
}

int ledger_get_meta(struct ledger *l, const void *key, size_t key_len, void **val, size_t *val_len,
                    bool *found, struct tally_err *err)
{
    *val = NULL;
    *val_len = 0;
    *found = false;
    uint8_t k[1 + LEDGER_META_MAX_KEY];
    int rc = meta_key(key, key_len, k, err);
    if (rc != TALLY_OK)
        return rc;
    char *v = NULL;
    size_t len = 0;
    rc = db_get(l, k, key_len + 1, &v, &len, err);
    if (rc != TALLY_OK || v == NULL)
        return rc;
    *val = v;
    *val_len = len;
    *found = true;
    return TALLY_OK;
}

/* ---- checkpoint certificates --------------------------------------------------- */

static void hex_short(const uint8_t *b, char out[20])
{
    char full[2 * TC_HASH_BYTES + 1];
    tc_hex_encode(b, TC_HASH_BYTES, full);
    memcpy(out, full, 16);
    memcpy(out + 16, "\xe2\x80\xa6", 4); /* "…" and the NUL */
}

int ledger_stage_cert(struct ledger *l, const struct ledger_cert *c, struct tally_err *err)
{
    if (l->read_only)
        return tally_errf(err, TALLY_EINVAL, "ledger %s is open read-only", l->dir);
    if (!l->has_genesis)
        return tally_errf(err, TALLY_EINVAL, "ledger %s has no genesis block", l->dir);
    if (c->count == 0 || c->count > LEDGER_CERT_MAX_SIGS)
        return tally_errf(
            err, TALLY_EINVAL, "checkpoint certificate for height %llu with %u signatures (1..%d)",
            (unsigned long long)c->ck.height, (unsigned)c->count, LEDGER_CERT_MAX_SIGS);
    if (c->ck.height > l->height + 1)
        return tally_errf(err, TALLY_EINVAL,
                          "checkpoint certificate for height %llu but the ledger ends at %llu",
                          (unsigned long long)c->ck.height, (unsigned long long)l->height);
    struct ledger_cert sorted = *c; /* stored in the canonical order */
    ledger_cert_sort(&sorted);
    uint8_t buf[LEDGER_CERT_MAX_BYTES], key[9];
    size_t len = ledger_cert_encode(&sorted, buf);
    ledger_cert_key(c->ck.height, key);
    rocksdb_writebatch_put(l->batch, (const char *)key, sizeof(key), (const char *)buf, len);
    if (!l->cert_staged || c->ck.height > l->cert_staged_max)
        l->cert_staged_max = c->ck.height;
    l->cert_staged = true;
    return TALLY_OK;
}

/* Decode a stored certificate found under the key of `height`. */
static int cert_load(struct ledger *l, uint64_t height, const char *val, size_t len,
                     struct ledger_cert *out, struct tally_err *err)
{
    struct tally_err derr = {0};
    if (ledger_cert_decode((const uint8_t *)val, len, out, &derr) != TALLY_OK ||
        out->ck.height != height) {
        memset(out, 0, sizeof(*out));
        return tally_errf(err, TALLY_ECORRUPT,
                          "data directory %s is corrupt: checkpoint certificate %llu: %s", l->dir,
                          (unsigned long long)height,
                          derr.code ? derr.msg : "stored under the wrong height");
    }
    return TALLY_OK;
}

int ledger_get_cert(struct ledger *l, uint64_t height, struct ledger_cert *out, bool *found,
                    struct tally_err *err)
{
    *found = false;
    memset(out, 0, sizeof(*out));
    uint8_t key[9];
    ledger_cert_key(height, key);
    char *val = NULL;
    size_t len = 0;
    int rc = db_get(l, key, sizeof(key), &val, &len, err);
    if (rc != TALLY_OK || val == NULL)
        return rc;
    rc = cert_load(l, height, val, len, out, err);
    free(val);
    *found = rc == TALLY_OK;
    return rc;
}

/* The certificate at the iterator's position, if it is one. */
static int cert_at(struct ledger *l, rocksdb_iterator_t *it, struct ledger_cert *out, bool *found,
                   struct tally_err *err)
{
    int rc = TALLY_OK;
    if (rocksdb_iter_valid(it)) {
        size_t klen = 0, vlen = 0;
        const char *k = rocksdb_iter_key(it, &klen);
        if (klen >= 1 && k[0] == LEDGER_KEY_CERT) {
            if (klen != 9)
                return tally_errf(err, TALLY_ECORRUPT,
                                  "data directory %s is corrupt: a checkpoint certificate key of "
                                  "%zu bytes",
                                  l->dir, klen);
            const char *v = rocksdb_iter_value(it, &vlen);
            rc = cert_load(l, ledger_key_height((const uint8_t *)k), v, vlen, out, err);
            *found = rc == TALLY_OK;
            return rc;
        }
    }
    char *e = NULL;
    rocksdb_iter_get_error(it, &e);
    if (e != NULL)
        rc = rocks_err(err, e, l->dir, "reading checkpoint certificates");
    return rc;
}

int ledger_find_cert_from(struct ledger *l, uint64_t height, struct ledger_cert *out, bool *found,
                          struct tally_err *err)
{
    *found = false;
    memset(out, 0, sizeof(*out));
    uint8_t key[9];
    ledger_cert_key(height, key);
    rocksdb_iterator_t *it = rocksdb_create_iterator(l->db, l->ro);
    rocksdb_iter_seek(it, (const char *)key, sizeof(key));
    int rc = cert_at(l, it, out, found, err);
    rocksdb_iter_destroy(it);
    return rc;
}

int ledger_last_cert(struct ledger *l, struct ledger_cert *out, bool *found, struct tally_err *err)
{
    *found = false;
    memset(out, 0, sizeof(*out));
    uint8_t key[9];
    ledger_cert_key(UINT64_MAX, key);
    rocksdb_iterator_t *it = rocksdb_create_iterator(l->db, l->ro);
    rocksdb_iter_seek_for_prev(it, (const char *)key, sizeof(key));
    int rc = cert_at(l, it, out, found, err);
    rocksdb_iter_destroy(it);
    return rc;
}

int ledger_cert_check(struct ledger *l, const struct ledger_cert *c, const tc_pubkey *keys,
                      uint32_t n, uint32_t quorum, struct tally_err *err)
{
    unsigned long long height = (unsigned long long)c->ck.height;
    if (!l->has_genesis)
        return tally_errf(err, TALLY_EINVAL, "ledger %s has no genesis block", l->dir);
    int rc = ledger_cert_verify(c, &l->genesis_hash, keys, n, quorum, err);
    if (rc != TALLY_OK)
        return tally_err_wrap(err, "height %llu", height);
    if (c->ck.height > l->height)
        return tally_errf(err, TALLY_ENOTFOUND,
                          "height %llu: no such block (the ledger ends at %llu)", height,
                          (unsigned long long)l->height);
    uint8_t *bytes = NULL;
    size_t len = 0;
    bool found = false;
    rc = ledger_get_block(l, c->ck.height, &bytes, &len, &found, err);
    if (rc != TALLY_OK)
        return tally_err_wrap(err, "height %llu", height);
    if (!found)
        return tally_errf(err, TALLY_ECORRUPT,
                          "height %llu: no such block (data directory %s is missing it below its "
                          "head %llu)",
                          height, l->dir, (unsigned long long)l->height);
    struct ledger_block_header h;
    rc = ledger_block_header_decode(bytes, len, &h);
    free(bytes);
    if (rc != TALLY_OK) /* cannot happen: ledger_get_block decoded it */
        return tally_errf(err, TALLY_ECORRUPT, "height %llu: the stored block does not decode",
                          height);
    tc_hash hash;
    ledger_block_header_hash(&h, &hash);
    char want[20], have[20];
    if (!tc_equal(hash.b, c->ck.block_hash.b, TC_HASH_BYTES)) {
        hex_short(c->ck.block_hash.b, want);
        hex_short(hash.b, have);
        return tally_errf(err, TALLY_EMISMATCH,
                          "height %llu: the certified block hash %s is not the ledger's %s", height,
                          want, have);
    }
    if (!tc_equal(h.state_digest.b, c->ck.state_digest.b, TC_HASH_BYTES)) {
        hex_short(c->ck.state_digest.b, want);
        hex_short(h.state_digest.b, have);
        return tally_errf(err, TALLY_EMISMATCH,
                          "height %llu: the certified state digest %s is not the ledger's %s",
                          height, want, have);
    }
    return TALLY_OK;
}

/* ---- integrity ---------------------------------------------------------------- */

/* Read every key and value of one family (verify_checksums and fill_cache
 * are set on ro); adds the count to *n. */
static int verify_family(struct ledger *l, rocksdb_readoptions_t *ro,
                         rocksdb_column_family_handle_t *cf, const char *name, uint64_t *n,
                         struct tally_err *err)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(l->db, ro, cf);
    if (it == NULL)
        return tally_errf(err, TALLY_ENOMEM, "out of memory");
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t len;
        (void)rocksdb_iter_key(it, &len);
        (void)rocksdb_iter_value(it, &len);
        (*n)++;
    }
    char *e = NULL;
    rocksdb_iter_get_error(it, &e);
    rocksdb_iter_destroy(it);
    if (e == NULL)
        return TALLY_OK;
    char what[96];
    snprintf(what, sizeof(what), "checking every stored block checksum (%s)", name);
    int rc = rocks_err(err, e, l->dir, what);
    if (rc != TALLY_ECORRUPT)
        rc = tally_errf(err, TALLY_ECORRUPT, "%s", tally_err_text(err));
    return rc;
}

int ledger_verify_files(struct ledger *l, uint64_t *keys, struct tally_err *err)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    if (ro == NULL)
        return tally_errf(err, TALLY_ENOMEM, "out of memory");
    rocksdb_readoptions_set_verify_checksums(ro, 1);
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_readoptions_set_total_order_seek(ro, 1); /* the accounts' prefix extractor */
    uint64_t n = 0;
    int rc = verify_family(l, ro, l->cf, "blocks and index", &n, err);
    if (rc == TALLY_OK)
        rc = verify_family(l, ro, l->cf_acct, "accounts", &n, err);
    rocksdb_readoptions_destroy(ro);
    if (keys != NULL)
        *keys = n;
    return rc;
}
