/* The ledger state machine: genesis, execution rules, de-duplication,
 * determinism, persistence, locking and the protocol's meta space. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <rocksdb/c.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ledger/audit.h"
#include "ledger/block.h"
#include "ledger/ledger.h"
#include "ledger/ledger_internal.h"
#include "tests/helpers/ledger_fixture.h"

#define NKEYS 6
static tc_keypair keys[NKEYS];

static int group_setup(void **state)
{
    (void)state;
    if (tc_init() != TALLY_OK)
        return -1;
    for (int i = 0; i < NKEYS; i++)
        lf_keypair((uint32_t)(100 + i), &keys[i]);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < NKEYS; i++)
        tc_keypair_free(&keys[i]);
    return 0;
}

static struct ledger *open_mem(void)
{
    struct ledger_open_opts o = {.in_memory = true, .sync = false};
    struct ledger *l = NULL;
    struct tally_err err = {0};
    int rc = ledger_open_opts("/mem/ledger", &o, &l, &err);
    if (rc != TALLY_OK)
        fail_msg("open: %s", tally_err_text(&err));
    return l;
}

/* keys 0..2 funded with 1000, 2000, 3000. */
static void genesis(struct ledger *l)
{
    struct ledger_genesis_account g[3];
    for (int i = 0; i < 3; i++) {
        g[i].pk = keys[i].pk;
        g[i].balance = 1000 * (uint64_t)(i + 1);
    }
    struct tally_err err = {0};
    assert_int_equal(ledger_init_genesis(l, g, 3, &err), TALLY_OK);
}

static struct ledger_account account(struct ledger *l, int k, bool *found)
{
    struct ledger_account a;
    struct tally_err err = {0};
    bool f;
    assert_int_equal(ledger_get_account(l, &keys[k].pk, &a, &f, &err), TALLY_OK);
    if (found != NULL)
        *found = f;
    return a;
}

static void test_genesis(void **state)
{
    (void)state;
    struct ledger *l = open_mem();
    struct tally_err err = {0};
    assert_false(ledger_has_genesis(l));
    uint8_t tx[LEDGER_TX_BYTES];
    lf_transfer(&keys[0], &keys[1].pk, 1, 1, tx);
    assert_int_equal(ledger_apply_block(l, 1, tx, 1, NULL, &err), TALLY_EINVAL);

    struct ledger_genesis_account dup[2] = {{keys[0].pk, 5}, {keys[0].pk, 6}};
    assert_int_equal(ledger_init_genesis(l, dup, 2, &err), TALLY_EINVAL);
    assert_non_null(strstr(err.msg, "twice"));
    assert_false(ledger_has_genesis(l));

    genesis(l);
    assert_true(ledger_has_genesis(l));
    assert_true(ledger_height(l) == 0);
    tc_hash gh, head;
    ledger_genesis_hash(l, &gh);
    ledger_head_hash(l, &head);
    assert_memory_equal(&gh, &head, sizeof(gh));
    bool found;
    struct ledger_account a = account(l, 1, &found);
    assert_true(found);
    assert_true(a.balance == 2000 && a.nonce == 0 && a.last_height == 0);
    account(l, 4, &found);
    assert_false(found);

    /* The same allocations in another order: identical, a no-op. */
    struct ledger_genesis_account same[3] = {
        {keys[2].pk, 3000}, {keys[0].pk, 1000}, {keys[1].pk, 2000}};
    assert_int_equal(ledger_init_genesis(l, same, 3, &err), TALLY_OK);
    same[0].balance = 3001;
    assert_int_equal(ledger_init_genesis(l, same, 3, &err), TALLY_EMISMATCH);
    assert_non_null(strstr(err.msg, "belongs to another cluster"));

    /* Block 0 is stored sorted by pk with 40-byte entries. */
    uint8_t *bytes;
    size_t len;
    assert_int_equal(ledger_get_block(l, 0, &bytes, &len, &found, &err), TALLY_OK);
    assert_true(found);
    struct ledger_block b;
    assert_int_equal(ledger_block_decode(bytes, len, &b, &err), TALLY_OK);
    assert_int_equal(b.h.tx_count, 3);
    assert_int_equal(b.item_bytes, LEDGER_GENESIS_ENTRY_BYTES);
    assert_true(memcmp(b.items, b.items + 40, 32) < 0);
    assert_true(memcmp(b.items + 40, b.items + 80, 32) < 0);
    tc_hash h;
    ledger_block_header_hash(&b.h, &h);
    assert_memory_equal(&h, &gh, sizeof(h));
    free(bytes);
    assert_int_equal(ledger_get_block(l, 1, &bytes, &len, &found, &err), TALLY_OK);
    assert_false(found);
    assert_null(bytes);
    ledger_close(l);
}

