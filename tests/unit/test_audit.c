/* The audit: a clean ledger of 10,000 signed transactions passes; tampering
 * with a transaction, a link or an account is found and located; a replica
 * killed with SIGKILL mid-write reopens consistent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ledger/audit.h"
#include "ledger/block.h"
#include "ledger/ledger.h"
#include "ledger/ledger_internal.h"
#include "tests/helpers/ledger_fixture.h"

#define ACCOUNTS 100
#define BLOCKS 100
#define PER_BLOCK 100

static tc_keypair keys[ACCOUNTS + 20];
static char *base_dir; /* the clean ledger, built once */

static void genesis_all(struct ledger *l)
{
    struct ledger_genesis_account g[ACCOUNTS];
    for (int i = 0; i < ACCOUNTS; i++) {
        g[i].pk = keys[i].pk;
        g[i].balance = 1000000;
    }
    struct tally_err err = {0};
    if (ledger_init_genesis(l, g, ACCOUNTS, &err) != TALLY_OK)
        fail_msg("genesis: %s", tally_err_text(&err));
}

/* 100 blocks of 100 transfers with some rejections of every kind mixed in. */
static void build_ledger(const char *dir)
{
    struct ledger_open_opts o = {.sync = false};
    struct ledger *l = NULL;
    struct tally_err err = {0};
    assert_int_equal(ledger_open_opts(dir, &o, &l, &err), TALLY_OK);
    genesis_all(l);
    static uint8_t txs[PER_BLOCK][LEDGER_TX_BYTES], prev[LEDGER_TX_BYTES];
    uint64_t nonce[ACCOUNTS] = {0};
    uint64_t ok = 0, total = 0;
    for (int b = 1; b <= BLOCKS; b++) {
        int expect_ok = 0;
        for (int j = 0; j < PER_BLOCK; j++) {
            int s = (b + j) % ACCOUNTS, to = (s + 1 + j % 7 + (j % 11 == 0 ? 19 : 0)) % 120;
            if (to == s)
                to = (to + 1) % 120;
            uint64_t amount = 1 + (uint64_t)(b * j) % 50;
            if (b % 10 == 3 && j == 5) {
                memcpy(txs[j], prev, LEDGER_TX_BYTES); /* duplicate from the last block */
            } else if (b % 10 == 3 && j == 6) {
                lf_transfer(&keys[s], &keys[to].pk, amount, nonce[s] + 5, txs[j]); /* nonce */
            } else if (b % 17 == 0 && j == 7) {
                lf_transfer(&keys[s], &keys[to].pk, amount, nonce[s] + 1, txs[j]);
                txs[j][100] ^= 0x40; /* bad signature */
            } else if (b % 19 == 0 && j == 8) {
                lf_transfer(&keys[s], &keys[to].pk, amount, nonce[s] + 1, txs[j]);
                txs[j][1] = 7; /* malformed */
            } else if (b % 23 == 0 && j == 9) {
                lf_transfer(&keys[s], &keys[to].pk, 1u << 30, nonce[s] + 1, txs[j]); /* funds */
            } else {
                lf_transfer(&keys[s], &keys[to].pk, amount, ++nonce[s], txs[j]);
                expect_ok++;
            }
        }
        struct ledger_block_result r;
        if (ledger_apply_block(l, (uint64_t)b, &txs[0][0], PER_BLOCK, &r, &err) != TALLY_OK)
            fail_msg("apply %d: %s", b, tally_err_text(&err));
        int got_ok = 0;
        for (int j = 0; j < PER_BLOCK; j++)
            got_ok += r.results[j] == LEDGER_RESULT_OK;
        assert_int_equal(got_ok, expect_ok);
        ok += (uint64_t)got_ok;
        total += PER_BLOCK;
        memcpy(prev, txs[PER_BLOCK - 1], LEDGER_TX_BYTES);
    }
    assert_true(total == 10000 && ok > 9900);
    ledger_close(l);
}

