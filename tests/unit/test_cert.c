/* Checkpoint certificates: the statement bytes, the codec (round trip and
 * hostile input), verification and each kind of tampering, storage in the
 * ledger (staged with a block or flushed), ledger_cert_check against a real
 * ledger, the audit's certificate walk, and `tally verify-checkpoint`'s
 * checks (tools/lib/checkpoint.c) over a data directory and an export. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <sys/wait.h>

#include "config/config.h"
#include "ledger/audit.h"
#include "ledger/block.h"
#include "ledger/cert.h"
#include "ledger/ledger.h"
#include "ledger/ledger_internal.h"
#include "tests/helpers/ledger_fixture.h"
#include "tests/helpers/tmpdir.h"
#include "tools/lib/checkpoint.h"

#define N 4      /* replicas */
#define QUORUM 3 /* 2f+1 */
#define NACCT 3
#define BLOCKS 8

static tc_keypair rk[N];    /* the cluster's replica keys */
static tc_pubkey rpk[N];    /* their public keys, in replica order */
static tc_keypair outsider; /* not a replica */
static tc_keypair accts[NACCT];
static struct ledger_genesis_account gen[NACCT];
static char *base_dir;                /* a ledger of BLOCKS blocks, certificates at 2, 4, 6, 8 */
static char base_db[TMPDIR_PATH_MAX]; /* base_dir/db */
static char cluster_path[TMPDIR_PATH_MAX]; /* base_dir/cluster.json for it */
static struct tally_config cfg;            /* the same cluster in memory */

/* ---- helpers ------------------------------------------------------------------------ */

static void expect_err(int rc, const struct tally_err *err, int code, const char *needle)
{
    if (rc != code)
        fail_msg("expected code %d, got %d (%s)", code, rc, tally_err_text(err));
    if (strstr(tally_err_text(err), needle) == NULL)
        fail_msg("'%s' does not mention '%s'", tally_err_text(err), needle);
    print_message("rejected: %s\n", tally_err_text(err));
}

/* A certificate of ck on chain signed by replicas ids[0..k-1] (sorted). */
static void make_cert(const tc_hash *chain, const struct ledger_ckpt *ck, const int *ids, int k,
                      struct ledger_cert *c)
{
    memset(c, 0, sizeof(*c));
    c->ck = *ck;
    c->count = (uint32_t)k;
    for (int i = 0; i < k; i++) {
        c->sigs[i].signer = rk[ids[i]].pk;
        ledger_ckpt_sign(&rk[ids[i]], chain, ck, &c->sigs[i].sig);
    }
    ledger_cert_sort(c);
}

static int signer_index(const struct ledger_cert *c, int replica)
{
    for (uint32_t i = 0; i < c->count; i++)
        if (memcmp(c->sigs[i].signer.b, rk[replica].pk.b, TC_PUBKEY_BYTES) == 0)
            return (int)i;
    return -1;
}

static void genesis(struct ledger *l)
{
    struct tally_err err = {0};
    if (ledger_init_genesis(l, gen, NACCT, &err) != TALLY_OK)
        fail_msg("genesis: %s", tally_err_text(&err));
}

/* Block `height` with one transfer from accts[0] (nonce = height). */
static void apply(struct ledger *l, uint64_t height, struct ledger_block_result *r)
{
    uint8_t tx[LEDGER_TX_BYTES];
    lf_transfer(&accts[0], &accts[1].pk, 1, height, tx);
    struct tally_err err = {0};
    if (ledger_apply_block(l, height, tx, 1, r, &err) != TALLY_OK)
        fail_msg("apply %llu: %s", (unsigned long long)height, tally_err_text(&err));
}

static struct ledger *open_mem(void)
{
    struct ledger_open_opts o = {.in_memory = true, .sync = false};
    struct ledger *l = NULL;
    struct tally_err err = {0};
    if (ledger_open_opts("/mem/cert", &o, &l, &err) != TALLY_OK)
        fail_msg("open: %s", tally_err_text(&err));
    return l;
}

static const int q013[] = {0, 1, 3};

/* BLOCKS blocks; after each even block its certificate (replicas 0, 1, 3) is
 * staged and rides with the next block; the last one is flushed alone. */
static void build_ledger(const char *db)
{
    struct ledger_open_opts o = {.sync = false};
    struct ledger *l = NULL;
    struct tally_err err = {0};
    assert_int_equal(ledger_open_opts(db, &o, &l, &err), TALLY_OK);
    genesis(l);
    tc_hash chain;
    ledger_genesis_hash(l, &chain);
    for (uint64_t h = 1; h <= BLOCKS; h++) {
        struct ledger_block_result r;
        apply(l, h, &r);
        if (h % 2 == 0) {
            struct ledger_ckpt ck = {h, r.block_hash, r.state_digest};
            struct ledger_cert c;
            make_cert(&chain, &ck, q013, 3, &c);
            assert_int_equal(ledger_stage_cert(l, &c, &err), TALLY_OK);
        }
    }
    assert_int_equal(ledger_meta_flush(l, &err), TALLY_OK);
    ledger_close(l);
}

static void write_cluster(const char *dir, const struct ledger_genesis_account *g, size_t n,
                          char *path_out, size_t size)
{
    struct tally_config c;
    config_set_defaults(&c);
    snprintf(c.cluster_name, sizeof(c.cluster_name), "certtest");
    c.n = N;
    c.f = 1;
    for (uint32_t i = 0; i < N; i++) {
        c.replicas[i].id = i;
        c.replicas[i].pk = rk[i].pk;
        snprintf(c.replicas[i].peer_address, CONFIG_ADDR_MAX, "tcp://127.0.0.1:%u", 29000 + 2 * i);
        snprintf(c.replicas[i].client_address, CONFIG_ADDR_MAX, "tcp://127.0.0.1:%u",
                 29001 + 2 * i);
    }
    struct tally_genesis tg = {.count = n, .accounts = (struct ledger_genesis_account *)g};
    char gpath[TMPDIR_PATH_MAX];
    struct tally_err err = {0};
    tmpdir_join(gpath, sizeof(gpath), dir, "genesis.json");
    tmpdir_join(path_out, size, dir, "cluster.json");
    if (config_write_genesis(gpath, &tg, &err) != TALLY_OK ||
        config_write_cluster(path_out, &c, "genesis.json", &err) != TALLY_OK)
        fail_msg("writing the cluster: %s", tally_err_text(&err));
}