static void expect_result(struct ledger *l, const uint8_t *tx, uint64_t height, uint32_t index,
                          int result)
{
    tc_hash h;
    ledger_tx_hash_bytes(tx, &h);
    uint64_t ht;
    uint32_t idx;
    uint8_t res;
    bool found;
    struct tally_err err = {0};
    assert_int_equal(ledger_get_tx(l, &h, &ht, &idx, &res, &found, &err), TALLY_OK);
    assert_true(found);
    assert_true(ht == height);
    assert_int_equal(idx, index);
    assert_int_equal(res, result);
}

static void test_rules(void **state)
{
    (void)state;
    struct ledger *l = open_mem();
    genesis(l);
    struct tally_err err = {0};
    enum { N = 12 };
    uint8_t txs[N][LEDGER_TX_BYTES];
    lf_transfer(&keys[0], &keys[3].pk, 100, 1, txs[0]); /* ok, creates keys[3] */
    lf_transfer(&keys[0], &keys[3].pk, 100, 1, txs[1]); /* duplicate of 0 (same block) */
    lf_transfer(&keys[0], &keys[3].pk, 50, 1, txs[2]);  /* nonce reused: bad nonce */
    lf_transfer(&keys[0], &keys[3].pk, 50, 3, txs[3]);  /* nonce gap: bad nonce */
    lf_transfer(&keys[0], &keys[3].pk, 0, 2, txs[4]);   /* zero amount */
    lf_transfer(&keys[0], &keys[0].pk, 10, 2, txs[5]);  /* self */
    lf_transfer(&keys[0], &keys[3].pk, 901, 2, txs[6]); /* 900 left: insufficient */
    lf_transfer(&keys[4], &keys[3].pk, 1, 1, txs[7]);   /* unknown sender: insufficient */
    lf_transfer(&keys[1], &keys[0].pk, 10, 1, txs[8]);  /* ok */
    lf_transfer(&keys[2], &keys[0].pk, 10, 1, txs[9]);  /* bad signature (tampered) */
    txs[9][70] ^= 1;
    lf_transfer(&keys[2], &keys[0].pk, 10, 1, txs[10]); /* malformed (version) */
    txs[10][0] = 9;
    lf_transfer(&keys[0], &keys[3].pk, 900, 2, txs[11]); /* ok: exact balance */
    struct ledger_block_result r;
    assert_int_equal(ledger_apply_block(l, 1, &txs[0][0], N, &r, &err), TALLY_OK);
    const uint8_t want[N] = {LEDGER_RESULT_OK,
                             LEDGER_RESULT_DUPLICATE,
                             LEDGER_RESULT_BAD_NONCE,
                             LEDGER_RESULT_BAD_NONCE,
                             LEDGER_RESULT_ZERO_AMOUNT,
                             LEDGER_RESULT_SELF_TRANSFER,
                             LEDGER_RESULT_INSUFFICIENT_FUNDS,
                             LEDGER_RESULT_INSUFFICIENT_FUNDS,
                             LEDGER_RESULT_OK,
                             LEDGER_RESULT_BAD_SIGNATURE,
                             LEDGER_RESULT_MALFORMED,
                             LEDGER_RESULT_OK};
    assert_true(r.height == 1);
    assert_int_equal(r.count, N);
    assert_memory_equal(r.results, want, N);
    tc_hash h0;
    ledger_tx_hash_bytes(txs[0], &h0);
    assert_memory_equal(&r.tx_hashes[0], &h0, sizeof(h0));
    assert_true(ledger_height(l) == 1);
    tc_hash head, digest;
    ledger_head_hash(l, &head);
    ledger_state_digest(l, &digest);
    assert_memory_equal(&head, &r.block_hash, sizeof(head));
    assert_memory_equal(&digest, &r.state_digest, sizeof(head));

    bool found;
    struct ledger_account a = account(l, 0, &found);
    assert_true(a.balance == 1000 - 100 - 900 + 10 && a.nonce == 2 && a.last_height == 1);
    a = account(l, 1, NULL);
    assert_true(a.balance == 1990 && a.nonce == 1);
    a = account(l, 2, NULL);
    assert_true(a.balance == 3000 && a.nonce == 0 && a.last_height == 0);
    a = account(l, 3, &found);
    assert_true(found && a.balance == 1000 && a.nonce == 0 && a.last_height == 1);
    account(l, 4, &found);
    assert_false(found); /* a rejected sender is not created */

    /* The index: the duplicate is not indexed, the first occurrence answers. */
    expect_result(l, txs[0], 1, 0, LEDGER_RESULT_OK);
    expect_result(l, txs[6], 1, 6, LEDGER_RESULT_INSUFFICIENT_FUNDS);
    expect_result(l, txs[9], 1, 9, LEDGER_RESULT_BAD_SIGNATURE);
    expect_result(l, txs[10], 1, 10, LEDGER_RESULT_MALFORMED);

    /* Across blocks: replaying txs[0] and txs[8] is a duplicate with no effect. */
    uint8_t again[3][LEDGER_TX_BYTES];
    memcpy(again[0], txs[8], LEDGER_TX_BYTES);
    memcpy(again[1], txs[0], LEDGER_TX_BYTES);
    lf_transfer(&keys[1], &keys[2].pk, 5, 2, again[2]);
    assert_int_equal(ledger_apply_block(l, 2, &again[0][0], 3, &r, &err), TALLY_OK);
    assert_int_equal(r.results[0], LEDGER_RESULT_DUPLICATE);
    assert_int_equal(r.results[1], LEDGER_RESULT_DUPLICATE);
    assert_int_equal(r.results[2], LEDGER_RESULT_OK);
    expect_result(l, txs[0], 1, 0, LEDGER_RESULT_OK);
    expect_result(l, again[2], 2, 2, LEDGER_RESULT_OK);
    a = account(l, 1, NULL);
    assert_true(a.balance == 1985 && a.nonce == 2 && a.last_height == 2);

    /* Overflow: a recipient near UINT64_MAX. */
    ledger_close(l);
    l = open_mem();
    struct ledger_genesis_account g[2] = {{keys[0].pk, 10}, {keys[1].pk, UINT64_MAX - 5}};
    assert_int_equal(ledger_init_genesis(l, g, 2, &err), TALLY_OK);
    uint8_t o[2][LEDGER_TX_BYTES];
    lf_transfer(&keys[0], &keys[1].pk, 6, 1, o[0]);
    lf_transfer(&keys[0], &keys[1].pk, 5, 1, o[1]);
    assert_int_equal(ledger_apply_block(l, 1, &o[0][0], 2, &r, &err), TALLY_OK);
    assert_int_equal(r.results[0], LEDGER_RESULT_OVERFLOW);
    assert_int_equal(r.results[1], LEDGER_RESULT_OK);
    a = account(l, 1, NULL);
    assert_true(a.balance == UINT64_MAX);

    /* Wrong heights and sizes are refused and change nothing. */
    assert_int_equal(ledger_apply_block(l, 1, NULL, 0, &r, &err), TALLY_EINVAL);
    assert_int_equal(ledger_apply_block(l, 3, NULL, 0, &r, &err), TALLY_EINVAL);
    assert_non_null(strstr(err.msg, "cannot follow"));
    assert_int_equal(ledger_apply_block(l, 2, o[0], LEDGER_BLOCK_MAX_TXS + 1, &r, &err),
                     TALLY_ETOOBIG);
    assert_true(ledger_height(l) == 1);
    /* An empty block. */
    assert_int_equal(ledger_apply_block(l, 2, NULL, 0, &r, &err), TALLY_OK);
    assert_int_equal(r.count, 0);
    assert_true(ledger_height(l) == 2);
    ledger_close(l);
}