static int group_setup(void **state)
{
    (void)state;
    if (tc_init() != TALLY_OK)
        return -1;
    for (int i = 0; i < ACCOUNTS + 20; i++)
        lf_keypair((uint32_t)(1000 + i), &keys[i]);
    base_dir = lf_tmpdir();
    char path[4200];
    snprintf(path, sizeof(path), "%s/db", base_dir);
    build_ledger(path);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    lf_rmdir(base_dir);
    for (int i = 0; i < ACCOUNTS + 20; i++)
        tc_keypair_free(&keys[i]);
    return 0;
}

/* A fresh copy of the clean ledger: returns the tmp dir, db path in `db`. */
static char *copy_base(char *db, size_t size)
{
    char *dir = lf_tmpdir();
    char src[4200];
    snprintf(src, sizeof(src), "%s/db", base_dir);
    snprintf(db, size, "%s/db", dir);
    assert_int_equal(lf_copydir(src, db), 0);
    return dir;
}

/* Run the built tool when TALLY_BIN_DIR is set; returns its exit code, or -1 when skipped. */
static int run_tool(const char *db)
{
    const char *bin = getenv("TALLY_BIN_DIR");
    if (bin == NULL || bin[0] == '\0')
        return -1;
    char cmd[9000];
    snprintf(cmd, sizeof(cmd), "'%s/tally' audit --data '%s' --quiet >/dev/null 2>&1", bin, db);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* `tally audit` on db exits with want (checked when the tool is built). */
static void expect_tool_exit(const char *db, int want)
{
    int rc = run_tool(db);
    if (rc >= 0)
        assert_int_equal(rc, want);
}

/* tally export: one line per block, allocation and transaction, valid JSON. */
static void check_export(const char *db)
{
    const char *bin = getenv("TALLY_BIN_DIR");
    if (bin == NULL || bin[0] == '\0')
        return;
    char out[4200], cmd[9000];
    snprintf(out, sizeof(out), "%s/export.jsonl", base_dir);
    snprintf(cmd, sizeof(cmd), "'%s/tally' export --data '%s' --out '%s'", bin, db, out);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(out, "r");
    assert_non_null(f);
    char line[2048];
    size_t lines = 0, blocks = 0, txs = 0, allocs = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        assert_non_null(o);
        const char *type = json_string_value(json_object_get(o, "type"));
        assert_non_null(type);
        blocks += strcmp(type, "block") == 0;
        txs += strcmp(type, "tx") == 0;
        allocs += strcmp(type, "allocation") == 0;
        if (lines == 0) {
            assert_string_equal(type, "block");
            assert_int_equal(json_integer_value(json_object_get(o, "height")), 0);
        }
        if (strcmp(type, "tx") == 0)
            assert_non_null(json_object_get(o, "result"));
        json_decref(o);
        lines++;
    }
    fclose(f);
    assert_int_equal(blocks, BLOCKS + 1);
    assert_int_equal(allocs, ACCOUNTS);
    assert_int_equal(txs, BLOCKS * PER_BLOCK);
    assert_int_equal(lines, blocks + allocs + txs);
}

static void test_clean(void **state)
{
    (void)state;
    char db[4200];
    snprintf(db, sizeof(db), "%s/db", base_dir);
    struct ledger_audit_report rep;
    struct tally_err err = {0};
    assert_int_equal(ledger_audit(db, NULL, &rep, &err), TALLY_OK);
    if (!rep.intact)
        fail_msg("audit: %s", rep.problem);
    assert_true(rep.blocks == BLOCKS + 1);
    assert_true(rep.txs == BLOCKS * PER_BLOCK);
    assert_true(rep.head_height == BLOCKS);
    assert_true(rep.accounts == 120);
    print_message("audit: %llu txs in %.3f s = %.0f tx/s\n", (unsigned long long)rep.txs,
                  rep.seconds, rep.tx_per_sec);

    /* The same answer as the ledger itself. */
    struct ledger *l = NULL;
    assert_int_equal(ledger_open(db, &l, &err), TALLY_OK);
    tc_hash h, d;
    ledger_head_hash(l, &h);
    ledger_state_digest(l, &d);
    assert_memory_equal(&h, &rep.head_hash, sizeof(h));
    assert_memory_equal(&d, &rep.state_digest, sizeof(d));
    ledger_close(l);

    /* One worker gives the same verdict. */
    struct ledger_audit_opts o = {.workers = 1};
    assert_int_equal(ledger_audit(db, &o, &rep, &err), TALLY_OK);
    assert_true(rep.intact);

    expect_tool_exit(db, 0);
    check_export(db);
    /* A missing directory is an error, not a verdict. */
    assert_int_not_equal(ledger_audit("/tmp/tally-no-such-dir-xyz", NULL, &rep, &err), TALLY_OK);
}

