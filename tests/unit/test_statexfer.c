/* State chunks (src/statexfer.h): a lagging ledger verifies a chunk served
 * from a longer one before applying anything; every forgery a lying peer
 * could try is rejected with a reason; hostile bytes never crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ledger/block.h"
#include "ledger/cert.h"
#include "ledger/ledger.h"
#include "src/statexfer.h"
#include "tests/helpers/ledger_fixture.h"

#define NREP 4
#define NACCT 3
#define HEIGHT 12 /* the long ledger; the short one stops at SHORT */
#define SHORT 4

static tc_keypair reps[NREP], accts[NACCT];
static tc_pubkey rep_keys[NREP];
static struct ledger *longer, *shorter;
static tc_hash chain_id;

static struct ledger *open_mem(const char *name)
{
    struct ledger_open_opts o = {.in_memory = true, .sync = false};
    struct ledger *l = NULL;
    struct tally_err err = {0};
    if (ledger_open_opts(name, &o, &l, &err) != TALLY_OK)
        fail_msg("open: %s", tally_err_text(&err));
    struct ledger_genesis_account g[NACCT];
    for (int i = 0; i < NACCT; i++) {
        g[i].pk = accts[i].pk;
        g[i].balance = 1000;
    }
    if (ledger_init_genesis(l, g, NACCT, &err) != TALLY_OK)
        fail_msg("genesis: %s", tally_err_text(&err));
    return l;
}

/* Block h: account (h % 3) pays the next one h, with nonce ceil(h / 3). */
static void apply_block(struct ledger *l, uint64_t h)
{
    uint8_t tx[2][LEDGER_TX_BYTES];
    int from = (int)(h % NACCT), to = (from + 1) % NACCT;
    uint64_t nonce = (h + NACCT - 1 - (uint64_t)from) / NACCT * 2 - 1;
    lf_transfer(&accts[from], &accts[to].pk, h, nonce, tx[0]);
    lf_transfer(&accts[from], &accts[to].pk, 1, nonce + 1, tx[1]);
    struct tally_err err = {0};
    if (ledger_apply_block(l, h, tx[0], 2, NULL, &err) != TALLY_OK)
        fail_msg("apply %llu: %s", (unsigned long long)h, tally_err_text(&err));
}

static void cert_for(struct ledger *l, uint64_t height, uint32_t signers, struct ledger_cert *c)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    bool found = false;
    struct tally_err err = {0};
    assert_int_equal(ledger_get_block(l, height, &bytes, &len, &found, &err), TALLY_OK);
    assert_true(found);
    struct ledger_block_header h;
    assert_int_equal(ledger_block_header_decode(bytes, len, &h), TALLY_OK);
    free(bytes);
    memset(c, 0, sizeof(*c));
    c->ck.height = height;
    ledger_block_header_hash(&h, &c->ck.block_hash);
    c->ck.state_digest = h.state_digest;
    for (uint32_t i = 0; i < NREP; i++) {
        if (!(signers & (1u << i)))
            continue;
        c->sigs[c->count].signer = rep_keys[i];
        ledger_ckpt_sign(&reps[i], &chain_id, &c->ck, &c->sigs[c->count].sig);
        c->count++;
    }
    ledger_cert_sort(c);
}

/* What a serving replica sends: blocks from..from+nblocks-1 complete, the
 * rest up to the certificate's height as headers. */
static void serve(struct ledger *l, const struct ledger_cert *c, uint64_t from, uint32_t nblocks,
                  struct stx_writer *w)
{
    assert_int_equal(stx_writer_begin(w, 1u << 20, c, from), TALLY_OK);
    for (uint64_t h = from; h <= c->ck.height; h++) {
        uint8_t *bytes = NULL;
        size_t len = 0;
        bool found = false;
        struct tally_err err = {0};
        assert_int_equal(ledger_get_block(l, h, &bytes, &len, &found, &err), TALLY_OK);
        if (h < from + nblocks)
            assert_int_equal(stx_writer_add_block(w, bytes, len), TALLY_OK);
        else
            assert_int_equal(stx_writer_add_header(w, bytes), TALLY_OK);
        free(bytes);
    }
    stx_writer_finish(w);
}

