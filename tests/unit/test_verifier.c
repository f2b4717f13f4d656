/* Verifier: the transaction verdict cache (verifier_tx_sig_ok), and settled
 * PREPAREs and COMMITs dropped before their signatures are checked. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ledger/tx.h"
#include "src/verifier.h"
#include "tests/helpers/ledger_fixture.h"

#define NTX 600

struct fixture {
    struct verifier *v;
    uint8_t (*txs)[LEDGER_TX_BYTES];
    tc_hash *hashes;
};

static int drop_event(void *ctx, struct verifier_event *ev)
{
    (void)ctx;
    (void)ev;
    return -1; /* nothing is delivered in these tests */
}

static int setup(void **state)
{
    if (tc_init() != TALLY_OK)
        return -1;
    struct fixture *f = calloc(1, sizeof(*f));
    f->txs = calloc(NTX, sizeof(*f->txs));
    f->hashes = calloc(NTX, sizeof(*f->hashes));
    struct verifier_opts o = {.n = 4, .max_message_bytes = 1 << 20, .deliver = drop_event};
    struct tally_err err = {0};
    if (f->txs == NULL || f->hashes == NULL || verifier_start(&o, &f->v, &err) != TALLY_OK)
        return -1;
    tc_keypair a, b;
    lf_keypair(1, &a);
    lf_keypair(2, &b);
    for (uint32_t i = 0; i < NTX; i++) {
        struct ledger_tx tx = {.version = LEDGER_TX_VERSION,
                               .kind = LEDGER_TX_KIND_TRANSFER,
                               .from = a.pk,
                               .to = b.pk,
                               .amount = 1,
                               .nonce = i + 1};
        ledger_tx_sign(&tx, &a);
        if (i % 7 == 3)
            tx.sig.b[5] ^= 1; /* every seventh one forged */
        ledger_tx_encode(&tx, f->txs[i]);
        ledger_tx_hash_bytes(f->txs[i], &f->hashes[i]);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    verifier_stop(f->v);
    free(f->txs);
    free(f->hashes);
    free(f);
    return 0;
}

static void test_verdicts_are_remembered(void **state)
{
    struct fixture *f = *state;
    for (int round = 0; round < 2; round++)
        for (uint32_t i = 0; i < NTX; i++)
            assert_int_equal(verifier_tx_sig_ok(f->v, f->txs[i], &f->hashes[i]), i % 7 != 3);
    struct verifier_stats st;
    verifier_get_stats(f->v, &st);
    assert_int_equal(st.tx_verified, NTX);
    assert_int_equal(st.tx_cache_hits, NTX);
    assert_int_equal(st.tx_bad_signature, (NTX + 3) / 7);
}

/* Transactions whose keys share a cache set (the caller's hash picks the
 * set, bytes 8..15): the second does not push the first out, so the
 * PRE-PREPARE's and the execution's lookups of a tx still find its verdict
 * when another tx landed in its set meanwhile. A third evicts the older. */
static void test_colliding_verdicts_are_kept(void **state)
{
    struct fixture *f = *state;
    tc_hash h[3];
    for (int i = 0; i < 3; i++) {
        memset(h[i].b, 0x5a, sizeof(h[i].b));
        h[i].b[0] = (uint8_t)i; /* same set, different keys */
    }
    struct verifier_stats st;
    assert_int_equal(verifier_tx_sig_ok(f->v, f->txs[0], &h[0]), 1);
    assert_int_equal(verifier_tx_sig_ok(f->v, f->txs[1], &h[1]), 1);
    assert_int_equal(verifier_tx_sig_ok(f->v, f->txs[0], &h[0]), 1);
    verifier_get_stats(f->v, &st);
    assert_int_equal(st.tx_verified, 2);
    assert_int_equal(st.tx_cache_hits, 1);
    assert_int_equal(verifier_tx_sig_ok(f->v, f->txs[2], &h[2]), 1); /* evicts h[0] */
    assert_int_equal(verifier_tx_sig_ok(f->v, f->txs[1], &h[1]), 1);
    verifier_get_stats(f->v, &st);
    assert_int_equal(st.tx_verified, 3);
    assert_int_equal(st.tx_cache_hits, 2);
    assert_int_equal(verifier_tx_sig_ok(f->v, f->txs[0], &h[0]), 1);
    verifier_get_stats(f->v, &st);
    assert_int_equal(st.tx_verified, 4);
}

struct worker {
    struct fixture *f;
    int wrong;
};

static void *check_all(void *arg)
{
    struct worker *w = arg;
    for (uint32_t i = 0; i < NTX; i++)
        if (verifier_tx_sig_ok(w->f->v, w->f->txs[i], &w->f->hashes[i]) != (i % 7 != 3))
            w->wrong++;
    return NULL;
}

/* Two threads on the same transactions in the same order (a backup's client
 * thread on the REQUESTs and its peer thread on the PRE-PREPARE): each gets
 * every verdict right, and a transaction one thread is verifying is waited
 * for by the other, not verified again. Without that they go in lockstep and
 * verify up to 2 x NTX; the bound leaves room for a few 2 ms waits that run
 * out on a loaded machine. */
static void test_two_threads_share_the_work(void **state)
{
    struct fixture *f = *state;
    struct worker w[2] = {{.f = f}, {.f = f}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, check_all, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(w[0].wrong, 0);
    assert_int_equal(w[1].wrong, 0);
    struct verifier_stats st;
    verifier_get_stats(f->v, &st);
    assert_true(st.tx_verified >= NTX);
    assert_true(st.tx_verified <= NTX + NTX / 10);
    assert_int_equal(st.tx_verified + st.tx_cache_hits, 2 * NTX);
}

/* ---- settled PREPAREs and COMMITs are dropped unverified ---------------- */

struct settled_fixture {
    uint64_t settled_below; /* seqs under this are settled */
    unsigned delivered;
};

static bool settled_below(void *ctx, const struct msg *m)
{
    const struct settled_fixture *s = ctx;
    return m->u.phase.seq < s->settled_below;
}

static int count_event(void *ctx, struct verifier_event *ev)
{
    struct settled_fixture *s = ctx;
    s->delivered++;
    verifier_event_free(ev);
    return 0;
}

/* A PREPARE or COMMIT from replica 1 in view 0, signed by key (1's own, or
 * another). */
static nng_msg *phase_msg(enum msg_type type, uint64_t seq, const tc_keypair *key)
{
    struct msg_buf b;
    msg_buf_init(&b);
    struct msg_signer signer = msg_signer_keypair(key);
    tc_hash digest = {{7}};
    nng_msg *m = NULL;
    if (msg_encode_phase(&b, type, 1, 0, seq, &digest, &signer) == 0 &&
        nng_msg_alloc(&m, b.len) == 0)
        memcpy(nng_msg_body(m), b.data, b.len);
    msg_buf_free(&b);
    return m;
}

static void test_settled_messages_skip_the_signature(void **state)
{
    (void)state;
    assert_int_equal(tc_init(), TALLY_OK);
    struct settled_fixture sf = {.settled_below = 10};
    struct verifier_opts o = {.n = 4,
                              .max_message_bytes = 1 << 20,
                              .deliver = count_event,
                              .ctx = &sf,
                              .settled = settled_below};
    tc_keypair keys[4], stranger;
    for (uint32_t i = 0; i < 4; i++) {
        lf_keypair(100 + i, &keys[i]);
        o.replica_keys[i] = keys[i].pk;
    }
    lf_keypair(99, &stranger);
    struct verifier *v = NULL;
    struct tally_err err = {0};
    assert_int_equal(verifier_start(&o, &v, &err), TALLY_OK);

    /* Unsettled: verified and delivered, or (forged) refused. */
    assert_int_equal(
        verifier_process(v, TRANSPORT_FROM_PEER, 1, phase_msg(MSG_PREPARE, 10, &keys[1])),
        VERIFIER_KEEP);
    assert_int_equal(
        verifier_process(v, TRANSPORT_FROM_PEER, 1, phase_msg(MSG_COMMIT, 11, &stranger)),
        VERIFIER_CLOSE);
    /* Settled, on a connection where replica 1 proved itself: dropped before
     * the signature is looked at, forged or not. */
    assert_int_equal(
        verifier_process(v, TRANSPORT_FROM_PEER, 1, phase_msg(MSG_PREPARE, 9, &keys[1])),
        VERIFIER_KEEP);
    assert_int_equal(
        verifier_process(v, TRANSPORT_FROM_PEER, 1, phase_msg(MSG_COMMIT, 3, &stranger)),
        VERIFIER_KEEP);
    /* Settled, on a connection where nobody proved anything: checked. */
    assert_int_equal(
        verifier_process(v, TRANSPORT_FROM_PEER, 2, phase_msg(MSG_COMMIT, 3, &stranger)),
        VERIFIER_CLOSE);
    assert_int_equal(
        verifier_process(v, TRANSPORT_FROM_PEER, 2, phase_msg(MSG_COMMIT, 4, &keys[1])),
        VERIFIER_KEEP);
    struct verifier_stats st;
    verifier_get_stats(v, &st);
    assert_int_equal(sf.delivered, 2);
    assert_int_equal(st.bad_signature, 2);
    assert_int_equal(st.settled_unverified, 2);
    verifier_stop(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_verdicts_are_remembered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_threads_share_the_work, setup, teardown),
        cmocka_unit_test_setup_teardown(test_colliding_verdicts_are_kept, setup, teardown),
        cmocka_unit_test(test_settled_messages_skip_the_signature),
    };
    return cmocka_run_group_tests_name("verifier", tests, NULL, NULL);
}
