/* Protocol message codec (src/msg.h): round trips of every type, and hostile
 * bytes (truncation at every length, oversized counts, bad magic, type and
 * reserved byte, trailing garbage, flipped signatures). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "src/msg.h"
#include "tests/helpers/ledger_fixture.h"

#define MAX_BODY (1u << 20)

struct keys {
    tc_keypair replica, other, alice, bob;
    uint8_t txs[3 * LEDGER_TX_BYTES];
};

static int setup(void **state)
{
    if (tc_init() != TALLY_OK)
        return -1;
    struct keys *k = calloc(1, sizeof(*k));
    lf_keypair(100, &k->replica);
    lf_keypair(101, &k->other);
    lf_keypair(1, &k->alice);
    lf_keypair(2, &k->bob);
    for (int i = 0; i < 3; i++)
        lf_transfer(&k->alice, &k->bob.pk, 10 + i, 1 + i, k->txs + i * LEDGER_TX_BYTES);
    *state = k;
    return 0;
}

static int teardown(void **state)
{
    struct keys *k = *state;
    tc_keypair_free(&k->replica);
    tc_keypair_free(&k->other);
    tc_keypair_free(&k->alice);
    tc_keypair_free(&k->bob);
    free(k);
    return 0;
}

/* Decode from an exact-size heap copy so that ASan catches any over-read. */
static int decode_exact(const uint8_t *bytes, size_t len, struct msg *m)
{
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, bytes, len);
    struct tally_err err = {0};
    int rc = msg_decode(copy, len, MAX_BODY, m, &err);
    if (rc != TALLY_OK)
        assert_true(err.code == rc && err.msg[0] != 0);
    free(copy);
    return rc;
}

/* Every proper prefix fails (and never crashes); the whole decodes. */
static void check_truncations(const struct msg_buf *b)
{
    struct msg m;
    for (size_t len = 0; len < b->len; len++) {
        int rc = decode_exact(b->data, len, &m);
        assert_true(rc == TALLY_ETRUNC || rc == TALLY_EFORMAT);
    }
    assert_int_equal(decode_exact(b->data, b->len, &m), TALLY_OK);
}

static void check_signed(const struct msg_buf *b, const struct msg *m, const struct keys *k)
{
    assert_int_equal(msg_verify(m, &k->replica.pk), TALLY_OK);
    assert_int_equal(msg_verify(m, &k->other.pk), TALLY_EBADSIG);
    assert_int_equal(m->signed_len, b->len - TC_SIG_BYTES);
    assert_ptr_equal(m->signed_bytes, b->data);
}

static void test_request_round_trip(void **state)
{
    struct keys *k = *state;
    struct msg_buf b;
    msg_buf_init(&b);
    struct msg_batch txs = {.count = 3, .tx_bytes = k->txs};
    assert_int_equal(msg_encode_request(&b, &txs), TALLY_OK);
    assert_int_equal(b.len, MSG_HEADER_BYTES + 4 + 3 * LEDGER_TX_BYTES + TC_SIG_BYTES);
    assert_memory_equal(b.data, "TLY1", 4);
    struct msg m;
    struct tally_err err = {0};
    assert_int_equal(msg_decode(b.data, b.len, MAX_BODY, &m, &err), TALLY_OK);
    assert_int_equal(m.type, MSG_REQUEST);
    assert_int_equal(m.sender, MSG_SENDER_CLIENT);
    assert_int_equal(m.u.request.count, 3);
    assert_ptr_equal(m.u.request.tx_bytes, b.data + MSG_HEADER_BYTES + 4); /* zero-copy */
    assert_memory_equal(m.u.request.tx_bytes, k->txs, sizeof(k->txs));
    check_truncations(&b);
    msg_buf_free(&b);

    struct msg_batch none = {.count = 0, .tx_bytes = k->txs};
    assert_int_equal(msg_encode_request(&b, &none), TALLY_EINVAL);
    msg_buf_free(&b);
}

