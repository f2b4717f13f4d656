/* Transaction and block codecs: round trips and hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ledger/block.h"
#include "ledger/tx.h"
#include "tests/helpers/ledger_fixture.h"

static int setup(void **state)
{
    (void)state;
    return tc_init() == TALLY_OK ? 0 : -1;
}

static void test_tx_round_trip(void **state)
{
    (void)state;
    tc_keypair a, b;
    lf_keypair(1, &a);
    lf_keypair(2, &b);
    struct ledger_tx tx = {.version = LEDGER_TX_VERSION,
                           .kind = LEDGER_TX_KIND_TRANSFER,
                           .from = a.pk,
                           .to = b.pk,
                           .amount = 0x0102030405060708ull,
                           .nonce = 42};
    ledger_tx_sign(&tx, &a);
    uint8_t bytes[LEDGER_TX_BYTES];
    ledger_tx_encode(&tx, bytes);
    assert_int_equal(bytes[0], 1);
    assert_int_equal(bytes[1], 1);
    assert_int_equal(bytes[66], 0x08); /* little-endian amount */
    assert_int_equal(bytes[73], 0x01);
    assert_int_equal(bytes[74], 42);

    struct ledger_tx back;
    assert_int_equal(ledger_tx_decode(bytes, sizeof(bytes), &back), TALLY_OK);
    assert_memory_equal(&back.from, &tx.from, sizeof(tc_pubkey));
    assert_memory_equal(&back.to, &tx.to, sizeof(tc_pubkey));
    assert_true(back.amount == tx.amount);
    assert_true(back.nonce == 42);
    assert_memory_equal(&back.sig, &tx.sig, sizeof(tc_sig));
    assert_int_equal(ledger_tx_verify(&back), TALLY_OK);

    tc_hash h1, h2;
    ledger_tx_hash(&tx, &h1);
    ledger_tx_hash_bytes(bytes, &h2);
    assert_memory_equal(&h1, &h2, sizeof(h1));

    /* Any change to the signed body breaks the signature. */
    back.amount++;
    assert_int_equal(ledger_tx_verify(&back), TALLY_EBADSIG);
    back.amount--;
    back.sig.b[0] ^= 1;
    assert_int_equal(ledger_tx_verify(&back), TALLY_EBADSIG);
    /* Signed by someone else. */
    back = tx;
    back.from = b.pk;
    assert_int_equal(ledger_tx_verify(&back), TALLY_EBADSIG);
    tc_keypair_free(&a);
    tc_keypair_free(&b);
}

static void test_tx_hostile(void **state)
{
    (void)state;
    uint8_t buf[LEDGER_TX_BYTES + 10];
    memset(buf, 0xAB, sizeof(buf));
    struct ledger_tx tx;
    assert_int_equal(ledger_tx_decode(NULL, 0, &tx), TALLY_ETRUNC);
    assert_int_equal(ledger_tx_decode(buf, 0, &tx), TALLY_ETRUNC);
    assert_int_equal(ledger_tx_decode(buf, LEDGER_TX_BYTES - 1, &tx), TALLY_ETRUNC);
    assert_int_equal(ledger_tx_decode(buf, LEDGER_TX_BYTES + 1, &tx), TALLY_ETOOBIG);
    assert_int_equal(ledger_tx_decode(buf, LEDGER_TX_BYTES, &tx), TALLY_EFORMAT); /* garbage */
    buf[0] = 1;
    buf[1] = 2; /* unknown kind */
    assert_int_equal(ledger_tx_decode(buf, LEDGER_TX_BYTES, &tx), TALLY_EFORMAT);
    buf[0] = 2; /* unknown version */
    buf[1] = 1;
    assert_int_equal(ledger_tx_decode(buf, LEDGER_TX_BYTES, &tx), TALLY_EFORMAT);
    buf[0] = 1;
    assert_int_equal(ledger_tx_decode(buf, LEDGER_TX_BYTES, &tx), TALLY_OK);
    assert_int_equal(ledger_tx_verify(&tx), TALLY_EBADSIG); /* garbage signature */

    /* Random bytes never crash the decoder. */
    srand(7);
    for (int i = 0; i < 2000; i++) {
        for (size_t j = 0; j < sizeof(buf); j++)
            buf[j] = (uint8_t)rand();
        if (i % 3 == 0)
            buf[0] = 1, buf[1] = 1;
        size_t len = (size_t)rand() % sizeof(buf);
        int rc = ledger_tx_decode(buf, len, &tx);
        assert_true(rc == TALLY_OK || rc == TALLY_ETRUNC || rc == TALLY_ETOOBIG ||
                    rc == TALLY_EFORMAT);
    }
}