/* Flip the bits of mask in the byte at offset of the value under key. */
static void tamper(const char *db, const uint8_t *key, size_t klen, size_t offset, uint8_t mask)
{
    size_t len = 0;
    char *val = lf_raw_get(db, key, klen, &len);
    assert_non_null(val);
    assert_true(offset < len);
    val[offset] = (char)(val[offset] ^ mask);
    lf_raw_put(db, key, klen, val, len);
    free(val);
}

static void expect_tampered(const char *db, uint64_t height, const char *needle)
{
    struct ledger_audit_report rep;
    struct tally_err err = {0};
    assert_int_equal(ledger_audit(db, NULL, &rep, &err), TALLY_OK);
    assert_false(rep.intact);
    print_message("found: %s\n", rep.problem);
    assert_true(rep.problem_height == height);
    if (strstr(rep.problem, needle) == NULL)
        fail_msg("'%s' does not mention '%s'", rep.problem, needle);
    expect_tool_exit(db, 1);
}

static void test_tampered_tx(void **state)
{
    (void)state;
    char db[4200];
    char *dir = copy_base(db, sizeof(db));
    uint8_t key[9];
    ledger_block_key(37, key);
    /* Block 37, tx 3, a byte of its amount. */
    tamper(db, key, sizeof(key), LEDGER_BLOCK_HEADER_BYTES + 3 * LEDGER_TX_BYTES + 66, 0x01);
    expect_tampered(db, 37, "tx 3 hash mismatch (tx_root)");
    lf_rmdir(dir);
}

static void test_tampered_link(void **state)
{
    (void)state;
    char db[4200];
    char *dir = copy_base(db, sizeof(db));
    uint8_t key[9];
    ledger_block_key(50, key);
    tamper(db, key, sizeof(key), 12 + 5, 0x80); /* prev_hash */
    expect_tampered(db, 50, "prev_hash does not match block 49");
    lf_rmdir(dir);
}

static void test_tampered_account(void **state)
{
    (void)state;
    char db[4200];
    char *dir = copy_base(db, sizeof(db));
    uint8_t key[1 + TC_PUBKEY_BYTES];
    key[0] = LEDGER_KEY_ACCOUNT;
    memcpy(key + 1, keys[42].pk.b, TC_PUBKEY_BYTES);
    tamper(db, key, sizeof(key), 1, 0x04); /* balance += 1024 */
    char hex[65];
    tc_hex_encode(keys[42].pk.b, TC_PUBKEY_BYTES, hex);
    expect_tampered(db, LEDGER_AUDIT_NO_HEIGHT, hex);
    expect_tampered(db, LEDGER_AUDIT_NO_HEIGHT, "stored balance");
    /* The ledger's own open does not notice (the head is fine); the audit does. */
    lf_rmdir(dir);
}