static void test_verified(void **state)
{
    (void)state;
    struct ledger *l = open_mem();
    genesis(l);
    struct tally_err err = {0};
    uint8_t txs[2][LEDGER_TX_BYTES];
    lf_transfer(&keys[0], &keys[1].pk, 1, 1, txs[0]);
    lf_transfer(&keys[1], &keys[0].pk, 1, 1, txs[1]);
    uint8_t ok[2] = {1, 0}; /* the caller's verdicts are trusted */
    struct ledger_block_result r;
    assert_int_equal(ledger_apply_block_verified(l, 1, &txs[0][0], 2, ok, &r, &err), TALLY_OK);
    assert_int_equal(r.results[0], LEDGER_RESULT_OK);
    assert_int_equal(r.results[1], LEDGER_RESULT_BAD_SIGNATURE);
    lf_transfer(&keys[2], &keys[0].pk, 1, 1, txs[0]);
    assert_int_equal(ledger_apply_block_verified(l, 2, &txs[0][0], 1, NULL, &r, &err), TALLY_OK);
    assert_int_equal(r.results[0], LEDGER_RESULT_OK);
    ledger_close(l);
}

/* Build `blocks` blocks of random-ish transfers among NKEYS accounts. */
static void apply_workload(struct ledger *l, int blocks, uint64_t *nonces)
{
    struct tally_err err = {0};
    uint8_t txs[8][LEDGER_TX_BYTES];
    for (int b = 0; b < blocks; b++) {
        for (int i = 0; i < 8; i++) {
            int from = (b + i) % 3, to = (b * 7 + i + 1) % NKEYS;
            uint64_t nonce = (i % 5 == 4) ? 99 : ++nonces[from];
            lf_transfer(&keys[from], &keys[to].pk, (uint64_t)(b + i) % 40, nonce, txs[i]);
        }
        /* Give back the nonces of rejected transfers. */
        struct ledger_block_result r;
        assert_int_equal(ledger_apply_block(l, ledger_height(l) + 1, &txs[0][0], 8, &r, &err),
                         TALLY_OK);
        for (int i = 0; i < 8; i++) {
            int from = (b + i) % 3;
            if (i % 5 != 4 && r.results[i] != LEDGER_RESULT_OK)
                nonces[from]--;
        }
    }
}