static void test_pre_prepare_round_trip(void **state)
{
    struct keys *k = *state;
    struct msg_signer signer = msg_signer_keypair(&k->replica);
    for (uint32_t count = 0; count <= 3; count++) {
        struct msg_buf b;
        msg_buf_init(&b);
        struct msg_batch batch = {.count = count, .tx_bytes = count ? k->txs : NULL};
        assert_int_equal(msg_encode_pre_prepare(&b, 2, 7, 0x0102030405060708ull, &batch, &signer),
                         TALLY_OK);
        struct msg m;
        assert_int_equal(decode_exact(b.data, b.len, &m), TALLY_OK);
        /* decode_exact freed its copy: decode in place for pointers. */
        struct tally_err err = {0};
        assert_int_equal(msg_decode(b.data, b.len, MAX_BODY, &m, &err), TALLY_OK);
        assert_int_equal(m.type, MSG_PRE_PREPARE);
        assert_int_equal(m.sender, 2);
        assert_true(m.u.pre_prepare.view == 7);
        assert_true(m.u.pre_prepare.seq == 0x0102030405060708ull);
        assert_int_equal(m.u.pre_prepare.batch.count, count);
        tc_hash d;
        msg_batch_digest(&batch, &d);
        assert_memory_equal(d.b, m.u.pre_prepare.digest.b, TC_HASH_BYTES);
        check_signed(&b, &m, k);
        check_truncations(&b);
        msg_buf_free(&b);
    }
    /* The digest is over tag || count || txs: order matters. */
    uint8_t swapped[2 * LEDGER_TX_BYTES];
    memcpy(swapped, k->txs + LEDGER_TX_BYTES, LEDGER_TX_BYTES);
    memcpy(swapped + LEDGER_TX_BYTES, k->txs, LEDGER_TX_BYTES);
    struct msg_batch a = {.count = 2, .tx_bytes = k->txs}, s = {.count = 2, .tx_bytes = swapped};
    tc_hash da, ds;
    msg_batch_digest(&a, &da);
    msg_batch_digest(&s, &ds);
    assert_memory_not_equal(da.b, ds.b, TC_HASH_BYTES);
}

static void test_phase_round_trip(void **state)
{
    struct keys *k = *state;
    struct msg_signer signer = msg_signer_keypair(&k->replica);
    enum msg_type types[2] = {MSG_PREPARE, MSG_COMMIT};
    for (int i = 0; i < 2; i++) {
        struct msg_buf b;
        msg_buf_init(&b);
        tc_hash d;
        memset(d.b, 0xA0 + i, sizeof(d.b));
        assert_int_equal(msg_encode_phase(&b, types[i], 3, 9, 42, &d, &signer), TALLY_OK);
        assert_int_equal(b.len, MSG_HEADER_BYTES + 48 + TC_SIG_BYTES);
        struct msg m;
        struct tally_err err = {0};
        assert_int_equal(msg_decode(b.data, b.len, MAX_BODY, &m, &err), TALLY_OK);
        assert_int_equal(m.type, types[i]);
        assert_int_equal(m.sender, 3);
        assert_true(m.u.phase.view == 9 && m.u.phase.seq == 42);
        assert_memory_equal(m.u.phase.digest.b, d.b, TC_HASH_BYTES);
        check_signed(&b, &m, k);
        check_truncations(&b);
        msg_buf_free(&b);
    }
    struct msg_buf b;
    msg_buf_init(&b);
    tc_hash d = {{0}};
    assert_int_equal(msg_encode_phase(&b, MSG_REPLY, 3, 9, 42, &d, &signer), TALLY_EINVAL);
    msg_buf_free(&b);
}