static int group_setup(void **state)
{
    (void)state;
    if (tc_init() != TALLY_OK)
        return -1;
    for (int i = 0; i < N; i++) {
        lf_keypair((uint32_t)(500 + i), &rk[i]);
        rpk[i] = rk[i].pk;
    }
    lf_keypair(600, &outsider);
    for (int i = 0; i < NACCT; i++) {
        lf_keypair((uint32_t)(700 + i), &accts[i]);
        gen[i].pk = accts[i].pk;
        gen[i].balance = 1000;
    }
    base_dir = lf_tmpdir();
    tmpdir_join(base_db, sizeof(base_db), base_dir, "db");
    build_ledger(base_db);
    write_cluster(base_dir, gen, NACCT, cluster_path, sizeof(cluster_path));
    struct tally_err err = {0};
    if (config_load(cluster_path, &cfg, &err) != TALLY_OK) {
        fprintf(stderr, "config: %s\n", tally_err_text(&err));
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    config_free(&cfg);
    lf_rmdir(base_dir);
    for (int i = 0; i < N; i++)
        tc_keypair_free(&rk[i]);
    tc_keypair_free(&outsider);
    for (int i = 0; i < NACCT; i++)
        tc_keypair_free(&accts[i]);
    return 0;
}

/* ---- statement and codec ---------------------------------------------------------------- */

static void fill(tc_hash *h, uint8_t v)
{
    memset(h->b, v, TC_HASH_BYTES);
}

static void test_statement_golden(void **state)
{
    (void)state;
    tc_hash chain;
    fill(&chain, 0x11);
    struct ledger_ckpt ck = {.height = 0x0102030405060708ull};
    fill(&ck.block_hash, 0x22);
    fill(&ck.state_digest, 0x33);
    uint8_t st[LEDGER_CKPT_STATEMENT_BYTES];
    memset(st, 0xee, sizeof(st));
    ledger_ckpt_statement(&chain, &ck, st);
    static const uint8_t tag[16] = {'T', 'A', 'L', 'L', 'Y', '-', 'C', 'K',
                                    'P', 'T', '-', 'V', '1', 0,   0,   0};
    assert_memory_equal(st, tag, 16);
    for (int i = 16; i < 48; i++)
        assert_int_equal(st[i], 0x11);
    static const uint8_t height_le[8] = {8, 7, 6, 5, 4, 3, 2, 1};
    assert_memory_equal(st + 48, height_le, 8);
    for (int i = 56; i < 88; i++)
        assert_int_equal(st[i], 0x22);
    for (int i = 88; i < 120; i++)
        assert_int_equal(st[i], 0x33);

    /* A signature binds chain, height, hash and digest. */
    tc_sig sig;
    ledger_ckpt_sign(&rk[0], &chain, &ck, &sig);
    assert_int_equal(ledger_ckpt_verify(&rk[0].pk, &chain, &ck, &sig), TALLY_OK);
    assert_int_equal(tc_verify(&rk[0].pk, st, sizeof(st), &sig), TALLY_OK);
    assert_int_not_equal(ledger_ckpt_verify(&rk[1].pk, &chain, &ck, &sig), TALLY_OK);
    struct ledger_ckpt other = ck;
    other.height++;
    assert_int_not_equal(ledger_ckpt_verify(&rk[0].pk, &chain, &other, &sig), TALLY_OK);
    other = ck;
    other.state_digest.b[31] ^= 1;
    assert_int_not_equal(ledger_ckpt_verify(&rk[0].pk, &chain, &other, &sig), TALLY_OK);
    tc_hash chain2 = chain;
    chain2.b[0] ^= 1;
    assert_int_not_equal(ledger_ckpt_verify(&rk[0].pk, &chain2, &ck, &sig), TALLY_OK);
}

static void sample_cert(struct ledger_cert *c, uint32_t count)
{
    tc_hash chain;
    fill(&chain, 0x44);
    struct ledger_ckpt ck = {.height = 256};
    fill(&ck.block_hash, 0x55);
    fill(&ck.state_digest, 0x66);
    memset(c, 0, sizeof(*c));
    c->ck = ck;
    c->count = count;
    for (uint32_t i = 0; i < count; i++) {
        memset(c->sigs[i].signer.b, (int)(0x80 - i), TC_PUBKEY_BYTES);
        memset(c->sigs[i].sig.b, (int)i, TC_SIG_BYTES);
    }
}

static void test_encode_roundtrip(void **state)
{
    (void)state;
    struct ledger_cert c, d;
    struct tally_err err = {0};
    for (uint32_t count = 1; count <= LEDGER_CERT_MAX_SIGS; count++) {
        sample_cert(&c, count);
        uint8_t buf[LEDGER_CERT_MAX_BYTES + 1];
        size_t len = ledger_cert_encode(&c, buf);
        assert_int_equal(len, ledger_cert_encoded_size(&c));
        assert_int_equal(len, LEDGER_CERT_FIXED_BYTES + count * 96);
        assert_int_equal(ledger_cert_decode(buf, len, &d, &err), TALLY_OK);
        assert_memory_equal(&c, &d, sizeof(c));
        /* Layout: height LE, hash, digest, count LE, then pk || sig. */
        assert_int_equal(ledger_get_u64(buf), 256);
        assert_int_equal(buf[8], 0x55);
        assert_int_equal(buf[40], 0x66);
        assert_int_equal(ledger_get_u32(buf + 72), count);
        assert_int_equal(buf[76], 0x80);
        assert_int_equal(buf[76 + 32], 0);
        /* Every truncation is refused, so is one byte more. */
        for (size_t cut = 0; cut < len; cut++) {
            memset(&err, 0, sizeof(err));
            assert_int_equal(ledger_cert_decode(buf, cut, &d, &err), TALLY_ETRUNC);
        }
        buf[len] = 0;
        assert_int_equal(ledger_cert_decode(buf, len + 1, &d, &err), TALLY_EFORMAT);
    }
    assert_int_equal(ledger_cert_decode(NULL, 100, &d, &err), TALLY_ETRUNC);
}

static void test_decode_hostile(void **state)
{
    (void)state;
    struct ledger_cert c, d;
    struct tally_err err = {0};
    uint8_t buf[LEDGER_CERT_MAX_BYTES + 200];
    sample_cert(&c, 3);
    size_t len = ledger_cert_encode(&c, buf);

    ledger_put_u32(buf + 72, 0);
    expect_err(ledger_cert_decode(buf, len, &d, &err), &err, TALLY_EFORMAT, "no signatures");
    ledger_put_u32(buf + 72, LEDGER_CERT_MAX_SIGS + 1);
    expect_err(ledger_cert_decode(buf, sizeof(buf), &d, &err), &err, TALLY_ETOOBIG,
               "17 signatures (limit 16)");
    ledger_put_u32(buf + 72, UINT32_MAX);
    assert_int_equal(ledger_cert_decode(buf, sizeof(buf), &d, &err), TALLY_ETOOBIG);
    ledger_put_u32(buf + 72, 4); /* claims 4, holds 3 */
    expect_err(ledger_cert_decode(buf, len, &d, &err), &err, TALLY_ETRUNC, "signature 3");
    ledger_put_u32(buf + 72, 2); /* claims 2, holds 3: trailing bytes */
    expect_err(ledger_cert_decode(buf, len, &d, &err), &err, TALLY_EFORMAT, "96 trailing bytes");
    /* Oversized: a full certificate plus more. */
    sample_cert(&c, LEDGER_CERT_MAX_SIGS);
    len = ledger_cert_encode(&c, buf);
    assert_int_equal(len, LEDGER_CERT_MAX_BYTES);
    assert_int_equal(ledger_cert_decode(buf, sizeof(buf), &d, &err), TALLY_EFORMAT);
    /* A failed decode leaves nothing behind. */
    uint8_t zero[sizeof(d)];
    memset(zero, 0, sizeof(zero));
    assert_memory_equal(&d, zero, sizeof(d));

    /* Garbage of every length: never a crash, and a success re-encodes identically. */
    uint32_t x = 12345;
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)(x % (LEDGER_CERT_MAX_BYTES + 40));
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            buf[i] = (uint8_t)(x >> 16);
        }
        if (round % 3 == 0 && n >= 76) /* a plausible count now and then */
            ledger_put_u32(buf + 72, (uint32_t)(x % 20));
        x = x * 1103515245u + 12345u;
        if (ledger_cert_decode(buf, n, &d, &err) == TALLY_OK) {
            uint8_t again[LEDGER_CERT_MAX_BYTES];
            assert_int_equal(ledger_cert_encode(&d, again), n);
            assert_memory_equal(again, buf, n);
        }
    }
}