static int check(const uint8_t *buf, size_t len, struct tally_err *err)
{
    struct stx_chunk c;
    int rc = stx_decode(buf, len, &c, err);
    if (rc != TALLY_OK)
        return rc;
    tc_hash head;
    ledger_head_hash(shorter, &head);
    return stx_verify(&c, &chain_id, rep_keys, NREP, 3, ledger_height(shorter), &head, err);
}

static int setup(void **state)
{
    (void)state;
    if (tc_init() != TALLY_OK)
        return -1;
    for (uint32_t i = 0; i < NREP; i++) {
        lf_keypair(200 + i, &reps[i]);
        rep_keys[i] = reps[i].pk;
    }
    for (uint32_t i = 0; i < NACCT; i++)
        lf_keypair(300 + i, &accts[i]);
    longer = open_mem("/mem/long");
    shorter = open_mem("/mem/short");
    for (uint64_t h = 1; h <= HEIGHT; h++)
        apply_block(longer, h);
    for (uint64_t h = 1; h <= SHORT; h++)
        apply_block(shorter, h);
    ledger_genesis_hash(longer, &chain_id);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ledger_close(longer);
    ledger_close(shorter);
    for (uint32_t i = 0; i < NREP; i++)
        tc_keypair_free(&reps[i]);
    for (uint32_t i = 0; i < NACCT; i++)
        tc_keypair_free(&accts[i]);
    return 0;
}

/* A good chunk verifies; its complete blocks re-execute to the same hashes. */
static void test_valid_chunk_applies(void **state)
{
    (void)state;
    struct ledger_cert c;
    cert_for(longer, 8, 0x7, &c);
    struct stx_writer w;
    serve(longer, &c, SHORT + 1, 2, &w); /* blocks 5, 6; headers 7, 8 */
    struct tally_err err = {0};
    assert_int_equal(check(w.buf, w.len, &err), TALLY_OK);
    struct stx_chunk ch;
    assert_int_equal(stx_decode(w.buf, w.len, &ch, &err), TALLY_OK);
    assert_int_equal(ch.nblocks, 2);
    assert_int_equal(ch.nheaders, 2);
    /* Apply the complete blocks to another copy of the short ledger: each
     * re-executes to exactly the served block. */
    struct ledger *l = open_mem("/mem/short2");
    for (uint64_t h = 1; h <= SHORT; h++)
        apply_block(l, h);
    for (uint32_t i = 0; i < ch.nblocks; i++) {
        struct ledger_block b;
        assert_int_equal(stx_block(&ch, i, &b, &err), TALLY_OK);
        struct ledger_block_result res;
        assert_int_equal(ledger_apply_block(l, b.h.height, b.items, b.h.tx_count, &res, &err),
                         TALLY_OK);
        tc_hash want;
        ledger_block_header_hash(&b.h, &want);
        assert_memory_equal(want.b, res.block_hash.b, TC_HASH_BYTES);
    }
    assert_int_equal(ledger_height(l), SHORT + 2);
    ledger_close(l);
    stx_writer_free(&w);

    /* All complete, straight to the certificate. */
    serve(longer, &c, SHORT + 1, 4, &w);
    assert_int_equal(check(w.buf, w.len, &err), TALLY_OK);
    stx_writer_free(&w);
}