/* A directory holding the genesis and `blocks` workload blocks, closed (both
 * memtables flushed into SST files). */
static char *closed_workload_dir(int blocks)
{
    char *dir = lf_tmpdir();
    struct ledger_open_opts o = {.sync = false};
    struct ledger *l = NULL;
    struct tally_err err = {0};
    assert_int_equal(ledger_open_opts(dir, &o, &l, &err), TALLY_OK);
    genesis(l);
    uint64_t n[NKEYS] = {0};
    apply_workload(l, blocks, n);
    ledger_close(l);
    return dir;
}

/* Overwrite 64 bytes of an SST file's first data block (not its footer). */
static void damage_sst(const char *path)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 200, SEEK_SET), 0);
    for (int i = 0; i < 64; i++)
        fputc(0x5a, f);
    fclose(f);
}

static void full_lthash(struct ledger *l, tc_hash *out)
{
    tc_lthash lt;
    tc_lthash_zero(&lt);
    for (int k = 0; k < NKEYS; k++) {
        bool found;
        struct ledger_account a = account(l, k, &found);
        if (!found)
            continue;
        uint8_t elem[LEDGER_ACCOUNT_ELEM_BYTES];
        ledger_account_elem(&keys[k].pk, a.balance, a.nonce, elem);
        tc_lthash_add(&lt, elem, sizeof(elem));
    }
    tc_lthash_digest(&lt, out);
}

static void test_determinism(void **state)
{
    (void)state;
    struct ledger *a = open_mem(), *b = open_mem();
    genesis(a);
    genesis(b);
    uint64_t na[NKEYS] = {0}, nb[NKEYS] = {0};
    apply_workload(a, 30, na);
    apply_workload(b, 30, nb);
    assert_true(ledger_height(a) == 30 && ledger_height(b) == 30);
    tc_hash ha, hb, da, db, full;
    ledger_head_hash(a, &ha);
    ledger_head_hash(b, &hb);
    ledger_state_digest(a, &da);
    ledger_state_digest(b, &db);
    assert_memory_equal(&ha, &hb, sizeof(ha));
    assert_memory_equal(&da, &db, sizeof(da));
    /* The incremental digest equals one computed from scratch. */
    full_lthash(a, &full);
    assert_memory_equal(&da, &full, sizeof(da));
    /* Some transfers were accepted, so the state moved. */
    assert_true(account(a, 3, NULL).balance + account(a, 4, NULL).balance > 0);
    /* Every block is byte-identical too. */
    struct tally_err err = {0};
    for (uint64_t h = 0; h <= 30; h++) {
        uint8_t *x, *y;
        size_t lx, ly;
        bool fx, fy;
        assert_int_equal(ledger_get_block(a, h, &x, &lx, &fx, &err), TALLY_OK);
        assert_int_equal(ledger_get_block(b, h, &y, &ly, &fy, &err), TALLY_OK);
        assert_true(fx && fy && lx == ly);
        assert_memory_equal(x, y, lx);
        free(x);
        free(y);
    }
    ledger_close(a);
    ledger_close(b);
}

static void test_reopen_and_busy(void **state)
{
    (void)state;
    char *dir = lf_tmpdir();
    struct ledger_open_opts o = {.sync = false};
    struct ledger *l = NULL, *l2 = NULL;
    struct tally_err err = {0};
    assert_int_equal(ledger_open_opts(dir, &o, &l, &err), TALLY_OK);
    genesis(l);
    uint64_t n[NKEYS] = {0};
    apply_workload(l, 5, n);
    tc_hash head, digest, gh;
    ledger_head_hash(l, &head);
    ledger_state_digest(l, &digest);
    ledger_genesis_hash(l, &gh);

    /* A second open of the same directory: busy. */
    assert_int_equal(ledger_open(dir, &l2, &err), TALLY_EBUSY);
    assert_null(l2);
    print_message("%s\n", err.msg);
    assert_non_null(strstr(err.msg, "is in use by another process"));
    assert_non_null(strstr(err.msg, dir));
    ledger_close(l);

    assert_int_equal(ledger_open(dir, &l, &err), TALLY_OK);
    assert_true(ledger_height(l) == 5);
    tc_hash h2, d2, g2;
    ledger_head_hash(l, &h2);
    ledger_state_digest(l, &d2);
    ledger_genesis_hash(l, &g2);
    assert_memory_equal(&head, &h2, sizeof(head));
    assert_memory_equal(&digest, &d2, sizeof(digest));
    assert_memory_equal(&gh, &g2, sizeof(gh));
    genesis(l); /* the same genesis again: fine */
    struct ledger_genesis_account other = {keys[5].pk, 1};
    assert_int_equal(ledger_init_genesis(l, &other, 1, &err), TALLY_EMISMATCH);
    apply_workload(l, 1, n); /* resumes at height 6 */
    assert_true(ledger_height(l) == 6);
    ledger_close(l);

    /* Read-only opens work and refuse writes. */
    struct ledger_open_opts ro = {.read_only = true};
    assert_int_equal(ledger_open_opts(dir, &ro, &l, &err), TALLY_OK);
    assert_true(ledger_height(l) == 6);
    assert_int_equal(ledger_apply_block(l, 7, NULL, 0, NULL, &err), TALLY_EINVAL);
    ledger_close(l);
    assert_int_equal(ledger_open_opts("/tmp/tally-no-such-dir-xyz", &ro, &l, &err),
                     TALLY_ENOTFOUND);
    lf_rmdir(dir);
}