static void test_sort(void **state)
{
    (void)state;
    tc_hash chain;
    fill(&chain, 1);
    struct ledger_ckpt ck = {.height = 9};
    struct ledger_cert a, b;
    static const int order1[] = {3, 0, 2, 1}, order2[] = {1, 2, 3, 0};
    make_cert(&chain, &ck, order1, 4, &a);
    make_cert(&chain, &ck, order2, 4, &b);
    for (uint32_t i = 1; i < a.count; i++)
        assert_true(memcmp(a.sigs[i - 1].signer.b, a.sigs[i].signer.b, TC_PUBKEY_BYTES) < 0);
    uint8_t ea[LEDGER_CERT_MAX_BYTES], eb[LEDGER_CERT_MAX_BYTES];
    size_t la = ledger_cert_encode(&a, ea), lb = ledger_cert_encode(&b, eb);
    assert_int_equal(la, lb);
    assert_memory_equal(ea, eb, la); /* one set of signatures, one encoding */
    /* Each signature travels with its signer. */
    struct tally_err err = {0};
    assert_int_equal(ledger_cert_verify(&a, &chain, rpk, N, QUORUM, &err), TALLY_OK);
}

/* ---- verification ------------------------------------------------------------------------ */

static void test_verify(void **state)
{
    (void)state;
    tc_hash chain;
    fill(&chain, 7);
    struct ledger_ckpt ck = {.height = 128};
    fill(&ck.block_hash, 8);
    fill(&ck.state_digest, 9);
    struct ledger_cert c, t;
    struct tally_err err = {0};
    make_cert(&chain, &ck, q013, 3, &c);
    assert_int_equal(ledger_cert_verify(&c, &chain, rpk, N, QUORUM, &err), TALLY_OK);
    static const int all[] = {0, 1, 2, 3};
    make_cert(&chain, &ck, all, 4, &t);
    assert_int_equal(ledger_cert_verify(&t, &chain, rpk, N, QUORUM, &err), TALLY_OK);

    /* One signature byte flipped. */
    t = c;
    t.sigs[signer_index(&t, 1)].sig.b[10] ^= 0x04;
    expect_err(ledger_cert_verify(&t, &chain, rpk, N, QUORUM, &err), &err, TALLY_EBADSIG,
               "the signature of replica 1 does not verify");
    /* A signer listed twice (with its valid signature) to reach the quorum. */
    static const int q01[] = {0, 1};
    make_cert(&chain, &ck, q01, 2, &t);
    t.sigs[2] = t.sigs[signer_index(&t, 0)];
    t.count = 3;
    expect_err(ledger_cert_verify(&t, &chain, rpk, N, QUORUM, &err), &err, TALLY_EBADSIG,
               "replica 0 signed twice");
    /* A signer removed: below 2f+1. */
    t = c;
    t.sigs[signer_index(&t, 3)] = t.sigs[2];
    t.count = 2;
    ledger_cert_sort(&t);
    expect_err(ledger_cert_verify(&t, &chain, rpk, N, QUORUM, &err), &err, TALLY_EBADSIG,
               "too few signatures: 2 of the 3 needed");
    /* An unknown key (valid signature, not a replica). */
    t = c;
    t.sigs[3].signer = outsider.pk;
    ledger_ckpt_sign(&outsider, &chain, &ck, &t.sigs[3].sig);
    t.count = 4;
    ledger_cert_sort(&t);
    int pos = -1;
    for (uint32_t i = 0; i < t.count; i++)
        if (memcmp(t.sigs[i].signer.b, outsider.pk.b, TC_PUBKEY_BYTES) == 0)
            pos = (int)i;
    char hex[65], needle[120];
    tc_hex_encode(outsider.pk.b, TC_PUBKEY_BYTES, hex);
    hex[16] = '\0';
    snprintf(needle, sizeof(needle), "signature %d is by key %s", pos, hex);
    expect_err(ledger_cert_verify(&t, &chain, rpk, N, QUORUM, &err), &err, TALLY_EBADSIG, needle);
    assert_non_null(strstr(err.msg, "not a replica of the cluster"));
    /* The digest changed: no signature verifies any more. */
    t = c;
    t.ck.state_digest.b[0] ^= 1;
    expect_err(ledger_cert_verify(&t, &chain, rpk, N, QUORUM, &err), &err, TALLY_EBADSIG,
               "does not verify");
    /* Another chain. */
    tc_hash chain2 = chain;
    chain2.b[5] ^= 0x10;
    expect_err(ledger_cert_verify(&c, &chain2, rpk, N, QUORUM, &err), &err, TALLY_EBADSIG,
               "does not verify");
    /* A cluster of other keys: the first signer is unknown. */
    expect_err(ledger_cert_verify(&c, &chain, rpk + 1, 1, 1, &err), &err, TALLY_EBADSIG,
               "not a replica of the cluster");
    /* Nothing to verify against. */
    assert_int_equal(ledger_cert_verify(&c, &chain, NULL, 0, 0, &err), TALLY_EINVAL);
}