static void test_reply_round_trip(void **state)
{
    struct keys *k = *state;
    struct msg_signer signer = msg_signer_keypair(&k->replica);
    struct msg_reply_entry e[2];
    memset(e, 0, sizeof(e));
    memset(e[0].tx_hash.b, 0x11, TC_HASH_BYTES);
    e[0].result = LEDGER_RESULT_OK;
    memset(e[1].tx_hash.b, 0x22, TC_HASH_BYTES);
    e[1].result = LEDGER_RESULT_BAD_NONCE;
    tc_hash block;
    memset(block.b, 0x33, TC_HASH_BYTES);
    struct msg_buf b;
    msg_buf_init(&b);
    assert_int_equal(msg_encode_reply(&b, 1, 4, 77, &block, e, 2, &signer), TALLY_OK);
    struct msg m;
    struct tally_err err = {0};
    assert_int_equal(msg_decode(b.data, b.len, MAX_BODY, &m, &err), TALLY_OK);
    assert_int_equal(m.type, MSG_REPLY);
    assert_true(m.u.reply.view == 4 && m.u.reply.height == 77);
    assert_memory_equal(m.u.reply.block_hash.b, block.b, TC_HASH_BYTES);
    assert_int_equal(m.u.reply.count, 2);
    for (uint32_t i = 0; i < 2; i++) {
        struct msg_reply_entry got;
        msg_reply_entry_get(&m, i, &got);
        assert_memory_equal(got.tx_hash.b, e[i].tx_hash.b, TC_HASH_BYTES);
        assert_int_equal(got.result, e[i].result);
    }
    struct msg_reply_entry past;
    msg_reply_entry_get(&m, 2, &past); /* out of range: zeroed, no read */
    assert_int_equal(past.result, 0);
    check_signed(&b, &m, k);
    check_truncations(&b);
    msg_buf_free(&b);
}

static void test_query_and_status_round_trip(void **state)
{
    struct keys *k = *state;
    struct msg_signer signer = msg_signer_keypair(&k->replica);
    uint8_t key[32];
    memset(key, 0x5A, sizeof(key));
    struct msg m;
    struct tally_err err = {0};

    struct msg_buf b;
    msg_buf_init(&b);
    assert_int_equal(msg_encode_query(&b, MSG_QUERY_TX, 99, key), TALLY_OK);
    assert_int_equal(msg_decode(b.data, b.len, MAX_BODY, &m, &err), TALLY_OK);
    assert_int_equal(m.type, MSG_QUERY);
    assert_int_equal(m.u.query.kind, MSG_QUERY_TX);
    assert_true(m.u.query.request_id == 99);
    assert_memory_equal(m.u.query.key, key, 32);
    check_truncations(&b);

    msg_buf_reset(&b);
    assert_int_equal(
        msg_encode_query_reply(&b, 2, MSG_QUERY_BALANCE, 99, key, 1, 10, 500, 3, 0, &signer),
        TALLY_OK);
    assert_int_equal(msg_decode(b.data, b.len, MAX_BODY, &m, &err), TALLY_OK);
    assert_int_equal(m.type, MSG_QUERY_REPLY);
    assert_int_equal(m.u.query_reply.found, 1);
    assert_true(m.u.query_reply.height == 10 && m.u.query_reply.a == 500 && m.u.query_reply.b == 3);
    check_signed(&b, &m, k);
    check_truncations(&b);

    msg_buf_reset(&b);
    assert_int_equal(msg_encode_status_req(&b), TALLY_OK);
    assert_int_equal(b.len, MSG_HEADER_BYTES + TC_SIG_BYTES);
    assert_int_equal(msg_decode(b.data, b.len, MAX_BODY, &m, &err), TALLY_OK);
    assert_int_equal(m.type, MSG_STATUS_REQ);
    check_truncations(&b);

    msg_buf_reset(&b);
    const char *json = "{\"view\":0}";
    assert_int_equal(msg_encode_status_reply(&b, 1, json, strlen(json), &signer), TALLY_OK);
    assert_int_equal(msg_decode(b.data, b.len, MAX_BODY, &m, &err), TALLY_OK);
    assert_int_equal(m.type, MSG_STATUS_REPLY);
    assert_int_equal(m.u.status.len, strlen(json));
    assert_memory_equal(m.u.status.json, json, strlen(json));
    check_signed(&b, &m, k);
    check_truncations(&b);

    msg_buf_reset(&b);
    assert_int_equal(msg_encode_status_active(&b, 3, 2, 1234, 7, 0, 1, &signer), TALLY_OK);
    assert_int_equal(msg_decode(b.data, b.len, MAX_BODY, &m, &err), TALLY_OK);
    assert_int_equal(m.type, MSG_STATUS_ACTIVE);
    assert_true(m.u.status_active.view == 2 && m.u.status_active.last_executed == 1234);
    check_signed(&b, &m, k);
    check_truncations(&b);
    msg_buf_free(&b);
}