static void test_tampered_results_and_index(void **state)
{
    (void)state;
    char db[4200];
    char *dir = copy_base(db, sizeof(db));
    uint8_t key[9];
    ledger_block_key(64, key);
    /* A recorded result byte, and the header's results_hash does not know. */
    tamper(db, key, sizeof(key), LEDGER_BLOCK_HEADER_BYTES + PER_BLOCK * LEDGER_TX_BYTES + 2, 0x02);
    expect_tampered(db, 64, "results_hash");
    lf_rmdir(dir);

    dir = copy_base(db, sizeof(db));
    ledger_block_key(71, key);
    tamper(db, key, sizeof(key), 108, 0x01); /* state_digest: also breaks block 72's link */
    expect_tampered(db, 71, "state_digest");
    lf_rmdir(dir);

    /* A tx index entry removed; then one added for a transaction never seen. */
    dir = copy_base(db, sizeof(db));
    struct ledger *l = NULL;
    struct tally_err err = {0};
    uint8_t *bytes;
    size_t len;
    bool found;
    assert_int_equal(ledger_open(db, &l, &err), TALLY_OK);
    assert_int_equal(ledger_get_block(l, 80, &bytes, &len, &found, &err), TALLY_OK);
    ledger_close(l);
    uint8_t tkey[1 + TC_HASH_BYTES];
    tkey[0] = LEDGER_KEY_TX;
    ledger_tx_hash_bytes(bytes + LEDGER_BLOCK_HEADER_BYTES + 10 * LEDGER_TX_BYTES,
                         (tc_hash *)(tkey + 1));
    free(bytes);
    lf_raw_put(db, tkey, sizeof(tkey), NULL, 0);
    expect_tampered(db, 80, "tx 10");
    expect_tampered(db, 80, "missing from the tx index");
    lf_rmdir(dir);

    dir = copy_base(db, sizeof(db));
    memset(tkey + 1, 0xee, TC_HASH_BYTES);
    lf_raw_put(db, tkey, sizeof(tkey), "\1\0\0\0\0\0\0\0\0\0\0\0\0", 13);
    expect_tampered(db, LEDGER_AUDIT_NO_HEIGHT,
                    "tx index has 9991 entries but the blocks have 9990");
    lf_rmdir(dir);

    /* The head record's LtHash. */
    dir = copy_base(db, sizeof(db));
    uint8_t hkey = LEDGER_KEY_HEAD;
    tamper(db, &hkey, 1, 72 + 500, 0x10);
    expect_tampered(db, BLOCKS, "LtHash");
    lf_rmdir(dir);
}

/* The state digests are summed by worker threads per block and compared in
 * height order: any number of workers gives the ledger's own (sequential)
 * digest and head. */
static void test_workers_agree(void **state)
{
    (void)state;
    char db[4200];
    snprintf(db, sizeof(db), "%s/db", base_dir);
    struct tally_err err = {0};
    struct ledger *l = NULL;
    assert_int_equal(ledger_open(db, &l, &err), TALLY_OK);
    tc_hash h, d;
    ledger_head_hash(l, &h);
    ledger_state_digest(l, &d);
    ledger_close(l);
    static const unsigned workers[] = {1, 2, 3, 8};
    for (size_t i = 0; i < sizeof(workers) / sizeof(workers[0]); i++) {
        struct ledger_audit_opts o = {.workers = workers[i]};
        struct ledger_audit_report rep;
        assert_int_equal(ledger_audit(db, &o, &rep, &err), TALLY_OK);
        if (!rep.intact)
            fail_msg("audit with %u workers: %s", workers[i], rep.problem);
        assert_true(rep.blocks == BLOCKS + 1);
        assert_true(rep.txs == BLOCKS * PER_BLOCK);
        assert_true(rep.accounts == 120);
        assert_memory_equal(&h, &rep.head_hash, sizeof(h));
        assert_memory_equal(&d, &rep.state_digest, sizeof(d));
    }
}

/* A state digest is compared after the main thread has executed later
 * blocks; the report still names the first problem by height, with the
 * counts as of that block. */
static void expect_digest_problem(const char *db, uint64_t height)
{
    static const unsigned workers[] = {0, 1, 3};
    for (size_t i = 0; i < sizeof(workers) / sizeof(workers[0]); i++) {
        struct ledger_audit_opts o = {.workers = workers[i]};
        struct ledger_audit_report rep;
        struct tally_err err = {0};
        assert_int_equal(ledger_audit(db, &o, &rep, &err), TALLY_OK);
        assert_false(rep.intact);
        if (rep.problem_height != height || strstr(rep.problem, "state_digest") == NULL)
            fail_msg("%u workers: expected a state_digest problem at %llu, got '%s'", workers[i],
                     (unsigned long long)height, rep.problem);
        assert_true(rep.blocks == height); /* blocks 0..height-1 passed */
        assert_true(rep.txs == height * PER_BLOCK);
        assert_true(rep.accounts == (height == 0 ? ACCOUNTS : 120));
    }
    expect_tool_exit(db, 1);
}