/* ---- storage ------------------------------------------------------------------------------- */

static void test_storage(void **state)
{
    (void)state;
    struct ledger *l = open_mem();
    struct tally_err err = {0};
    struct ledger_cert c, got;
    bool found = true;
    struct ledger_ckpt ck = {0};
    make_cert(&ck.block_hash, &ck, q013, 3, &c);
    /* No genesis yet: nothing to certify. */
    assert_int_equal(ledger_stage_cert(l, &c, &err), TALLY_EINVAL);
    genesis(l);
    tc_hash chain;
    ledger_genesis_hash(l, &chain);
    struct ledger_block_result r[4];
    for (uint64_t h = 1; h <= 3; h++)
        apply(l, h, &r[h]);
    assert_int_equal(ledger_last_cert(l, &got, &found, &err), TALLY_OK);
    assert_false(found);

    /* Height 2 via ledger_meta_flush, stored in canonical order whatever the input order. */
    ck = (struct ledger_ckpt){2, r[2].block_hash, r[2].state_digest};
    make_cert(&chain, &ck, q013, 3, &c);
    struct ledger_cert rev = c;
    for (uint32_t i = 0; i < 3; i++)
        rev.sigs[i] = c.sigs[2 - i];
    assert_int_equal(ledger_stage_cert(l, &rev, &err), TALLY_OK);
    assert_int_equal(ledger_get_cert(l, 2, &got, &found, &err), TALLY_OK);
    assert_false(found); /* staged only */
    assert_int_equal(ledger_meta_flush(l, &err), TALLY_OK);
    assert_int_equal(ledger_get_cert(l, 2, &got, &found, &err), TALLY_OK);
    assert_true(found);
    assert_memory_equal(&got, &c, sizeof(c));

    /* Too far ahead: refused at once. */
    ck.height = 5;
    struct ledger_cert far;
    make_cert(&chain, &ck, q013, 3, &far);
    expect_err(ledger_stage_cert(l, &far, &err), &err, TALLY_EINVAL, "ledger ends at 3");
    far.count = 0;
    assert_int_equal(ledger_stage_cert(l, &far, &err), TALLY_EINVAL);

    /* Height 4 = the next block: staged with a meta key, both ride with block 4. */
    struct ledger_ckpt ck4 = {4, {{0}}, {{0}}};
    fill(&ck4.block_hash, 0xab); /* the block is not applied yet; storage does not judge */
    struct ledger_cert c4;
    make_cert(&chain, &ck4, q013, 3, &c4);
    assert_int_equal(ledger_stage_cert(l, &c4, &err), TALLY_OK);
    assert_int_equal(ledger_stage_meta_put(l, "k", 1, "v", 1, &err), TALLY_OK);
    /* Flushing now would store a certificate above the head: refused, nothing written. */
    expect_err(ledger_meta_flush(l, &err), &err, TALLY_EINVAL, "apply block 4 first");
    void *val = NULL;
    size_t vlen = 0;
    assert_int_equal(ledger_get_meta(l, "k", 1, &val, &vlen, &found, &err), TALLY_OK);
    assert_false(found);
    /* A failed apply (wrong height) keeps them staged. */
    uint8_t tx[LEDGER_TX_BYTES];
    lf_transfer(&accts[0], &accts[1].pk, 1, 4, tx);
    assert_int_equal(ledger_apply_block(l, 6, tx, 1, NULL, &err), TALLY_EINVAL);
    apply(l, 4, &r[0]);
    assert_int_equal(ledger_get_cert(l, 4, &got, &found, &err), TALLY_OK);
    assert_true(found);
    assert_memory_equal(&got, &c4, sizeof(c4));
    assert_int_equal(ledger_get_meta(l, "k", 1, &val, &vlen, &found, &err), TALLY_OK);
    assert_true(found);
    free(val);
    /* After the block, flushing has nothing of it left to write. */
    assert_int_equal(ledger_meta_flush(l, &err), TALLY_OK);

    /* Lookups. */
    assert_int_equal(ledger_get_cert(l, 3, &got, &found, &err), TALLY_OK);
    assert_false(found);
    assert_int_equal(ledger_find_cert_from(l, 0, &got, &found, &err), TALLY_OK);
    assert_true(found && got.ck.height == 2);
    assert_int_equal(ledger_find_cert_from(l, 2, &got, &found, &err), TALLY_OK);
    assert_true(found && got.ck.height == 2);
    assert_int_equal(ledger_find_cert_from(l, 3, &got, &found, &err), TALLY_OK);
    assert_true(found && got.ck.height == 4);
    assert_int_equal(ledger_find_cert_from(l, 5, &got, &found, &err), TALLY_OK);
    assert_false(found);
    assert_int_equal(ledger_find_cert_from(l, UINT64_MAX, &got, &found, &err), TALLY_OK);
    assert_false(found);
    assert_int_equal(ledger_last_cert(l, &got, &found, &err), TALLY_OK);
    assert_true(found && got.ck.height == 4);

    /* Replacing the certificate of a height. */
    static const int q123[] = {1, 2, 3};
    make_cert(&chain, &ck4, q123, 3, &c4);
    assert_int_equal(ledger_stage_cert(l, &c4, &err), TALLY_OK);
    assert_int_equal(ledger_meta_flush(l, &err), TALLY_OK);
    assert_int_equal(ledger_get_cert(l, 4, &got, &found, &err), TALLY_OK);
    assert_memory_equal(&got, &c4, sizeof(c4));
    ledger_close(l);
}