static void test_encoders_append(void **state)
{
    struct keys *k = *state;
    struct msg_signer signer = msg_signer_keypair(&k->replica);
    struct msg_buf b;
    msg_buf_init(&b);
    tc_hash d = {{1}};
    assert_int_equal(msg_encode_phase(&b, MSG_PREPARE, 1, 0, 1, &d, &signer), TALLY_OK);
    size_t one = b.len;
    assert_int_equal(msg_encode_phase(&b, MSG_COMMIT, 1, 0, 1, &d, &signer), TALLY_OK);
    assert_int_equal(b.len, 2 * one);
    struct msg m;
    struct tally_err err = {0};
    assert_int_equal(msg_decode(b.data + one, one, MAX_BODY, &m, &err), TALLY_OK);
    assert_int_equal(m.type, MSG_COMMIT);
    assert_int_equal(msg_verify(&m, &k->replica.pk), TALLY_OK);
    /* Both together are one message with trailing bytes. */
    assert_int_equal(msg_decode(b.data, b.len, MAX_BODY, &m, &err), TALLY_EFORMAT);
    msg_buf_free(&b);
}

/* --- hostile input ----------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void encode_prepare(const struct keys *k, struct msg_buf *b)
{
    struct msg_signer signer = msg_signer_keypair(&k->replica);
    tc_hash d;
    memset(d.b, 7, sizeof(d.b));
    msg_buf_init(b);
    assert_int_equal(msg_encode_phase(b, MSG_PREPARE, 1, 0, 5, &d, &signer), TALLY_OK);
}

static void test_bad_header(void **state)
{
    struct keys *k = *state;
    struct msg_buf b;
    encode_prepare(k, &b);
    struct msg m;

    b.data[0] = 'X'; /* magic */
    assert_int_equal(decode_exact(b.data, b.len, &m), TALLY_EFORMAT);
    b.data[0] = 'T';

    uint8_t types[] = {0, MSG_TYPE_MAX, 200, 255};
    for (size_t i = 0; i < sizeof(types); i++) {
        b.data[4] = types[i];
        assert_int_equal(decode_exact(b.data, b.len, &m), TALLY_EFORMAT);
    }
    b.data[4] = MSG_PREPARE;

    b.data[5] = 1; /* reserved */
    assert_int_equal(decode_exact(b.data, b.len, &m), TALLY_EFORMAT);
    b.data[5] = 0;

    b.data[6] = 0xFF; /* a replica message from the client id */
    b.data[7] = 0xFF;
    assert_int_equal(decode_exact(b.data, b.len, &m), TALLY_EFORMAT);
    b.data[6] = 1;
    b.data[7] = 0;

    put32(b.data + 8, 0xFFFFFFFFu); /* body length over max_body */
    assert_int_equal(decode_exact(b.data, b.len, &m), TALLY_ETOOBIG);
    put32(b.data + 8, 48);
    struct tally_err err = {0};
    assert_int_equal(msg_decode(b.data, b.len, 47, &m, &err), TALLY_ETOOBIG);
    assert_int_equal(decode_exact(b.data, b.len, &m), TALLY_OK);
    msg_buf_free(&b);
}