static void test_result_names(void **state)
{
    (void)state;
    assert_string_equal(ledger_result_name(LEDGER_RESULT_OK), "ok");
    assert_string_equal(ledger_result_name(LEDGER_RESULT_INSUFFICIENT_FUNDS), "insufficient_funds");
    assert_string_equal(ledger_result_text(LEDGER_RESULT_INSUFFICIENT_FUNDS), "insufficient funds");
    assert_string_equal(ledger_result_name(LEDGER_RESULT_MALFORMED), "malformed");
    assert_string_equal(ledger_result_name(99), "unknown");
    assert_string_equal(ledger_result_text(-1), "unknown result");
}

static uint8_t *make_block(uint32_t count, size_t *len)
{
    tc_keypair a, b;
    lf_keypair(1, &a);
    lf_keypair(2, &b);
    size_t size = ledger_block_encoded_size(5, count);
    uint8_t *buf = calloc(1, size);
    assert_non_null(buf);
    struct ledger_block_header h = {.version = 1, .height = 5, .tx_count = count};
    memset(h.prev_hash.b, 0x11, 32);
    memset(h.state_digest.b, 0x22, 32);
    uint8_t *items = buf + LEDGER_BLOCK_HEADER_BYTES;
    for (uint32_t i = 0; i < count; i++) {
        lf_transfer(&a, &b.pk, 10 + i, i + 1, items + (size_t)i * LEDGER_TX_BYTES);
        items[(size_t)count * LEDGER_TX_BYTES + i] = (uint8_t)(i % LEDGER_RESULT_COUNT);
    }
    ledger_block_tx_root(items, LEDGER_TX_BYTES, count, &h.tx_root);
    ledger_block_results_hash(items + (size_t)count * LEDGER_TX_BYTES, count, &h.results_hash);
    ledger_block_header_encode(&h, buf);
    tc_keypair_free(&a);
    tc_keypair_free(&b);
    *len = size;
    return buf;
}

static void test_block_round_trip(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_block(3, &len);
    assert_int_equal(len, LEDGER_BLOCK_HEADER_BYTES + 3 * 147);
    struct ledger_block b;
    struct tally_err err = {0};
    assert_int_equal(ledger_block_decode(buf, len, &b, &err), TALLY_OK);
    assert_int_equal(b.h.version, 1);
    assert_true(b.h.height == 5);
    assert_int_equal(b.h.tx_count, 3);
    assert_int_equal(b.item_bytes, LEDGER_TX_BYTES);
    assert_ptr_equal(b.items, buf + LEDGER_BLOCK_HEADER_BYTES);
    assert_ptr_equal(b.results, buf + LEDGER_BLOCK_HEADER_BYTES + 3 * LEDGER_TX_BYTES);
    assert_int_equal(b.results[2], 2);
    uint8_t hdr[LEDGER_BLOCK_HEADER_BYTES];
    ledger_block_header_encode(&b.h, hdr);
    assert_memory_equal(hdr, buf, sizeof(hdr));
    tc_hash root;
    ledger_block_tx_root(b.items, b.item_bytes, 3, &root);
    assert_memory_equal(&root, &b.h.tx_root, sizeof(root));

    /* The leaf is SHA-256(0x00 || tx) and differs from the tx hash. */
    tc_hash leaf, txh;
    ledger_block_leaf(b.items, LEDGER_TX_BYTES, &leaf);
    ledger_tx_hash_bytes(b.items, &txh);
    assert_memory_not_equal(&leaf, &txh, sizeof(leaf));
    uint8_t pre[1 + LEDGER_TX_BYTES] = {0};
    memcpy(pre + 1, b.items, LEDGER_TX_BYTES);
    tc_sha256(pre, sizeof(pre), &txh);
    assert_memory_equal(&leaf, &txh, sizeof(leaf));

    /* An empty block and the genesis item size. */
    assert_int_equal(ledger_block_encoded_size(9, 0), LEDGER_BLOCK_HEADER_BYTES);
    assert_int_equal(ledger_block_encoded_size(0, 2), LEDGER_BLOCK_HEADER_BYTES + 2 * 41);
    tc_hash zero = {{0}};
    ledger_block_tx_root(NULL, LEDGER_TX_BYTES, 0, &root);
    assert_memory_equal(&root, &zero, sizeof(root));
    free(buf);
}