/* A certificate survives a reopen; a read-only ledger refuses to stage. */
static void test_storage_persistent(void **state)
{
    (void)state;
    struct tally_err err = {0};
    struct ledger *l = NULL;
    struct ledger_open_opts ro = {.read_only = true};
    assert_int_equal(ledger_open_opts(base_db, &ro, &l, &err), TALLY_OK);
    struct ledger_cert got;
    bool found = false;
    uint64_t expect = 0;
    for (uint64_t from = 0;; from = got.ck.height + 1) {
        assert_int_equal(ledger_find_cert_from(l, from, &got, &found, &err), TALLY_OK);
        if (!found)
            break;
        expect += 2;
        assert_int_equal(got.ck.height, expect);
        assert_int_equal(got.count, 3);
    }
    assert_int_equal(expect, BLOCKS);
    assert_int_equal(ledger_last_cert(l, &got, &found, &err), TALLY_OK);
    assert_true(found && got.ck.height == BLOCKS);
    assert_int_equal(ledger_stage_cert(l, &got, &err), TALLY_EINVAL);
    ledger_close(l);
}

/* ---- ledger_cert_check ------------------------------------------------------------------ */

static void test_cert_check(void **state)
{
    (void)state;
    struct ledger *l = open_mem();
    struct tally_err err = {0};
    genesis(l);
    tc_hash chain;
    ledger_genesis_hash(l, &chain);
    struct ledger_block_result r[BLOCKS + 1];
    for (uint64_t h = 1; h <= BLOCKS; h++)
        apply(l, h, &r[h]);
    struct ledger_ckpt ck = {4, r[4].block_hash, r[4].state_digest};
    struct ledger_cert c, t;
    make_cert(&chain, &ck, q013, 3, &c);
    assert_int_equal(ledger_cert_check(l, &c, rpk, N, QUORUM, &err), TALLY_OK);

    /* Signatures first: one flipped byte. */
    t = c;
    t.sigs[0].sig.b[0] ^= 1;
    expect_err(ledger_cert_check(l, &t, rpk, N, QUORUM, &err), &err, TALLY_EBADSIG,
               "height 4: the signature of replica");
    /* Signed for another chain (its genesis differs). */
    tc_hash other = chain;
    other.b[0] ^= 1;
    make_cert(&other, &ck, q013, 3, &t);
    expect_err(ledger_cert_check(l, &t, rpk, N, QUORUM, &err), &err, TALLY_EBADSIG,
               "does not verify");
    /* The digest changed: signatures fail; re-signed over the wrong digest: mismatch. */
    t = c;
    t.ck.state_digest.b[3] ^= 0x20;
    expect_err(ledger_cert_check(l, &t, rpk, N, QUORUM, &err), &err, TALLY_EBADSIG,
               "does not verify");
    struct ledger_ckpt wrong_digest = t.ck;
    make_cert(&chain, &wrong_digest, q013, 3, &t);
    assert_int_equal(ledger_cert_verify(&t, &chain, rpk, N, QUORUM, &err), TALLY_OK);
    expect_err(ledger_cert_check(l, &t, rpk, N, QUORUM, &err), &err, TALLY_EMISMATCH,
               "height 4: the certified state digest");
    /* The block hash of another height, properly signed. */
    struct ledger_ckpt wrong = {4, r[5].block_hash, r[4].state_digest};
    make_cert(&chain, &wrong, q013, 3, &t);
    char hex[65], needle[120];
    tc_hex_encode(r[4].block_hash.b, TC_HASH_BYTES, hex);
    hex[16] = '\0';
    snprintf(needle, sizeof(needle), "is not the ledger's %s", hex);
    expect_err(ledger_cert_check(l, &t, rpk, N, QUORUM, &err), &err, TALLY_EMISMATCH, needle);
    assert_non_null(strstr(err.msg, "height 4: the certified block hash"));
    /* Beyond the head. */
    struct ledger_ckpt ahead = {BLOCKS + 3, r[4].block_hash, r[4].state_digest};
    make_cert(&chain, &ahead, q013, 3, &t);
    expect_err(ledger_cert_check(l, &t, rpk, N, QUORUM, &err), &err, TALLY_ENOTFOUND,
               "height 11: no such block (the ledger ends at 8)");
    ledger_close(l);
}

/* ---- audit --------------------------------------------------------------------------------- */

static char *copy_base(char *db, size_t size)
{
    char *dir = lf_tmpdir();
    tmpdir_join(db, size, dir, "db");
    assert_int_equal(lf_copydir(base_db, db), 0);
    return dir;
}

/* Put `put` under key, or (put NULL) flip the bits of mask in the byte at
 * offset of its value. */
static void raw_tamper(const char *db, const uint8_t *key, size_t klen, long offset, uint8_t mask,
                       const uint8_t *put, size_t putlen)
{
    if (put != NULL) {
        lf_raw_put(db, key, klen, put, putlen);
        return;
    }
    size_t len = 0;
    char *val = lf_raw_get(db, key, klen, &len);
    assert_non_null(val);
    assert_true((size_t)offset < len);
    val[offset] = (char)(val[offset] ^ mask);
    lf_raw_put(db, key, klen, val, len);
    free(val);
}