static void test_trailing_garbage(void **state)
{
    struct keys *k = *state;
    struct msg_buf b;
    encode_prepare(k, &b);
    struct msg m;
    /* After the signature. */
    uint8_t *longer = calloc(1, b.len + 1);
    memcpy(longer, b.data, b.len);
    assert_int_equal(decode_exact(longer, b.len + 1, &m), TALLY_EFORMAT);
    /* Inside the body: the body is one byte longer than PREPARE's. */
    memcpy(longer, b.data, MSG_HEADER_BYTES + 48);
    longer[MSG_HEADER_BYTES + 48] = 0;
    memcpy(longer + MSG_HEADER_BYTES + 49, b.data + MSG_HEADER_BYTES + 48, TC_SIG_BYTES);
    put32(longer + 8, 49);
    assert_int_equal(decode_exact(longer, b.len + 1, &m), TALLY_EFORMAT);
    free(longer);
    msg_buf_free(&b);
}

/* A hand-built envelope: header, body, zero signature. */
static size_t build(uint8_t *out, uint8_t type, uint16_t sender, const uint8_t *body,
                    uint32_t body_len)
{
    memcpy(out, "TLY1", 4);
    out[4] = type;
    out[5] = 0;
    out[6] = (uint8_t)sender;
    out[7] = (uint8_t)(sender >> 8);
    put32(out + 8, body_len);
    memcpy(out + MSG_HEADER_BYTES, body, body_len);
    memset(out + MSG_HEADER_BYTES + body_len, 0, TC_SIG_BYTES);
    return MSG_HEADER_BYTES + body_len + TC_SIG_BYTES;
}

static void test_counts(void **state)
{
    (void)state;
    uint8_t body[128] = {0}, env[256];
    struct msg m;

    /* REQUEST: count above MSG_MAX_BATCH, count 0, count not covered by bytes. */
    put32(body, MSG_MAX_BATCH + 1);
    assert_int_equal(decode_exact(env, build(env, MSG_REQUEST, 0xFFFF, body, 4), &m),
                     TALLY_ETOOBIG);
    put32(body, 0xFFFFFFFFu);
    assert_int_equal(decode_exact(env, build(env, MSG_REQUEST, 0xFFFF, body, 4), &m),
                     TALLY_ETOOBIG);
    put32(body, 0);
    assert_int_equal(decode_exact(env, build(env, MSG_REQUEST, 0xFFFF, body, 4), &m),
                     TALLY_EFORMAT);
    put32(body, 2);
    assert_int_equal(decode_exact(env, build(env, MSG_REQUEST, 0xFFFF, body, 4), &m), TALLY_ETRUNC);

    /* PRE-PREPARE: view, seq, count = huge. */
    memset(body, 0, sizeof(body));
    put32(body + 16, 0x80000000u);
    assert_int_equal(decode_exact(env, build(env, MSG_PRE_PREPARE, 0, body, 20), &m),
                     TALLY_ETOOBIG);
    put32(body + 16, 0);
    assert_int_equal(decode_exact(env, build(env, MSG_PRE_PREPARE, 0, body, 20), &m), TALLY_OK);
    assert_int_equal(m.u.pre_prepare.batch.count, 0);

    /* REPLY: count 0 and count too big. */
    memset(body, 0, sizeof(body));
    assert_int_equal(decode_exact(env, build(env, MSG_REPLY, 0, body, 52), &m), TALLY_EFORMAT);
    put32(body + 48, MSG_MAX_BATCH + 1);
    assert_int_equal(decode_exact(env, build(env, MSG_REPLY, 0, body, 52), &m), TALLY_ETOOBIG);

    /* STATUS-REPLY: JSON length over the limit, and longer than the body. */
    put32(body, MSG_MAX_STATUS_JSON + 1);
    assert_int_equal(decode_exact(env, build(env, MSG_STATUS_REPLY, 0, body, 4), &m),
                     TALLY_ETOOBIG);
    put32(body, 10);
    assert_int_equal(decode_exact(env, build(env, MSG_STATUS_REPLY, 0, body, 8), &m), TALLY_ETRUNC);

    /* QUERY: unknown kind; QUERY-REPLY: found flag not 0/1. */
    memset(body, 0, sizeof(body));
    body[0] = 3;
    assert_int_equal(decode_exact(env, build(env, MSG_QUERY, 0xFFFF, body, 41), &m), TALLY_EFORMAT);
    body[0] = 1;
    body[41] = 2;
    assert_int_equal(decode_exact(env, build(env, MSG_QUERY_REPLY, 0, body, 67), &m),
                     TALLY_EFORMAT);
    body[41] = 1;
    assert_int_equal(decode_exact(env, build(env, MSG_QUERY_REPLY, 0, body, 67), &m), TALLY_OK);

    /* A client message must carry a zero signature and the client sender. */
    size_t len = build(env, MSG_STATUS_REQ, 0xFFFF, body, 0);
    assert_int_equal(decode_exact(env, len, &m), TALLY_OK);
    env[len - 1] = 1;
    assert_int_equal(decode_exact(env, len, &m), TALLY_EFORMAT);
    assert_int_equal(decode_exact(env, build(env, MSG_STATUS_REQ, 0, body, 0), &m), TALLY_EFORMAT);
}