static void test_corrupt_head(void **state)
{
    (void)state;
    struct ledger *l = NULL;
    struct tally_err err = {0};
    char *dir = closed_workload_dir(3);

    /* Point the head record at the wrong state. */
    size_t len;
    char *head = lf_raw_get(dir, (const uint8_t *)"H", 1, &len);
    assert_non_null(head);
    head[100] ^= 1; /* a lane of the LtHash */
    lf_raw_put(dir, (const uint8_t *)"H", 1, head, len);
    free(head);

    assert_int_equal(ledger_open(dir, &l, &err), TALLY_ECORRUPT);
    assert_null(l);
    assert_non_null(strstr(err.msg, "corrupt"));
    lf_rmdir(dir);
}

/* A fresh directory holding a ledger with the test genesis, closed. */
static char *closed_genesis_dir(const struct ledger_open_opts *o)
{
    char *dir = lf_tmpdir();
    struct ledger *l = NULL;
    struct tally_err err = {0};
    assert_int_equal(ledger_open_opts(dir, o, &l, &err), TALLY_OK);
    genesis(l);
    ledger_close(l);
    return dir;
}

/* A block's accounts are read in one batch before it executes; a record that
 * does not decode fails the block only if a transfer touches the account
 * (here: not for a transfer whose signature is bad, then for a good one). The
 * directory was last written by a raw RocksDB open: it opens as before. */
static void test_corrupt_account(void **state)
{
    (void)state;
    struct ledger_open_opts o = {.sync = false};
    struct ledger *l = NULL;
    struct tally_err err = {0};
    char *dir = closed_genesis_dir(&o);

    uint8_t key[1 + TC_PUBKEY_BYTES];
    key[0] = LEDGER_KEY_ACCOUNT;
    memcpy(key + 1, keys[1].pk.b, TC_PUBKEY_BYTES);
    lf_raw_put(dir, key, sizeof(key), "short", 5);

    assert_int_equal(ledger_open_opts(dir, &o, &l, &err), TALLY_OK);
    uint8_t txs[2 * LEDGER_TX_BYTES];
    lf_transfer(&keys[0], &keys[2].pk, 5, 1, txs);
    lf_transfer(&keys[1], &keys[2].pk, 5, 1, txs + LEDGER_TX_BYTES);
    txs[2 * LEDGER_TX_BYTES - 1] ^= 1;
    struct ledger_block_result res;
    assert_int_equal(ledger_apply_block(l, 1, txs, 2, &res, &err), TALLY_OK);
    assert_int_equal(res.results[0], LEDGER_RESULT_OK);
    assert_int_equal(res.results[1], LEDGER_RESULT_BAD_SIGNATURE);
    assert_true(account(l, 2, NULL).balance == 3005);

    lf_transfer(&keys[0], &keys[1].pk, 5, 2, txs);
    assert_int_equal(ledger_apply_block(l, 2, txs, 1, &res, &err), TALLY_ECORRUPT);
    assert_non_null(strstr(err.msg, "5-byte record"));
    assert_true(ledger_height(l) == 1);
    ledger_close(l);
    lf_rmdir(dir);
}

/* A directory written by another ledger format (v1: SHAKE256 state digest)
 * is refused at open, by name, instead of mixing two digests. */
static void test_old_format_refused(void **state)
{
    (void)state;
    struct ledger_open_opts o = {.sync = false};
    struct ledger *l = NULL;
    struct tally_err err = {0};
    char *dir = closed_genesis_dir(&o);

    uint8_t key = LEDGER_KEY_FORMAT;
    lf_raw_put(dir, &key, 1, "tally-ledger-v1", 15);

    assert_int_equal(ledger_open_opts(dir, &o, &l, &err), TALLY_EMISMATCH);
    assert_non_null(strstr(err.msg, "tally-ledger-v1"));
    assert_non_null(strstr(err.msg, LEDGER_FORMAT_TAG));
    lf_rmdir(dir);
}

/* A directory from before the accounts column family (v2: one family) is
 * refused by name, by a writable open and by the audit's read-only one, and
 * is left as it was: a plain RocksDB open (the old build's) still opens it. */