static void expect_audit_problem(const char *db, const struct ledger_audit_opts *o, uint64_t height,
                                 const char *needle)
{
    struct ledger_audit_report rep;
    struct tally_err err = {0};
    assert_int_equal(ledger_audit(db, o, &rep, &err), TALLY_OK);
    assert_false(rep.intact);
    print_message("found: %s\n", rep.problem);
    assert_true(rep.problem_height == height);
    if (strstr(rep.problem, needle) == NULL)
        fail_msg("'%s' does not mention '%s'", rep.problem, needle);
}

static void test_audit_certs(void **state)
{
    (void)state;
    struct ledger_audit_report rep;
    struct tally_err err = {0};
    assert_int_equal(ledger_audit(base_db, NULL, &rep, &err), TALLY_OK);
    if (!rep.intact)
        fail_msg("audit: %s", rep.problem);
    assert_int_equal(rep.certs, BLOCKS / 2);
    assert_int_equal(rep.last_cert_height, BLOCKS);
    assert_false(rep.cert_signatures_checked);
    struct ledger_audit_opts o = {.cert_keys = rpk, .cert_n = N, .cert_quorum = QUORUM};
    assert_int_equal(ledger_audit(base_db, &o, &rep, &err), TALLY_OK);
    assert_true(rep.intact);
    assert_true(rep.cert_signatures_checked);
    assert_int_equal(rep.certs, BLOCKS / 2);
    /* Keys of another cluster (replica 0 missing): the first certificate fails. */
    tc_pubkey others[N] = {outsider.pk, rpk[1], rpk[2], rpk[3]};
    struct ledger_audit_opts bad = {.cert_keys = others, .cert_n = N, .cert_quorum = QUORUM};
    expect_audit_problem(base_db, &bad, 2, "not a replica of the cluster");
    /* A quorum the certificates do not reach. */
    struct ledger_audit_opts all = {.cert_keys = rpk, .cert_n = N, .cert_quorum = 4};
    expect_audit_problem(base_db, &all, 2, "too few signatures: 3 of the 4 needed");

    /* A flipped byte of a stored certificate's block hash. */
    char db[TMPDIR_PATH_MAX];
    char *dir = copy_base(db, sizeof(db));
    uint8_t key[9];
    ledger_cert_key(4, key);
    raw_tamper(db, key, sizeof(key), 8 + 5, 0x01, NULL, 0);
    expect_audit_problem(db, NULL, 4, "block hash");
    lf_rmdir(dir);
    /* Its state digest. */
    dir = copy_base(db, sizeof(db));
    raw_tamper(db, key, sizeof(key), 40 + 31, 0x80, NULL, 0);
    expect_audit_problem(db, NULL, 4, "state digest");
    lf_rmdir(dir);
    /* A signature, seen only with the keys. */
    dir = copy_base(db, sizeof(db));
    raw_tamper(db, key, sizeof(key), 76 + 32 + 7, 0x02, NULL, 0);
    assert_int_equal(ledger_audit(db, NULL, &rep, &err), TALLY_OK);
    assert_true(rep.intact);
    expect_audit_problem(db, &o, 4, "does not verify");
    lf_rmdir(dir);
    /* Above the head, and garbage. */
    dir = copy_base(db, sizeof(db));
    struct ledger_cert c;
    sample_cert(&c, 3);
    c.ck.height = BLOCKS + 1;
    uint8_t buf[LEDGER_CERT_MAX_BYTES];
    size_t len = ledger_cert_encode(&c, buf);
    ledger_cert_key(BLOCKS + 1, key);
    raw_tamper(db, key, sizeof(key), 0, 0, buf, len);
    expect_audit_problem(db, NULL, BLOCKS + 1, "above the head");
    lf_rmdir(dir);
    dir = copy_base(db, sizeof(db));
    ledger_cert_key(3, key);
    raw_tamper(db, key, sizeof(key), 0, 0, buf, 50);
    expect_audit_problem(db, NULL, 3, "does not decode");
    lf_rmdir(dir);
}

/* ---- verify-checkpoint ------------------------------------------------------------------ */

static void test_cert_json(void **state)
{
    (void)state;
    struct ledger_cert c, d;
    struct tally_err err = {0};
    sample_cert(&c, 5);
    c.ck.height = UINT64_MAX; /* a decimal string in JSON */
    json_t *o = checkpoint_cert_to_json(&c);
    assert_non_null(o);
    assert_true(json_is_string(json_object_get(o, "height")));
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_non_null(strstr(text, "{\"type\":\"checkpoint\",\"height\":"));
    json_error_t jerr;
    json_t *back = json_loads(text, 0, &jerr);
    assert_int_equal(checkpoint_cert_from_json(back, &d, &err), TALLY_OK);
    assert_memory_equal(&c, &d, sizeof(c));
    free(text);
    json_decref(back);
    /* Broken fields are named. */
    json_object_set_new(o, "state_digest", json_string("abc"));
    expect_err(checkpoint_cert_from_json(o, &d, &err), &err, TALLY_EFORMAT, "state_digest");
    json_decref(o);
    o = checkpoint_cert_to_json(&c);
    json_object_set_new(json_array_get(json_object_get(o, "signatures"), 2), "sig",
                        json_integer(3));
    expect_err(checkpoint_cert_from_json(o, &d, &err), &err, TALLY_EFORMAT, "[2]");
    json_object_set_new(o, "signatures", json_array());
    expect_err(checkpoint_cert_from_json(o, &d, &err), &err, TALLY_EFORMAT, "signatures");
    json_object_set_new(o, "height", json_integer(-1));
    expect_err(checkpoint_cert_from_json(o, &d, &err), &err, TALLY_EFORMAT, "height");
    json_decref(o);
}

static void expect_valid(const struct checkpoint_verdict *v, uint64_t height)
{
    if (!v->valid)
        fail_msg("invalid: %s", v->problem);
    assert_int_equal(v->height, height);
    assert_int_equal(v->nsigners, 3);
    assert_int_equal(v->signers[0], 0);
    assert_int_equal(v->signers[1], 1);
    assert_int_equal(v->signers[2], 3);
    assert_int_equal(v->needed, QUORUM);
    assert_int_equal(v->replicas, N);
}

