/* Verifier: the transaction verdict cache (verifier_tx_sig_ok). */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_verdicts_are_remembered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_threads_share_the_work, setup, teardown),
        cmocka_unit_test_setup_teardown(test_colliding_verdicts_are_kept, setup, teardown),
    };
    return cmocka_run_group_tests_name("verifier", tests, NULL, NULL);
}