static void test_tampered_digest(void **state)
{
    (void)state;
    char db[4200];
    uint8_t key[9];
    /* The genesis digest (block 1's link breaks too). */
    char *dir = copy_base(db, sizeof(db));
    ledger_block_key(0, key);
    tamper(db, key, sizeof(key), 108 + 31, 0x01);
    expect_digest_problem(db, 0);
    lf_rmdir(dir);

    /* The last block's: no later block links to it. */
    dir = copy_base(db, sizeof(db));
    ledger_block_key(BLOCKS, key);
    tamper(db, key, sizeof(key), 108, 0x80);
    expect_digest_problem(db, BLOCKS);
    lf_rmdir(dir);

    /* Block 71's, and a recorded result in block 75 that the main thread
     * finds before block 71's digest has been compared. */
    dir = copy_base(db, sizeof(db));
    ledger_block_key(71, key);
    tamper(db, key, sizeof(key), 120, 0x04);
    ledger_block_key(75, key);
    tamper(db, key, sizeof(key), LEDGER_BLOCK_HEADER_BYTES + PER_BLOCK * LEDGER_TX_BYTES + 4, 0x02);
    expect_digest_problem(db, 71);
    lf_rmdir(dir);
}

/* ---- crash ------------------------------------------------------------------ */

static void child_loop(const char *db, int fd)
{
    struct ledger *l = NULL;
    struct tally_err err = {0};
    if (ledger_open(db, &l, &err) != TALLY_OK) /* sync = true */
        _exit(3);
    uint8_t txs[20][LEDGER_TX_BYTES];
    for (uint64_t h = ledger_height(l) + 1;; h++) {
        for (int j = 0; j < 20; j++) {
            int s = j; /* senders 0..19, one tx each per block */
            lf_transfer(&keys[s], &keys[50 + j].pk, 1, h, txs[j]);
        }
        if (ledger_apply_block(l, h, &txs[0][0], 20, NULL, &err) != TALLY_OK)
            _exit(4);
        if (write(fd, &h, sizeof(h)) != sizeof(h))
            _exit(5);
    }
}

static void test_crash(void **state)
{
    (void)state;
    char *dir = lf_tmpdir();
    char db[4200];
    snprintf(db, sizeof(db), "%s/db", dir);
    struct ledger *l = NULL;
    struct tally_err err = {0};
    assert_int_equal(ledger_open(db, &l, &err), TALLY_OK);
    genesis_all(l);
    ledger_close(l);

    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        child_loop(db, fds[1]);
    }
    close(fds[1]);
    uint64_t last = 0, h;
    while (last < 8 && read(fds[0], &h, sizeof(h)) == sizeof(h))
        last = h;
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    while (read(fds[0], &h, sizeof(h)) == sizeof(h))
        last = h; /* everything acknowledged before the kill */
    close(fds[0]);
    assert_true(last >= 8);

    /* Audited first, as the kill left it: the last blocks live only in the
     * WAL, which the audit's read-only open replays into memtables that its
     * iterators must walk in full. */
    struct ledger_audit_report rep;
    assert_int_equal(ledger_audit(db, NULL, &rep, &err), TALLY_OK);
    if (!rep.intact)
        fail_msg("audit after crash: %s", rep.problem);

    assert_int_equal(ledger_open(db, &l, &err), TALLY_OK);
    uint64_t height = ledger_height(l);
    assert_true(rep.head_height == height);
    print_message("killed after block %llu acknowledged; reopened at %llu\n",
                  (unsigned long long)last, (unsigned long long)height);
    assert_true(height == last || height == last + 1);
    struct ledger_account a;
    bool found;
    assert_int_equal(ledger_get_account(l, &keys[0].pk, &a, &found, &err), TALLY_OK);
    assert_true(found && a.nonce == height && a.balance == 1000000 - height);
    ledger_close(l);
    lf_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean),
        cmocka_unit_test(test_tampered_tx),
        cmocka_unit_test(test_tampered_link),
        cmocka_unit_test(test_tampered_account),
        cmocka_unit_test(test_tampered_results_and_index),
        cmocka_unit_test(test_workers_agree),
        cmocka_unit_test(test_tampered_digest),
        cmocka_unit_test(test_crash),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