static void test_v2_directory_refused(void **state)
{
    (void)state;
    char *dir = lf_tmpdir();
    rocksdb_options_t *opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(opts, 1);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    char *e = NULL;
    rocksdb_t *db = rocksdb_open(opts, dir, &e);
    assert_null(e);
    rocksdb_put(db, wo, "V", 1, "tally-ledger-v2", 15, &e);
    assert_null(e);
    rocksdb_close(db);

    struct ledger_open_opts o = {.sync = false};
    struct ledger *l = NULL;
    struct tally_err err = {0};
    assert_int_equal(ledger_open_opts(dir, &o, &l, &err), TALLY_EMISMATCH);
    assert_null(l);
    assert_non_null(strstr(err.msg, "older ledger format"));
    assert_non_null(strstr(err.msg, LEDGER_FORMAT_TAG));
    struct ledger_audit_report rep;
    assert_int_equal(ledger_audit(dir, NULL, &rep, &err), TALLY_EMISMATCH);

    db = rocksdb_open(opts, dir, &e);
    assert_null(e);
    rocksdb_close(db);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_options_destroy(opts);
    lf_rmdir(dir);
}

/* defer_block_sync: a block without staged meta is written without an fsync
 * (ledger_unsynced says so until a synced write or ledger_sync covers it); a
 * block that carries staged meta is synced with it; and a process killed
 * right after deferred writes loses none of them (they are in RocksDB's
 * write-ahead log, in the page cache). */
/* The meta value under key is the one byte want. */
static void assert_meta_byte(struct ledger *l, const char *key, char want)
{
    struct tally_err err = {0};
    void *val = NULL;
    size_t len = 0;
    bool found = false;
    assert_int_equal(ledger_get_meta(l, key, strlen(key), &val, &len, &found, &err), TALLY_OK);
    assert_true(found && len == 1 && ((char *)val)[0] == want);
    free(val);
}