static void test_block_hostile(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = make_block(2, &len);
    struct ledger_block b;
    struct tally_err err = {0};
    assert_int_equal(ledger_block_decode(buf, 10, &b, &err), TALLY_ETRUNC);
    assert_int_equal(ledger_block_decode(NULL, 0, &b, &err), TALLY_ETRUNC);
    assert_int_equal(ledger_block_decode(buf, len - 1, &b, &err), TALLY_ETRUNC);
    assert_non_null(strstr(err.msg, "must be"));
    uint8_t *big = calloc(1, len + 1);
    memcpy(big, buf, len);
    assert_int_equal(ledger_block_decode(big, len + 1, &b, &err), TALLY_ETOOBIG);
    free(big);

    buf[0] = 2; /* version */
    assert_int_equal(ledger_block_decode(buf, len, &b, &err), TALLY_EFORMAT);
    assert_non_null(strstr(err.msg, "version"));
    buf[0] = 1;
    ledger_put_u32(buf + 140, LEDGER_BLOCK_MAX_TXS + 1); /* count over the limit */
    assert_int_equal(ledger_block_decode(buf, len, &b, &err), TALLY_ETOOBIG);
    ledger_put_u32(buf + 140, 0xFFFFFFFFu);
    assert_int_equal(ledger_block_decode(buf, len, &b, &err), TALLY_ETOOBIG);
    ledger_put_u32(buf + 140, 3); /* count larger than the data */
    assert_int_equal(ledger_block_decode(buf, len, &b, &err), TALLY_ETRUNC);
    ledger_put_u32(buf + 140, 1); /* smaller */
    assert_int_equal(ledger_block_decode(buf, len, &b, &err), TALLY_ETOOBIG);
    ledger_put_u32(buf + 140, 2);
    assert_int_equal(ledger_block_decode(buf, len, &b, &err), TALLY_OK);

    /* Garbage of every length up to a few blocks never crashes. */
    srand(11);
    uint8_t junk[1024];
    for (int i = 0; i < 5000; i++) {
        size_t n = (size_t)rand() % sizeof(junk);
        for (size_t j = 0; j < n; j++)
            junk[j] = (uint8_t)rand();
        if (n >= 4 && i % 2 == 0)
            ledger_put_u32(junk, 1);
        if (n >= 144 && i % 4 == 0)
            ledger_put_u32(junk + 140, (uint32_t)rand() % 8);
        int rc = ledger_block_decode(junk, n, &b, NULL);
        if (rc == TALLY_OK)
            assert_true(b.results + b.h.tx_count <= junk + n);
    }
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tx_round_trip), cmocka_unit_test(test_tx_hostile),
        cmocka_unit_test(test_result_names),  cmocka_unit_test(test_block_round_trip),
        cmocka_unit_test(test_block_hostile),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