static void expect_invalid(const struct checkpoint_verdict *v, const char *needle)
{
    assert_false(v->valid);
    print_message("invalid: %s\n", v->problem);
    if (strstr(v->problem, needle) == NULL)
        fail_msg("'%s' does not mention '%s'", v->problem, needle);
}

static void test_verify_data(void **state)
{
    (void)state;
    struct checkpoint_verdict v;
    struct tally_err err = {0};
    assert_int_equal(checkpoint_verify_data(base_db, &cfg, NULL, &v, &err), TALLY_OK);
    expect_valid(&v, BLOCKS);
    uint64_t h = 4;
    assert_int_equal(checkpoint_verify_data(base_db, &cfg, &h, &v, &err), TALLY_OK);
    expect_valid(&v, 4);
    h = 5;
    expect_err(checkpoint_verify_data(base_db, &cfg, &h, &v, &err), &err, TALLY_ENOTFOUND,
               "no checkpoint certificate at height 5 (nearest certified heights: 4 and 6)");
    h = 100;
    expect_err(checkpoint_verify_data(base_db, &cfg, &h, &v, &err), &err, TALLY_ENOTFOUND,
               "nearest certified height is 8");
    h = 0;
    expect_err(checkpoint_verify_data(base_db, &cfg, &h, &v, &err), &err, TALLY_ENOTFOUND,
               "nearest certified height is 2");

    /* Another quorum: the same certificates fall short. */
    struct tally_config big = cfg;
    big.f = 2; /* quorum 5 of a (pretend) larger cluster */
    assert_int_equal(checkpoint_verify_data(base_db, &big, NULL, &v, &err), TALLY_OK);
    expect_invalid(&v, "too few signatures: 3 of the 5 needed");
    /* A configuration with another genesis. */
    struct tally_config moved = cfg;
    struct ledger_genesis_account g2[NACCT];
    memcpy(g2, gen, sizeof(g2));
    g2[0].balance++;
    moved.genesis.accounts = g2;
    assert_int_equal(checkpoint_verify_data(base_db, &moved, NULL, &v, &err), TALLY_OK);
    expect_invalid(&v, "is not the cluster's");
    /* A tampered stored certificate (block hash byte): the signatures no longer verify. */
    char db[TMPDIR_PATH_MAX];
    char *dir = copy_base(db, sizeof(db));
    uint8_t key[9];
    ledger_cert_key(6, key);
    raw_tamper(db, key, sizeof(key), 8, 0x01, NULL, 0);
    h = 6;
    assert_int_equal(checkpoint_verify_data(db, &cfg, &h, &v, &err), TALLY_OK);
    expect_invalid(&v, "does not verify");
    assert_int_equal(v.nsigners, 0);
    lf_rmdir(dir);
    /* Missing directory: an error, not a verdict. */
    assert_int_not_equal(checkpoint_verify_data("/tmp/tally-no-such-dir-xyz", &cfg, NULL, &v, &err),
                         TALLY_OK);
}

/* An export of base_db as `tally export` writes it (blocks and certificates;
 * transactions are irrelevant here and left out). */
static void write_export(const char *path, uint64_t tamper_height, const char *tamper_field)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    struct ledger *l = NULL;
    struct tally_err err = {0};
    struct ledger_open_opts ro = {.read_only = true};
    assert_int_equal(ledger_open_opts(base_db, &ro, &l, &err), TALLY_OK);
    for (uint64_t h = 0; h <= ledger_height(l); h++) {
        uint8_t *bytes = NULL;
        size_t len = 0;
        bool found = false;
        struct ledger_block b;
        assert_int_equal(ledger_get_block(l, h, &bytes, &len, &found, &err), TALLY_OK);
        assert_true(found);
        assert_int_equal(ledger_block_decode(bytes, len, &b, &err), TALLY_OK);
        tc_hash hash;
        ledger_block_header_hash(&b.h, &hash);
        if (h == tamper_height && strcmp(tamper_field, "state_digest") == 0)
            b.h.state_digest.b[0] ^= 1;
        char hx[5][65];
        tc_hex_encode(hash.b, 32, hx[0]);
        tc_hex_encode(b.h.prev_hash.b, 32, hx[1]);
        tc_hex_encode(b.h.tx_root.b, 32, hx[2]);
        tc_hex_encode(b.h.results_hash.b, 32, hx[3]);
        tc_hex_encode(b.h.state_digest.b, 32, hx[4]);
        fprintf(f,
                "{\"type\":\"block\",\"height\":%llu,\"hash\":\"%s\",\"prev_hash\":\"%s\","
                "\"tx_root\":\"%s\",\"results_hash\":\"%s\",\"state_digest\":\"%s\","
                "\"tx_count\":%u}\n",
                (unsigned long long)h, hx[0], hx[1], hx[2], hx[3], hx[4], (unsigned)b.h.tx_count);
        fprintf(f, "{\"type\":\"tx\",\"height\":%llu,\"index\":0}\n", (unsigned long long)h);
        free(bytes);
    }
    for (uint64_t from = 0;;) {
        struct ledger_cert c;
        bool found = false;
        assert_int_equal(ledger_find_cert_from(l, from, &c, &found, &err), TALLY_OK);
        if (!found)
            break;
        if (c.ck.height == tamper_height && strcmp(tamper_field, "signatures") == 0)
            c.count = 2;
        json_t *o = checkpoint_cert_to_json(&c);
        char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        fprintf(f, "%s\n", text);
        free(text);
        json_decref(o);
        from = c.ck.height + 1;
    }
    ledger_close(l);
    fclose(f);
}