static void test_deferred_block_sync(void **state)
{
    (void)state;
    char *dir = lf_tmpdir();
    struct ledger_open_opts o = {.sync = true, .defer_block_sync = true};
    struct ledger *l = NULL;
    struct tally_err err = {0};
    assert_int_equal(ledger_open_opts(dir, &o, &l, &err), TALLY_OK);
    genesis(l);
    assert_false(ledger_unsynced(l)); /* genesis is synced */
    uint64_t n[NKEYS] = {0};
    apply_workload(l, 1, n);
    assert_true(ledger_unsynced(l));
    assert_int_equal(ledger_stage_meta_put(l, "k", 1, "v", 1, &err), TALLY_OK);
    apply_workload(l, 1, n); /* carries the staged meta: synced, covering block 1 */
    assert_false(ledger_unsynced(l));
    apply_workload(l, 1, n);
    assert_true(ledger_unsynced(l));
    assert_int_equal(ledger_put_meta(l, "k", 1, "w", 1, &err), TALLY_OK);
    assert_false(ledger_unsynced(l)); /* a synced meta write covers block 3 */
    apply_workload(l, 1, n);
    assert_true(ledger_unsynced(l));
    assert_int_equal(ledger_sync(l, &err), TALLY_OK);
    assert_false(ledger_unsynced(l));
    assert_int_equal(ledger_sync(l, &err), TALLY_OK); /* nothing to do */
    /* Meta the caller may lose in a power loss (deferrable PRE-PREPARE and
     * PREPARE records): written without an fsync, then covered. */
    assert_int_equal(ledger_stage_meta_put(l, "k", 1, "x", 1, &err), TALLY_OK);
    assert_int_equal(ledger_meta_flush_unsynced(l, &err), TALLY_OK);
    assert_true(ledger_unsynced(l));
    assert_meta_byte(l, "k", 'x');
    apply_workload(l, 1, n); /* nothing staged: deferred too */
    assert_true(ledger_unsynced(l));
    assert_int_equal(ledger_put_meta(l, "k", 1, "y", 1, &err), TALLY_OK);
    assert_false(ledger_unsynced(l));
    ledger_close(l);

    /* Without sync there is nothing to defer. */
    struct ledger_open_opts nosync = {.sync = false, .defer_block_sync = true};
    assert_int_equal(ledger_open_opts(dir, &nosync, &l, &err), TALLY_OK);
    apply_workload(l, 1, n);
    assert_false(ledger_unsynced(l));
    assert_int_equal(ledger_stage_meta_put(l, "k", 1, "z", 1, &err), TALLY_OK);
    assert_int_equal(ledger_meta_flush_unsynced(l, &err), TALLY_OK);
    assert_false(ledger_unsynced(l));
    ledger_close(l);

    /* kill -9 right after unsynced meta and three deferred blocks: all there. */
    int up[2];
    assert_int_equal(pipe(up), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct ledger *c = NULL;
        struct tally_err e = {0};
        if (ledger_open_opts(dir, &o, &c, &e) != TALLY_OK ||
            ledger_stage_meta_put(c, "d", 1, "q", 1, &e) != TALLY_OK ||
            ledger_meta_flush_unsynced(c, &e) != TALLY_OK)
            _exit(2);
        apply_workload(c, 3, n);
        tc_hash head;
        ledger_head_hash(c, &head);
        uint8_t msg[1 + TC_HASH_BYTES];
        msg[0] = ledger_unsynced(c) ? 'u' : 's';
        memcpy(msg + 1, head.b, TC_HASH_BYTES);
        if (write(up[1], msg, sizeof(msg)) != (ssize_t)sizeof(msg))
            _exit(3);
        alarm(60); /* gone by itself should the parent fail before its kill */
        for (;;)
            pause(); /* killed here, the ledger never closed */
    }
    uint8_t msg[1 + TC_HASH_BYTES];
    size_t got = 0;
    while (got < sizeof(msg)) {
        ssize_t r = read(up[0], msg + got, sizeof(msg) - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
    assert_int_equal(msg[0], 'u');
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_int_equal(ledger_open_opts(dir, &o, &l, &err), TALLY_OK);
    assert_true(ledger_height(l) == 9);
    tc_hash head;
    ledger_head_hash(l, &head);
    assert_memory_equal(head.b, msg + 1, TC_HASH_BYTES);
    assert_meta_byte(l, "d", 'q');
    ledger_close(l);
    close(up[0]);
    close(up[1]);
    lf_rmdir(dir);
}

/* Another process holds the directory: EBUSY, until it exits. */
static void test_busy_other_process(void **state)
{
    (void)state;
    char *dir = lf_tmpdir();
    int up[2], down[2];
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(down), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct ledger *l = NULL;
        struct tally_err e = {0};
        char c = ledger_open(dir, &l, &e) == TALLY_OK ? 'y' : 'n';
        if (write(up[1], &c, 1) != 1)
            _exit(2);
        if (read(down[0], &c, 1) < 0)
            _exit(3);
        ledger_close(l);
        _exit(0);
    }
    char c = 0;
    assert_int_equal(read(up[0], &c, 1), 1);
    assert_int_equal(c, 'y');
    struct ledger *l = NULL;
    struct tally_err err = {0};
    assert_int_equal(ledger_open(dir, &l, &err), TALLY_EBUSY);
    print_message("%s\n", err.msg);
    assert_non_null(strstr(err.msg, "is in use by another process"));
    assert_int_equal(write(down[1], "x", 1), 1);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(ledger_open(dir, &l, &err), TALLY_OK);
    ledger_close(l);
    close(up[0]);
    close(up[1]);
    close(down[0]);
    close(down[1]);
    lf_rmdir(dir);
}

/* Damage inside an SST file is reported as corruption, never served. */
static void test_corrupt_sst(void **state)
{
    (void)state;
    struct ledger *l = NULL;
    struct tally_err err = {0};
    char *dir = closed_workload_dir(20);

    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    int damaged = 0;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 4 || strcmp(de->d_name + len - 4, ".sst") != 0)
            continue;
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        damage_sst(path);
        damaged++;
    }
    closedir(d);
    assert_true(damaged > 0);

    int rc = ledger_open(dir, &l, &err);
    if (rc == TALLY_OK) {
        /* Open may succeed if the head lives elsewhere; reading must not. */
        int bad = 0;
        for (uint64_t h = 0; h <= ledger_height(l); h++) {
            uint8_t *bytes;
            size_t len;
            bool found;
            int r = ledger_get_block(l, h, &bytes, &len, &found, &err);
            if (r == TALLY_OK)
                free(bytes);
            else {
                assert_int_equal(r, TALLY_ECORRUPT);
                bad++;
            }
        }
        assert_true(bad > 0);
        ledger_close(l);
    } else {
        assert_int_equal(rc, TALLY_ECORRUPT);
        assert_non_null(strstr(err.msg, "corrupt"));
    }
    lf_rmdir(dir);
}

/* Damage in any one SST file, of either column family, is caught: by the
 * open, or else by ledger_verify_files, which a replica runs at start. */
static void test_verify_files_every_sst(void **state)
{
    (void)state;
    for (int k = 0;; k++) {
        struct ledger *l = NULL;
        struct tally_err err = {0};
        char *dir = closed_workload_dir(20);
        uint64_t stored = 0;
        assert_int_equal(ledger_open(dir, &l, &err), TALLY_OK);
        assert_int_equal(ledger_verify_files(l, &stored, &err), TALLY_OK);
        assert_true(stored > NKEYS); /* both families: the accounts, blocks and more */
        ledger_close(l);

        struct dirent **names = NULL;
        int count = scandir(dir, &names, NULL, alphasort);
        assert_true(count > 0);
        int seen = 0;
        char path[4200] = "";
        for (int i = 0; i < count; i++) {
            size_t len = strlen(names[i]->d_name);
            if (len > 4 && strcmp(names[i]->d_name + len - 4, ".sst") == 0 && seen++ == k)
                snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
            free(names[i]);
        }
        free(names);
        if (path[0] == '\0') {
            assert_true(k >= 2); /* one file per family at least */
            lf_rmdir(dir);
            return;
        }
        damage_sst(path);

        int rc = ledger_open(dir, &l, &err);
        if (rc == TALLY_OK) {
            rc = ledger_verify_files(l, NULL, &err);
            ledger_close(l);
        }
        assert_int_equal(rc, TALLY_ECORRUPT);
        assert_non_null(strstr(err.msg, "corrupt"));
        lf_rmdir(dir);
    }
}