static void test_signature_flips(void **state)
{
    struct keys *k = *state;
    struct msg_signer signer = msg_signer_keypair(&k->replica);
    struct msg_buf b;
    msg_buf_init(&b);
    struct msg_batch batch = {.count = 1, .tx_bytes = k->txs};
    assert_int_equal(msg_encode_pre_prepare(&b, 0, 0, 1, &batch, &signer), TALLY_OK);
    struct msg m;
    struct tally_err err = {0};
    /* Flip one bit at a time in every position but the reserved/type/magic
     * bytes (those fail decoding): a decoded message must fail to verify. */
    for (size_t i = 0; i < b.len; i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            b.data[i] ^= (uint8_t)(1u << bit);
            if (msg_decode(b.data, b.len, MAX_BODY, &m, &err) == TALLY_OK)
                assert_int_equal(msg_verify(&m, &k->replica.pk), TALLY_EBADSIG);
            b.data[i] ^= (uint8_t)(1u << bit);
        }
    }
    assert_int_equal(msg_decode(b.data, b.len, MAX_BODY, &m, &err), TALLY_OK);
    assert_int_equal(msg_verify(&m, &k->replica.pk), TALLY_OK);
    msg_buf_free(&b);
}

/* Random bytes and random mutations of valid messages never crash. */
static void test_garbage_never_crashes(void **state)
{
    struct keys *k = *state;
    uint64_t x = 0x1234567887654321ull;
    struct msg_buf b;
    encode_prepare(k, &b);
    struct msg m;
    for (int round = 0; round < 20000; round++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint8_t *copy = malloc(b.len);
        memcpy(copy, b.data, b.len);
        copy[x % b.len] ^= (uint8_t)(x >> 32);
        copy[(x >> 16) % b.len] ^= (uint8_t)(x >> 40);
        size_t len = (x >> 8) % 4 == 0 ? (x >> 24) % (b.len + 1) : b.len;
        (void)decode_exact(copy, len, &m);
        free(copy);
    }
    msg_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_round_trip),
        cmocka_unit_test(test_pre_prepare_round_trip),
        cmocka_unit_test(test_phase_round_trip),
        cmocka_unit_test(test_reply_round_trip),
        cmocka_unit_test(test_query_and_status_round_trip),
        cmocka_unit_test(test_encoders_append),
        cmocka_unit_test(test_bad_header),
        cmocka_unit_test(test_trailing_garbage),
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_signature_flips),
        cmocka_unit_test(test_garbage_never_crashes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