static void test_verify_export(void **state)
{
    (void)state;
    char path[TMPDIR_PATH_MAX];
    tmpdir_join(path, sizeof(path), base_dir, "export.jsonl");
    struct checkpoint_verdict v;
    struct tally_err err = {0};
    write_export(path, UINT64_MAX, "");
    assert_int_equal(checkpoint_verify_export(path, &cfg, NULL, &v, &err), TALLY_OK);
    expect_valid(&v, BLOCKS);
    uint64_t h = 2;
    assert_int_equal(checkpoint_verify_export(path, &cfg, &h, &v, &err), TALLY_OK);
    expect_valid(&v, 2);
    h = 3;
    expect_err(checkpoint_verify_export(path, &cfg, &h, &v, &err), &err, TALLY_ENOTFOUND,
               "nearest certified heights: 2 and 4");

    /* The block line's state digest edited: the line no longer hashes to its hash. */
    write_export(path, 4, "state_digest");
    h = 4;
    assert_int_equal(checkpoint_verify_export(path, &cfg, &h, &v, &err), TALLY_OK);
    expect_invalid(&v, "does not hash to its \"hash\"");
    /* A signature dropped from the certificate line. */
    write_export(path, 6, "signatures");
    h = 6;
    assert_int_equal(checkpoint_verify_export(path, &cfg, &h, &v, &err), TALLY_OK);
    expect_invalid(&v, "too few signatures: 2 of the 3 needed");
    assert_int_equal(v.nsigners, 2);

    /* Not an export. */
    FILE *f = fopen(path, "w");
    fputs("{\"type\":\"tx\"}\n", f);
    fclose(f);
    assert_int_equal(checkpoint_verify_export(path, &cfg, NULL, &v, &err), TALLY_EFORMAT);
    f = fopen(path, "w");
    fputs("{\"type\":\"block\",\"height\":0,\"hash\":\"zz\"}\n", f);
    fclose(f);
    expect_err(checkpoint_verify_export(path, &cfg, NULL, &v, &err), &err, TALLY_EFORMAT,
               "\"hash\"");
    assert_int_equal(checkpoint_verify_export("/tmp/tally-no-such-file-xyz", &cfg, NULL, &v, &err),
                     TALLY_ENOTFOUND);
}

/* The built tools, when the test runner says where they are. */
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
    char cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void test_tools(void **state)
{
    (void)state;
    const char *bin = getenv("TALLY_BIN_DIR");
    if (bin == NULL || bin[0] == '\0') {
        print_message("TALLY_BIN_DIR not set: skipped\n");
        return;
    }
    char out[TMPDIR_PATH_MAX], exp[TMPDIR_PATH_MAX];
    tmpdir_join(out, sizeof(out), base_dir, "tool.out");
    tmpdir_join(exp, sizeof(exp), base_dir, "tool-export.jsonl");
    assert_int_equal(run("'%s/tally' verify-checkpoint --config '%s' --data '%s' >'%s'", bin,
                         cluster_path, base_db, out),
                     0);
    char line[1024] = {0};
    FILE *f = fopen(out, "r");
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    print_message("%s", line);
    assert_non_null(
        strstr(line, "checkpoint at height 8: OK, signed by replicas 0, 1, 3 (3 of 4, 3 needed)"));
    assert_int_equal(run("'%s/tally' verify-checkpoint --config '%s' --data '%s' --height 6 "
                         "--json >'%s'",
                         bin, cluster_path, base_db, out),
                     0);
    json_error_t jerr;
    json_t *o = json_load_file(out, 0, &jerr);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "height")), 6);
    assert_true(json_is_true(json_object_get(o, "valid")));
    assert_int_equal(json_array_size(json_object_get(o, "signers")), 3);
    assert_int_equal(json_integer_value(json_object_get(o, "needed")), 3);
    json_decref(o);
    assert_int_equal(run("'%s/tally' verify-checkpoint --config '%s' --data '%s' --height 7 "
                         "2>/dev/null",
                         bin, cluster_path, base_db),
                     1);
    assert_int_equal(run("'%s/tally' verify-checkpoint --data '%s' 2>/dev/null", bin, base_db), 2);
    assert_int_equal(run("'%s/tally' verify-checkpoint --config '%s' --data '%s' --export x "
                         "2>/dev/null",
                         bin, cluster_path, base_db),
                     2);
    assert_int_equal(run("'%s/tally' verify-checkpoint --help >/dev/null", bin), 0);

    /* tally export, then verify-checkpoint over it. */
    assert_int_equal(run("'%s/tally' export --data '%s' --out '%s'", bin, base_db, exp), 0);
    assert_int_equal(run("grep -c '\"type\":\"checkpoint\"' '%s' | grep -qx %d", exp, BLOCKS / 2),
                     0);
    assert_int_equal(run("'%s/tally' verify-checkpoint --config '%s' --export '%s' --height 4 "
                         ">'%s'",
                         bin, cluster_path, exp, out),
                     0);

    /* tally audit --config --json. */
    assert_int_equal(run("'%s/tally' audit --data '%s' --config '%s' --json >'%s' 2>/dev/null", bin,
                         base_db, cluster_path, out),
                     0);
    o = json_load_file(out, 0, &jerr);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "certificates")), BLOCKS / 2);
    assert_int_equal(json_integer_value(json_object_get(o, "last_certified_height")), BLOCKS);
    assert_true(json_is_true(json_object_get(o, "certificate_signatures_checked")));
    json_decref(o);

    /* A tampered copy: verify-checkpoint says INVALID, exit 1. */
    char db[TMPDIR_PATH_MAX];
    char *dir = copy_base(db, sizeof(db));
    uint8_t key[9];
    ledger_cert_key(8, key);
    raw_tamper(db, key, sizeof(key), 76 + 40, 0x01, NULL, 0); /* a signature byte */
    assert_int_equal(run("'%s/tally' verify-checkpoint --config '%s' --data '%s' >'%s'", bin,
                         cluster_path, db, out),
                     1);
    f = fopen(out, "r");
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    print_message("%s", line);
    assert_non_null(strstr(line, "checkpoint at height 8: INVALID: the signature of replica"));
    lf_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_statement_golden),
        cmocka_unit_test(test_encode_roundtrip),
        cmocka_unit_test(test_decode_hostile),
        cmocka_unit_test(test_sort),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_storage),
        cmocka_unit_test(test_storage_persistent),
        cmocka_unit_test(test_cert_check),
        cmocka_unit_test(test_audit_certs),
        cmocka_unit_test(test_cert_json),
        cmocka_unit_test(test_verify_data),
        cmocka_unit_test(test_verify_export),
        cmocka_unit_test(test_tools),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