static void test_forgeries_rejected(void **state)
{
    (void)state;
    struct tally_err err = {0};
    struct ledger_cert c;
    struct stx_writer w;

    /* Too few signatures. */
    cert_for(longer, 8, 0x3, &c);
    serve(longer, &c, SHORT + 1, 4, &w);
    assert_int_equal(check(w.buf, w.len, &err), TALLY_EBADSIG);
    assert_non_null(strstr(tally_err_text(&err), "too few"));
    stx_writer_free(&w);

    /* A valid certificate of another state (the liar signs with 3 keys it
     * should not have, say): the chain does not lead to it. */
    cert_for(longer, 8, 0x7, &c);
    c.ck.block_hash.b[0] ^= 1;
    for (uint32_t i = 0; i < c.count; i++)
        for (uint32_t k = 0; k < NREP; k++)
            if (memcmp(c.sigs[i].signer.b, rep_keys[k].b, TC_PUBKEY_BYTES) == 0)
                ledger_ckpt_sign(&reps[k], &chain_id, &c.ck, &c.sigs[i].sig);
    serve(longer, &c, SHORT + 1, 4, &w);
    assert_int_equal(check(w.buf, w.len, &err), TALLY_EMISMATCH);
    assert_non_null(strstr(tally_err_text(&err), "not the certified one"));
    stx_writer_free(&w);

    /* A changed transaction in a complete block. */
    cert_for(longer, 8, 0xE, &c);
    serve(longer, &c, SHORT + 1, 4, &w);
    struct stx_chunk ch;
    assert_int_equal(stx_decode(w.buf, w.len, &ch, &err), TALLY_OK);
    uint8_t *first_tx = (uint8_t *)ch.blocks + 4 + LEDGER_BLOCK_HEADER_BYTES;
    first_tx[100] ^= 0x01;
    assert_int_equal(check(w.buf, w.len, &err), TALLY_EMISMATCH);
    assert_non_null(strstr(tally_err_text(&err), "does not match its header"));
    stx_writer_free(&w);

    /* A chunk for someone else's head (starts after a block we do not have). */
    serve(longer, &c, SHORT + 2, 3, &w);
    assert_int_not_equal(check(w.buf, w.len, &err), TALLY_OK);
    stx_writer_free(&w);

    /* A chunk that skips the link: blocks from the right height but another
     * chain (served by a replica whose short ledger diverged) cannot exist
     * without breaking a hash; simulate by corrupting a header's prev_hash. */
    serve(longer, &c, SHORT + 1, 1, &w);
    assert_int_equal(stx_decode(w.buf, w.len, &ch, &err), TALLY_OK);
    uint8_t *hdr = (uint8_t *)ch.headers;
    hdr[12] ^= 0x80; /* prev_hash of block 6 */
    assert_int_equal(check(w.buf, w.len, &err), TALLY_EMISMATCH);
    assert_non_null(strstr(tally_err_text(&err), "does not link"));
    stx_writer_free(&w);
}

/* Every prefix of a valid chunk, and every single-byte change of its
 * structure, is refused or verified: never a crash. */
static void test_hostile_bytes(void **state)
{
    (void)state;
    struct ledger_cert c;
    cert_for(longer, 8, 0xB, &c);
    struct stx_writer w;
    serve(longer, &c, SHORT + 1, 2, &w);
    struct tally_err err = {0};
    for (size_t len = 0; len < w.len; len++)
        assert_int_not_equal(check(w.buf, len, &err), TALLY_OK);
    uint8_t *copy = malloc(w.len + 1);
    assert_non_null(copy);
    memcpy(copy, w.buf, w.len);
    copy[w.len] = 0;
    assert_int_not_equal(check(copy, w.len + 1, &err), TALLY_OK); /* trailing byte */
    for (size_t i = 0; i < w.len; i += 7) {
        memcpy(copy, w.buf, w.len);
        copy[i] ^= 0xFF;
        (void)check(copy, w.len, &err);
    }
    free(copy);
    stx_writer_free(&w);
    assert_int_not_equal(check(NULL, 0, &err), TALLY_OK);
}

/* A writer with a byte budget refuses what does not fit. */
static void test_writer_budget(void **state)
{
    (void)state;
    struct ledger_cert c;
    cert_for(longer, 8, 0x7, &c);
    struct stx_writer w;
    assert_int_equal(stx_writer_begin(&w, 600, &c, SHORT + 1), TALLY_OK);
    uint8_t *bytes = NULL;
    size_t len = 0;
    bool found = false;
    struct tally_err err = {0};
    assert_int_equal(ledger_get_block(longer, SHORT + 1, &bytes, &len, &found, &err), TALLY_OK);
    assert_int_equal(stx_writer_add_block(&w, bytes, len), TALLY_ETOOBIG);
    free(bytes);
    stx_writer_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_chunk_applies),
        cmocka_unit_test(test_forgeries_rejected),
        cmocka_unit_test(test_hostile_bytes),
        cmocka_unit_test(test_writer_budget),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