static void test_meta(void **state)
{
    (void)state;
    struct ledger *l = open_mem();
    genesis(l);
    struct tally_err err = {0};
    void *val;
    size_t len;
    bool found;
    assert_int_equal(ledger_put_meta(l, "view", 4, "\x07\0\0\0", 4, &err), TALLY_OK);
    assert_int_equal(ledger_get_meta(l, "view", 4, &val, &len, &found, &err), TALLY_OK);
    assert_true(found && len == 4 && ((uint8_t *)val)[0] == 7);
    free(val);
    assert_int_equal(ledger_get_meta(l, "nope", 4, &val, &len, &found, &err), TALLY_OK);
    assert_false(found);
    assert_null(val);
    /* Ledger keys are not reachable: "H" here is 'P','H'. */
    assert_int_equal(ledger_get_meta(l, "H", 1, &val, &len, &found, &err), TALLY_OK);
    assert_false(found);
    assert_int_equal(ledger_put_meta(l, "", 0, "x", 1, &err), TALLY_EINVAL);

    /* Staged changes land with the next block. */
    assert_int_equal(ledger_stage_meta_put(l, "log1", 4, "a", 1, &err), TALLY_OK);
    assert_int_equal(ledger_stage_meta_put(l, "log2", 4, "b", 1, &err), TALLY_OK);
    assert_int_equal(ledger_stage_meta_put(l, "log3", 4, "c", 1, &err), TALLY_OK);
    assert_int_equal(ledger_stage_meta_delete(l, "view", 4, &err), TALLY_OK);
    assert_int_equal(ledger_get_meta(l, "log1", 4, &val, &len, &found, &err), TALLY_OK);
    assert_false(found);
    /* A failed apply keeps them staged. */
    assert_int_equal(ledger_apply_block(l, 5, NULL, 0, NULL, &err), TALLY_EINVAL);
    assert_int_equal(ledger_apply_block(l, 1, NULL, 0, NULL, &err), TALLY_OK);
    assert_meta_byte(l, "log2", 'b');
    assert_int_equal(ledger_get_meta(l, "view", 4, &val, &len, &found, &err), TALLY_OK);
    assert_false(found);

    assert_int_equal(ledger_delete_meta_range(l, "log1", 4, "log3", 4, &err), TALLY_OK);
    assert_int_equal(ledger_get_meta(l, "log1", 4, &val, &len, &found, &err), TALLY_OK);
    assert_false(found);
    assert_int_equal(ledger_get_meta(l, "log2", 4, &val, &len, &found, &err), TALLY_OK);
    assert_false(found);
    assert_int_equal(ledger_get_meta(l, "log3", 4, &val, &len, &found, &err), TALLY_OK);
    assert_true(found);
    free(val);
    /* A staged range deletion waits for the next write, like the rest. */
    assert_int_equal(ledger_stage_meta_delete_range(l, "log3", 4, "log4", 4, &err), TALLY_OK);
    assert_int_equal(ledger_get_meta(l, "log3", 4, &val, &len, &found, &err), TALLY_OK);
    assert_true(found);
    free(val);
    assert_int_equal(ledger_meta_flush(l, &err), TALLY_OK);
    assert_int_equal(ledger_get_meta(l, "log3", 4, &val, &len, &found, &err), TALLY_OK);
    assert_false(found);
    assert_int_equal(ledger_put_meta(l, "log3", 4, "c", 1, &err), TALLY_OK);
    assert_int_equal(ledger_delete_meta(l, "log3", 4, &err), TALLY_OK);
    assert_int_equal(ledger_get_meta(l, "log3", 4, &val, &len, &found, &err), TALLY_OK);
    assert_false(found);
    assert_int_equal(ledger_meta_flush(l, &err), TALLY_OK); /* nothing staged */
    ledger_close(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_genesis),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_verified),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_reopen_and_busy),
        cmocka_unit_test(test_corrupt_head),
        cmocka_unit_test(test_corrupt_account),
        cmocka_unit_test(test_old_format_refused),
        cmocka_unit_test(test_v2_directory_refused),
        cmocka_unit_test(test_meta),
        cmocka_unit_test(test_busy_other_process),
        cmocka_unit_test(test_deferred_block_sync),
        cmocka_unit_test(test_corrupt_sst),
        cmocka_unit_test(test_verify_files_every_sst),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
