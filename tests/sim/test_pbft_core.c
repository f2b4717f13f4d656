/* The PBFT core driven by hand, one message at a time: the acceptance rules of
 * Castro & Liskov §4.2-§4.3, what is dropped and counted, persist-before-send,
 * in-order execution, batching, pipelining, de-duplication and restore. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "src/log.h"
#include "src/pbft.h"

#define N 4
#define MAX_EVENTS 256

struct sent {
    int to;
    uint64_t step; /* order among persists and sends */
    struct msg m;
    uint8_t *bytes;
};

struct harness {
    tc_keypair keys[N], client;
    struct pbft_config cfg;
    struct pbft *core;
    uint64_t step;
    struct sent sent[MAX_EVENTS];
    size_t nsent;
    struct pbft_persist persisted[MAX_EVENTS];
    uint64_t persist_step[MAX_EVENTS];
    size_t npersisted;
    uint64_t executed[MAX_EVENTS];
    uint32_t executed_count[MAX_EVENTS];
    size_t nexecuted;
    int persist_rc;
    uint8_t txs[8][LEDGER_TX_BYTES];
    tc_hash tx_hash[8];
    struct msg_buf buf;
};

static void h_sign(void *ctx, const uint8_t *bytes, size_t len, tc_sig *out)
{
    struct harness *h = ctx;
    tc_sign(&h->keys[h->cfg.id], bytes, len, out);
}

static int h_persist(void *ctx, const struct pbft_persist *rec)
{
    struct harness *h = ctx;
    if (h->persist_rc != TALLY_OK)
        return h->persist_rc;
    assert_true(h->npersisted < MAX_EVENTS);
    h->persisted[h->npersisted] = *rec;
    h->persisted[h->npersisted].batch = NULL;
    h->persist_step[h->npersisted++] = h->step++;
    return TALLY_OK;
}

static void h_send(void *ctx, int to, const uint8_t *bytes, size_t len)
{
    struct harness *h = ctx;
    assert_true(h->nsent < MAX_EVENTS);
    struct sent *s = &h->sent[h->nsent++];
    s->to = to;
    s->step = h->step++;
    s->bytes = malloc(len);
    memcpy(s->bytes, bytes, len);
    struct tally_err err = {0};
    assert_int_equal(msg_decode(s->bytes, len, 1u << 20, &s->m, &err), TALLY_OK);
    assert_int_equal(msg_verify(&s->m, &h->keys[s->m.sender].pk), TALLY_OK);
}

static void h_execute(void *ctx, uint64_t view, uint64_t seq, const struct msg_batch *batch,
                      const tc_hash *tx_hashes, struct pbft_exec_result *out)
{
    for (uint32_t i = 0; i < batch->count; i++) {
        tc_hash h;
        ledger_tx_hash_bytes(batch->tx_bytes + (size_t)i * LEDGER_TX_BYTES, &h);
        assert_memory_equal(h.b, tx_hashes[i].b, TC_HASH_BYTES);
    }
    memset(out, 0, sizeof(*out));
    struct harness *h = ctx;
    assert_true(view == 0);
    h->executed[h->nexecuted] = seq;
    h->executed_count[h->nexecuted++] = batch->count;
}

static void h_start(struct harness *h, uint32_t id, uint64_t last_executed)
{
    memset(h, 0, sizeof(*h));
    for (uint32_t i = 0; i < N; i++) {
        uint8_t seed[TC_SEED_BYTES] = {(uint8_t)(i + 1)};
        assert_int_equal(tc_keypair_from_seed(&h->keys[i], seed), TALLY_OK);
        h->cfg.replica_keys[i] = h->keys[i].pk;
    }
    uint8_t seed[TC_SEED_BYTES] = {99};
    assert_int_equal(tc_keypair_from_seed(&h->client, seed), TALLY_OK);
    for (int i = 0; i < 8; i++) {
        struct ledger_tx tx = {.version = LEDGER_TX_VERSION,
                               .kind = LEDGER_TX_KIND_TRANSFER,
                               .from = h->client.pk,
                               .to = h->keys[0].pk,
                               .amount = 1,
                               .nonce = (uint64_t)i + 1};
        ledger_tx_sign(&tx, &h->client);
        ledger_tx_encode(&tx, h->txs[i]);
        ledger_tx_hash_bytes(h->txs[i], &h->tx_hash[i]);
    }
    h->cfg.n = N;
    h->cfg.f = 1;
    h->cfg.id = id;
    h->cfg.checkpoint_interval = 4;
    h->cfg.window = 8;
    h->cfg.batch_max_txs = 2;
    h->cfg.batch_timeout_ms = 10;
    h->cfg.max_inflight = 2;
    h->cfg.request_timeout_ms = 1000;
    h->cfg.retransmit_ms = 100;
    struct pbft_io io = {
        .ctx = h, .sign = h_sign, .persist = h_persist, .send = h_send, .execute = h_execute};
    h->core = pbft_create(&h->cfg, &io, last_executed);
    assert_non_null(h->core);
    msg_buf_init(&h->buf);
}

static void h_stop(struct harness *h)
{
    pbft_destroy(h->core);
    for (size_t i = 0; i < h->nsent; i++)
        free(h->sent[i].bytes);
    for (int i = 0; i < N; i++)
        tc_keypair_free(&h->keys[i]);
    tc_keypair_free(&h->client);
    msg_buf_free(&h->buf);
}

static uint64_t dropped(const struct harness *h)
{
    struct pbft_status st;
    pbft_get_status(h->core, &st);
    return st.dropped_messages;
}

/* Decode bytes just encoded into h->buf and hand them to the core. */
static void h_deliver(struct harness *h)
{
    struct msg m;
    struct tally_err err = {0};
    assert_int_equal(msg_decode(h->buf.data, h->buf.len, 1u << 20, &m, &err), TALLY_OK);
    pbft_on_message(h->core, &m, 0);
    msg_buf_reset(&h->buf);
}

static void h_pre_prepare(struct harness *h, uint32_t from, uint64_t view, uint64_t seq,
                          uint32_t first_tx, uint32_t count, tc_hash *digest)
{
    struct msg_signer signer = msg_signer_keypair(&h->keys[from]);
    struct msg_batch b = {.count = count, .tx_bytes = h->txs[first_tx]};
    if (digest != NULL)
        msg_batch_digest(&b, digest);
    assert_int_equal(msg_encode_pre_prepare(&h->buf, from, view, seq, &b, &signer), TALLY_OK);
    h_deliver(h);
}

static void h_phase(struct harness *h, enum msg_type type, uint32_t from, uint64_t view,
                    uint64_t seq, const tc_hash *d)
{
    struct msg_signer signer = msg_signer_keypair(&h->keys[from]);
    assert_int_equal(msg_encode_phase(&h->buf, type, from, view, seq, d, &signer), TALLY_OK);
    h_deliver(h);
}

/* A batch of transaction i alone, and its digest. */
static struct msg_batch h_one_tx_batch(struct harness *h, int i, tc_hash *digest)
{
    struct msg_batch b = {.count = 1, .tx_bytes = h->txs[i]};
    msg_batch_digest(&b, digest);
    return b;
}

static void h_request(struct harness *h, int i, uint64_t now)
{
    struct ledger_tx tx;
    assert_int_equal(ledger_tx_decode(h->txs[i], LEDGER_TX_BYTES, &tx), TALLY_OK);
    pbft_on_request(h->core, &tx, &h->tx_hash[i], now);
}

static int setup(void **state)
{
    (void)state;
    tally_log_set_level(TALLY_LOG_ERROR);
    tally_log_init("core");
    return tc_init() == TALLY_OK ? 0 : -1;
}

/* §4.2: the primary assigns seq and multicasts PRE-PREPARE; we persist it first. */
static void test_primary_persists_then_sends(void **state)
{
    (void)state;
    struct harness h;
    h_start(&h, 0, 0);
    h_request(&h, 0, 0);
    assert_int_equal(h.nsent, 0); /* one of two: waits for the batch */
    h_request(&h, 1, 1);
    assert_int_equal(h.nsent, 1);
    assert_int_equal(h.sent[0].to, PBFT_BROADCAST);
    assert_int_equal(h.sent[0].m.type, MSG_PRE_PREPARE);
    assert_true(h.sent[0].m.u.pre_prepare.seq == 1);
    assert_int_equal(h.sent[0].m.u.pre_prepare.batch.count, 2);
    /* The first proposal of the view also needs a HORIZON record: synced. */
    assert_int_equal(h.npersisted, 2);
    assert_int_equal(h.persisted[0].kind, PBFT_PERSIST_HORIZON);
    assert_int_equal(h.persisted[1].kind, PBFT_PERSIST_PREPREPARE);
    assert_false(h.persisted[1].deferrable);
    assert_true(h.persist_step[1] < h.sent[0].step);
    assert_memory_equal(h.persisted[1].sig.b, h.sent[0].m.sig.b, TC_SIG_BYTES);

    /* 2f = 2 prepares from backups make it prepared: COMMIT, persisted first. */
    const tc_hash *d = &h.sent[0].m.u.pre_prepare.digest;
    h_phase(&h, MSG_PREPARE, 1, 0, 1, d);
    assert_int_equal(h.nsent, 1);
    h_phase(&h, MSG_PREPARE, 2, 0, 1, d);
    assert_int_equal(h.nsent, 2);
    assert_int_equal(h.sent[1].m.type, MSG_COMMIT);
    assert_int_equal(h.persisted[2].kind, PBFT_PERSIST_COMMIT);
    assert_true(h.persist_step[2] < h.sent[1].step);
    /* 2f+1 commits including our own. */
    h_phase(&h, MSG_COMMIT, 1, 0, 1, d);
    assert_int_equal(h.nexecuted, 0);
    h_phase(&h, MSG_COMMIT, 3, 0, 1, d);
    assert_int_equal(h.nexecuted, 1);
    assert_true(h.executed[0] == 1 && h.executed_count[0] == 2);
    h_phase(&h, MSG_COMMIT, 2, 0, 1, d); /* late: no second execution */
    assert_int_equal(h.nexecuted, 1);
    h_stop(&h);
}

static void test_backup_normal_case(void **state)
{
    (void)state;
    struct harness h;
    h_start(&h, 1, 0);
    tc_hash d;
    h_pre_prepare(&h, 0, 0, 1, 0, 2, &d);
    /* The first PREPARE of the view comes with a HORIZON record, synced. */
    assert_int_equal(h.npersisted, 3);
    assert_int_equal(h.persisted[0].kind, PBFT_PERSIST_HORIZON);
    assert_true(h.persisted[0].view == 0 && h.persisted[0].seq == 1 + 256);
    assert_int_equal(h.persisted[1].kind, PBFT_PERSIST_PREPREPARE);
    assert_int_equal(h.persisted[2].kind, PBFT_PERSIST_PREPARE);
    assert_false(h.persisted[1].deferrable || h.persisted[2].deferrable);
    assert_int_equal(h.nsent, 1);
    assert_int_equal(h.sent[0].m.type, MSG_PREPARE);
    assert_true(h.persist_step[2] < h.sent[0].step);
    assert_memory_equal(h.sent[0].m.u.phase.digest.b, d.b, TC_HASH_BYTES);
    /* Our prepare + one more = 2f. */
    h_phase(&h, MSG_PREPARE, 3, 0, 1, &d);
    assert_int_equal(h.nsent, 2);
    assert_int_equal(h.sent[1].m.type, MSG_COMMIT);
    h_phase(&h, MSG_COMMIT, 0, 0, 1, &d);
    h_phase(&h, MSG_COMMIT, 3, 0, 1, &d);
    assert_int_equal(h.nexecuted, 1);
    /* Under the horizon, the records of the next PREPARE need no fsync. */
    h_pre_prepare(&h, 0, 0, 2, 2, 1, NULL);
    assert_int_equal(h.npersisted, 6);
    assert_int_equal(h.persisted[4].kind, PBFT_PERSIST_PREPREPARE);
    assert_int_equal(h.persisted[5].kind, PBFT_PERSIST_PREPARE);
    assert_true(h.persisted[4].deferrable && h.persisted[5].deferrable);
    assert_int_equal(h.sent[h.nsent - 1].m.type, MSG_PREPARE);
    h_stop(&h);
}

/* Prepares and commits may arrive before the pre-prepare. */
static void test_early_phases_then_pre_prepare(void **state)
{
    (void)state;
    struct harness h;
    h_start(&h, 1, 0);
    struct msg_batch b = {.count = 1, .tx_bytes = h.txs[0]};
    tc_hash d, bogus;
    msg_batch_digest(&b, &d);
    memset(bogus.b, 0xEE, sizeof(bogus.b));
    h_phase(&h, MSG_PREPARE, 2, 0, 1, &bogus); /* kept, never counted */
    h_phase(&h, MSG_PREPARE, 3, 0, 1, &d);
    h_phase(&h, MSG_COMMIT, 0, 0, 1, &d);
    h_phase(&h, MSG_COMMIT, 3, 0, 1, &d);
    assert_int_equal(h.nsent, 0);
    h_pre_prepare(&h, 0, 0, 1, 0, 1, NULL);
    /* prepare (own) + prepare(3) = 2f -> commit (own) + 2 = 2f+1 -> execute. */
    assert_int_equal(h.nsent, 2);
    assert_int_equal(h.nexecuted, 1);
    h_stop(&h);
}

static void test_drops_are_counted(void **state)
{
    (void)state;
    struct harness h;
    h_start(&h, 1, 0);
    tc_hash d;
    uint64_t before = dropped(&h);
    h_pre_prepare(&h, 0, 1, 1, 0, 1, &d); /* another view */
    h_pre_prepare(&h, 2, 0, 1, 0, 1, &d); /* not the primary */
    h_pre_prepare(&h, 0, 0, 9, 0, 1, &d); /* above h + L = 8 */
    h_pre_prepare(&h, 0, 0, 0, 0, 1, &d); /* at h */
    h_pre_prepare(&h, 0, 0, 1, 0, 3, &d); /* more than batch_max_txs */
    assert_int_equal(h.nsent, 0);
    assert_true(dropped(&h) == before + 5);

    h_pre_prepare(&h, 0, 0, 1, 0, 1, &d); /* accepted */
    assert_int_equal(h.nsent, 1);
    h_pre_prepare(&h, 0, 0, 1, 0, 1, NULL); /* duplicate */
    h_pre_prepare(&h, 0, 0, 1, 1, 1, NULL); /* a different digest for (v, n) */
    /* ... is proof against the primary: the backup says it suspects it. */
    assert_int_equal(h.nsent, 2);
    assert_int_equal(h.sent[1].m.type, MSG_STATUS_ACTIVE);
    assert_true(h.sent[1].m.u.status_active.suspect == 1);
    assert_true(dropped(&h) == before + 7);

    tc_hash other;
    memset(other.b, 1, sizeof(other.b));
    h_phase(&h, MSG_PREPARE, 0, 0, 1, &d);     /* from the primary */
    h_phase(&h, MSG_PREPARE, 2, 0, 1, &other); /* mismatching digest */
    h_phase(&h, MSG_PREPARE, 2, 1, 1, &d);     /* another view */
    h_phase(&h, MSG_COMMIT, 2, 0, 1, &other);  /* mismatching digest */
    h_phase(&h, MSG_COMMIT, 2, 0, 100, &d);    /* outside the watermarks */
    assert_true(dropped(&h) == before + 12);
    h_phase(&h, MSG_COMMIT, 2, 0, 1, &d);
    h_phase(&h, MSG_COMMIT, 2, 0, 1, &d); /* duplicate */
    assert_true(dropped(&h) == before + 13);

    /* An unknown sender (the shell could not have verified it, but still). */
    struct msg m;
    struct msg_signer signer = msg_signer_keypair(&h.keys[2]);
    assert_int_equal(msg_encode_phase(&h.buf, MSG_PREPARE, 7, 0, 1, &d, &signer), TALLY_OK);
    struct tally_err err = {0};
    assert_int_equal(msg_decode(h.buf.data, h.buf.len, 1u << 20, &m, &err), TALLY_OK);
    pbft_on_message(h.core, &m, 0);
    msg_buf_reset(&h.buf);
    assert_true(dropped(&h) == before + 14);
    assert_int_equal(h.nexecuted, 0);
    h_stop(&h);
}

/* The quiet cut: with nothing in flight, a request goes out once no batch
 * was cut for one batch timeout (T = 10 ms here), sooner than its own
 * timeout would send it; not before. */
static void test_quiet_cut_after_one_timeout(void **state)
{
    (void)state;
    struct harness h;
    h_start(&h, 0, 0);
    h_request(&h, 0, 100); /* the first cut: at once */
    assert_int_equal(h.nsent, 1);
    assert_int_equal(h.sent[0].m.type, MSG_PRE_PREPARE);
    tc_hash d;
    msg_batch_digest(&h.sent[0].m.u.pre_prepare.batch, &d);
    h_phase(&h, MSG_PREPARE, 1, 0, 1, &d);
    h_phase(&h, MSG_PREPARE, 2, 0, 1, &d);
    h_phase(&h, MSG_COMMIT, 1, 0, 1, &d);
    h_phase(&h, MSG_COMMIT, 2, 0, 1, &d);
    assert_int_equal(h.nexecuted, 1); /* nothing in flight from here */

    size_t before = h.nsent;
    h_request(&h, 1, 105); /* 5 ms after the last cut: waits */
    pbft_on_tick(h.core, 109);
    for (size_t i = before; i < h.nsent; i++)
        assert_int_not_equal(h.sent[i].m.type, MSG_PRE_PREPARE);
    before = h.nsent;
    pbft_on_tick(h.core, 110); /* T after the last cut, 5 ms after the request */
    assert_true(h.nsent > before);
    size_t pp = h.nsent;
    for (size_t i = before; i < h.nsent; i++)
        if (h.sent[i].m.type == MSG_PRE_PREPARE)
            pp = i;
    assert_true(pp < h.nsent);
    assert_int_equal(h.sent[pp].m.u.pre_prepare.seq, 2);
    assert_int_equal(h.sent[pp].m.u.pre_prepare.batch.count, 1);
    h_stop(&h);
}

/* §4.3: execution strictly in sequence order. */
static void test_in_order_execution(void **state)
{
    (void)state;
    struct harness h;
    h_start(&h, 1, 0);
    tc_hash d1, d2;
    h_pre_prepare(&h, 0, 0, 2, 2, 2, &d2);
    h_phase(&h, MSG_PREPARE, 2, 0, 2, &d2);
    h_phase(&h, MSG_COMMIT, 0, 0, 2, &d2);
    h_phase(&h, MSG_COMMIT, 2, 0, 2, &d2);
    assert_int_equal(h.nexecuted, 0);      /* seq 2 committed, seq 1 not */
    h_pre_prepare(&h, 0, 0, 1, 0, 0, &d1); /* an empty batch is fine */
    h_phase(&h, MSG_PREPARE, 2, 0, 1, &d1);
    h_phase(&h, MSG_COMMIT, 0, 0, 1, &d1);
    h_phase(&h, MSG_COMMIT, 2, 0, 1, &d1);
    assert_int_equal(h.nexecuted, 2);
    assert_true(h.executed[0] == 1 && h.executed_count[0] == 0);
    assert_true(h.executed[1] == 2 && h.executed_count[1] == 2);
    h_stop(&h);
}

static void test_dedupe_and_batch_timeout(void **state)
{
    (void)state;
    struct harness h;
    h_start(&h, 0, 0);
    struct pbft_status st;
    /* Nothing in flight and no proposal for batch_timeout_ms: at once. */
    size_t before = h.nsent;
    h_request(&h, 0, 100);
    assert_int_equal(h.nsent, before + 1);
    assert_int_equal(h.sent[before].m.type, MSG_PRE_PREPARE);
    assert_int_equal(h.sent[before].m.u.pre_prepare.batch.count, 1);
    /* With a batch in flight, a request waits for the batch timeout. */
    h_request(&h, 1, 101);
    h_request(&h, 1, 102); /* queued already: ignored, not counted as a drop */
    pbft_get_status(h.core, &st);
    assert_true(st.queued_requests == 1 && st.dropped_messages == 0);
    pbft_on_tick(h.core, 105);
    assert_int_equal(h.sent[h.nsent - 1].m.type, MSG_STATUS_ACTIVE); /* no batch yet */
    before = h.nsent;
    pbft_on_tick(h.core, 111); /* the oldest waited batch_timeout_ms */
    assert_int_equal(h.nsent, before + 1);
    assert_int_equal(h.sent[before].m.type, MSG_PRE_PREPARE);
    assert_int_equal(h.sent[before].m.u.pre_prepare.batch.count, 1);
    h_request(&h, 1, 112); /* in the log now */
    pbft_get_status(h.core, &st);
    assert_true(st.queued_requests == 0 && st.dropped_messages == 0);
    h_stop(&h);

    /* A backup keeps requests, until it sees them in a pre-prepare. */
    h_start(&h, 2, 0);
    h_request(&h, 0, 0);
    h_request(&h, 1, 0);
    pbft_get_status(h.core, &st);
    assert_true(st.queued_requests == 2);
    h_pre_prepare(&h, 0, 0, 1, 0, 1, NULL);
    pbft_get_status(h.core, &st);
    assert_true(st.queued_requests == 1);
    h_request(&h, 0, 0);
    pbft_get_status(h.core, &st);
    assert_true(st.queued_requests == 1);
    h_stop(&h);
}

/* A pre-prepare at or below what we executed (a state transfer jumped past
 * it, or a restart lost its records) is never executed here: its txs must not
 * stay in the de-dup set as in flight (they did, for good: memory grew with
 * every such episode and those txs were never queued again). */
static void test_pre_prepare_below_executed(void **state)
{
    (void)state;
    struct harness h;
    struct pbft_status st;
    h_start(&h, 2, 3); /* the ledger holds seqs 1..3, no records */
    h_pre_prepare(&h, 0, 0, 2, 0, 2, NULL);
    assert_int_equal(dropped(&h), 0);
    assert_int_equal(h.nexecuted, 0);
    h_request(&h, 0, 0);
    h_request(&h, 1, 0);
    pbft_get_status(h.core, &st);
    assert_true(st.queued_requests == 2);
    h_stop(&h);
}

static void test_pipeline_limit(void **state)
{
    (void)state;
    struct harness h;
    h_start(&h, 0, 0);
    for (int i = 0; i < 8; i++)
        h_request(&h, i, 0);
    assert_int_equal(h.nsent, 2); /* max_inflight = 2 batches of 2 */
    assert_true(h.sent[1].m.u.pre_prepare.seq == 2);
    /* Commit seq 1: the pipeline moves on. */
    const tc_hash *d = &h.sent[0].m.u.pre_prepare.digest;
    h_phase(&h, MSG_PREPARE, 1, 0, 1, d);
    h_phase(&h, MSG_PREPARE, 2, 0, 1, d);
    h_phase(&h, MSG_COMMIT, 1, 0, 1, d);
    h_phase(&h, MSG_COMMIT, 2, 0, 1, d);
    assert_int_equal(h.nexecuted, 1);
    assert_int_equal(h.sent[h.nsent - 1].m.type, MSG_PRE_PREPARE);
    assert_true(h.sent[h.nsent - 1].m.u.pre_prepare.seq == 3);
    h_stop(&h);
}

static void test_restore(void **state)
{
    (void)state;
    struct harness h;
    h_start(&h, 0, 0);
    uint8_t two[2 * LEDGER_TX_BYTES];
    memcpy(two, h.txs[0], LEDGER_TX_BYTES);
    memcpy(two + LEDGER_TX_BYTES, h.txs[1], LEDGER_TX_BYTES);
    struct msg_batch b1 = {.count = 1, .tx_bytes = h.txs[2]};
    struct msg_batch b2 = {.count = 2, .tx_bytes = two};
    pbft_destroy(h.core);
    struct pbft_io io = {
        .ctx = &h, .sign = h_sign, .persist = h_persist, .send = h_send, .execute = h_execute};
    h.core = pbft_create(&h.cfg, &io, 1); /* the ledger holds seq 1 */
    struct pbft_persist r1 = {.kind = PBFT_PERSIST_PREPREPARE, .view = 0, .seq = 1, .batch = &b1};
    struct pbft_persist r2 = {.kind = PBFT_PERSIST_PREPREPARE, .view = 0, .seq = 2, .batch = &b2};
    assert_int_equal(pbft_restore(h.core, &r1), TALLY_OK);
    assert_int_equal(pbft_restore(h.core, &r2), TALLY_OK);
    /* The txs of seq 2 are in the log: not queued again; a new one goes to seq 3. */
    h_request(&h, 0, 0);
    h_request(&h, 3, 0);
    h_request(&h, 4, 0);
    assert_int_equal(h.nsent, 1);
    assert_true(h.sent[0].m.u.pre_prepare.seq == 3);
    /* seq 2 commits and executes; seq 1 never again. */
    tc_hash d2;
    msg_batch_digest(&b2, &d2);
    h_phase(&h, MSG_PREPARE, 1, 0, 2, &d2);
    h_phase(&h, MSG_PREPARE, 2, 0, 2, &d2);
    h_phase(&h, MSG_COMMIT, 1, 0, 2, &d2);
    h_phase(&h, MSG_COMMIT, 2, 0, 2, &d2);
    assert_int_equal(h.nexecuted, 1);
    assert_true(h.executed[0] == 2);
    h_stop(&h);
}

/* Start primary 0 with the ledger at last_executed, restore recs[0..n), give
 * it two requests (a full batch) and return the seq of the one PRE-PREPARE it
 * sends. The caller h_stops. */
static uint64_t h_restored_proposal(struct harness *h, uint64_t last_executed,
                                    const struct pbft_persist *recs, size_t n)
{
    h_start(h, 0, last_executed);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(pbft_restore(h->core, &recs[i]), TALLY_OK);
    h_request(h, 4, 0);
    h_request(h, 5, 0);
    assert_int_equal(h->nsent, 1);
    assert_int_equal(h->sent[0].m.type, MSG_PRE_PREPARE);
    return h->sent[0].m.u.pre_prepare.seq;
}

/* The proposal horizon: one HORIZON record per PBFT_HORIZON_AHEAD (256) seqs
 * lets the PRE-PREPAREs under it be written without an fsync; a primary that
 * restarts under a horizon it did not release proposes nothing there (a
 * proposal it forgot in a power loss must not get a second batch); a clean
 * stop, with everything synced, releases it. */
static void test_proposal_horizon(void **state)
{
    (void)state;
    struct harness h;
    h_start(&h, 0, 0);
    h_request(&h, 0, 0);
    h_request(&h, 1, 0);
    h_request(&h, 2, 0);
    h_request(&h, 3, 0);
    assert_int_equal(h.nsent, 2);
    assert_int_equal(h.npersisted, 3);
    assert_int_equal(h.persisted[0].kind, PBFT_PERSIST_HORIZON);
    assert_true(h.persisted[0].view == 0 && h.persisted[0].seq == 1 + 256);
    assert_int_equal(h.persisted[1].kind, PBFT_PERSIST_PREPREPARE);
    assert_false(h.persisted[1].deferrable);
    assert_int_equal(h.persisted[2].kind, PBFT_PERSIST_PREPREPARE);
    assert_true(h.persisted[2].seq == 2 && h.persisted[2].deferrable);
    assert_true(h.persist_step[2] < h.sent[1].step);
    pbft_release_horizon(h.core); /* clean stop: nothing is left unsynced */
    assert_int_equal(h.npersisted, 4);
    assert_int_equal(h.persisted[3].kind, PBFT_PERSIST_HORIZON);
    assert_true(h.persisted[3].view == 0 && h.persisted[3].seq == 0);
    h_stop(&h);

    /* Restarted (seqs 1 and 2 executed) under the released horizon: goes on. */
    struct pbft_persist released = {.kind = PBFT_PERSIST_HORIZON, .view = 0, .seq = 0};
    assert_true(h_restored_proposal(&h, 2, &released, 1) == 3);
    assert_int_equal(h.persisted[0].kind, PBFT_PERSIST_HORIZON); /* a new one, for 3 */
    assert_true(h.persisted[0].seq == 3 + 256);
    h_stop(&h);

    /* Restarted under a horizon it never released (a crash): silent in that
     * view, whatever the time, and it keeps the horizon on a clean stop. */
    struct pbft_persist held = {.kind = PBFT_PERSIST_HORIZON, .view = 0, .seq = 257};
    h_start(&h, 0, 2);
    assert_int_equal(pbft_restore(h.core, &held), TALLY_OK);
    h_request(&h, 4, 0);
    h_request(&h, 5, 0);
    pbft_on_tick(h.core, 1000);
    for (size_t i = 0; i < h.nsent; i++)
        assert_int_not_equal(h.sent[i].m.type, MSG_PRE_PREPARE);
    pbft_release_horizon(h.core);
    for (size_t i = 0; i < h.npersisted; i++)
        assert_int_not_equal(h.persisted[i].kind, PBFT_PERSIST_HORIZON);
    h_stop(&h);

    /* ... but not in another view: the horizon is per view. */
    struct pbft_persist older[] = {{.kind = PBFT_PERSIST_HORIZON, .view = 0, .seq = 257},
                                   {.kind = PBFT_PERSIST_VIEW, .view = 4}};
    assert_true(h_restored_proposal(&h, 2, older, 2) == 3);
    assert_true(h.sent[0].m.u.pre_prepare.view == 4);
    h_stop(&h);

    /* Restarted in the boot that wrote it (kill -9): nothing was lost. It is
     * our horizon again, not a floor: no new record under it, and a clean
     * stop releases it. */
    struct pbft_persist same = {
        .kind = PBFT_PERSIST_HORIZON, .view = 0, .seq = 257, .same_boot = true};
    assert_true(h_restored_proposal(&h, 2, &same, 1) == 3);
    assert_int_equal(h.npersisted, 1);
    assert_true(h.persisted[0].kind == PBFT_PERSIST_PREPREPARE && h.persisted[0].deferrable);
    pbft_release_horizon(h.core);
    assert_int_equal(h.npersisted, 2);
    assert_true(h.persisted[1].kind == PBFT_PERSIST_HORIZON && h.persisted[1].seq == 0);
    h_stop(&h);
}

/* A backup's horizon: restarted after a reboot under a HORIZON record it
 * did not release, it may have sent PREPAREs up to its seq that it no longer
 * knows, so there it keeps the PRE-PREPARE and counts the others' PREPAREs
 * but sends no PREPARE of its own (a primary that equivocates could have it
 * prepare a second batch for the seq). Above it every record is synced, no
 * new HORIZON record replaces the floor's, and a clean stop keeps it. */
static void test_backup_floor(void **state)
{
    (void)state;
    struct harness h;
    struct pbft_persist held = {.kind = PBFT_PERSIST_HORIZON, .view = 0, .seq = 5};
    h_start(&h, 1, 0);
    assert_int_equal(pbft_restore(h.core, &held), TALLY_OK);
    tc_hash d;
    h_pre_prepare(&h, 0, 0, 1, 0, 2, &d);
    assert_int_equal(h.nsent, 0);
    assert_int_equal(h.npersisted, 1);
    assert_int_equal(h.persisted[0].kind, PBFT_PERSIST_PREPREPARE);
    /* 2f PREPAREs from the other backups: prepared, it commits. */
    h_phase(&h, MSG_PREPARE, 2, 0, 1, &d);
    h_phase(&h, MSG_PREPARE, 3, 0, 1, &d);
    assert_int_equal(h.nsent, 1);
    assert_int_equal(h.sent[0].m.type, MSG_COMMIT);
    h_phase(&h, MSG_COMMIT, 2, 0, 1, &d);
    h_phase(&h, MSG_COMMIT, 3, 0, 1, &d);
    assert_int_equal(h.nexecuted, 1);
    /* Above the floor: a PREPARE, its records synced, no HORIZON record. */
    size_t before = h.npersisted;
    h_pre_prepare(&h, 0, 0, 6, 2, 1, NULL);
    assert_int_equal(h.sent[h.nsent - 1].m.type, MSG_PREPARE);
    assert_int_equal(h.npersisted, before + 2);
    assert_false(h.persisted[before].deferrable || h.persisted[before + 1].deferrable);
    pbft_release_horizon(h.core);
    for (size_t i = 0; i < h.npersisted; i++)
        assert_int_not_equal(h.persisted[i].kind, PBFT_PERSIST_HORIZON);
    h_stop(&h);
}

/* A restored COMMIT record carries our prepared certificate: its PREPAREs
 * count in the slot again. The backups that sent them may never send them
 * again (under a floor, or having lost them unsynced), so without them the
 * restarted replica could not execute the seq (found by review, in the
 * simulator with a short horizon: two replicas stuck for good). */
static void test_restored_commit_is_prepared(void **state)
{
    (void)state;
    struct harness h;
    h_start(&h, 1, 0);
    tc_hash d;
    struct msg_batch b = h_one_tx_batch(&h, 0, &d);
    tc_sig sigs[PBFT_MAX_REPLICAS];
    memset(sigs, 0, sizeof(sigs));
    struct pbft_persist recs[] = {
        {.kind = PBFT_PERSIST_PREPREPARE, .view = 0, .seq = 1, .digest = d, .batch = &b},
        {.kind = PBFT_PERSIST_COMMIT,
         .view = 0,
         .seq = 1,
         .digest = d,
         .prepare_from = (1u << 2) | (1u << 3),
         .prepare_sigs = sigs},
    };
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(pbft_restore(h.core, &recs[i]), TALLY_OK);
    h_phase(&h, MSG_COMMIT, 2, 0, 1, &d);
    h_phase(&h, MSG_COMMIT, 3, 0, 1, &d);
    assert_int_equal(h.nexecuted, 1);
    assert_int_equal(h.npersisted, 0); /* its COMMIT was sent before */
    h_stop(&h);
}

/* A new primary's NEW-VIEW may re-propose seqs beyond its window, which get
 * no PRE-PREPARE record; the ASSIGNED record it writes then keeps a restarted
 * primary from numbering those seqs again (with other batches). */
static void test_assigned_after_new_view(void **state)
{
    (void)state;
    struct harness h;
    struct pbft_persist assigned = {.kind = PBFT_PERSIST_ASSIGNED, .view = 0, .seq = 6};
    assert_true(h_restored_proposal(&h, 5, &assigned, 1) == 7); /* not 6 */
    h_stop(&h);
    assigned.view = 4; /* another view's: no effect */
    assert_true(h_restored_proposal(&h, 5, &assigned, 1) == 6);
    h_stop(&h);
}

/* Restarted as the primary of view 4, which it also led in view 0: its
 * view-0 PRE-PREPAREs above its NEW-VIEW's max-s are void in view 4, so it
 * numbers on after its own view-4 proposals and reuses those seqs (it used
 * to number on after the view-0 records, leave the seqs between unproposed
 * in view 4 and force a view change; found by review). */
static void test_restored_older_view_proposals(void **state)
{
    (void)state;
    struct harness h;
    /* Batches of transactions 6 and 7 (h_start makes them; the digest is
     * computed from the batch on restore). */
    struct msg_batch b6 = {.count = 1, .tx_bytes = h.txs[6]};
    struct msg_batch b7 = {.count = 1, .tx_bytes = h.txs[7]};
    struct pbft_persist recs[] = {
        {.kind = PBFT_PERSIST_VIEW, .view = 4},
        {.kind = PBFT_PERSIST_ASSIGNED, .view = 4, .seq = 2},
        {.kind = PBFT_PERSIST_PREPREPARE, .view = 4, .seq = 3, .batch = &b6},
        {.kind = PBFT_PERSIST_PREPREPARE, .view = 0, .seq = 4, .batch = &b7},
        {.kind = PBFT_PERSIST_PREPREPARE, .view = 0, .seq = 5, .batch = &b7},
    };
    assert_true(h_restored_proposal(&h, 2, recs, 5) == 4);
    assert_true(h.sent[0].m.u.pre_prepare.view == 4);
    /* The void entries' transaction went back to the queue's front: it is
     * in the batch, before the requests that arrived after the restart. */
    const struct msg_batch *b = &h.sent[0].m.u.pre_prepare.batch;
    assert_int_equal(b->count, 2);
    assert_memory_equal(b->tx_bytes, h.txs[7], LEDGER_TX_BYTES);
    assert_memory_equal(b->tx_bytes + LEDGER_TX_BYTES, h.txs[4], LEDGER_TX_BYTES);
    h_stop(&h);
}

/* A restored PREPARE record: our PREPARE's signature is made again (the
 * same one: Ed25519 is deterministic), so that a prepared certificate formed
 * after the restart proves our part in it. It was left empty, and a
 * VIEW-CHANGE carrying such a certificate was refused by every replica
 * (found by test_power_loss once restarted primaries forced view changes). */
static void test_restored_prepare_in_certificate(void **state)
{
    (void)state;
    struct harness h;
    h_start(&h, 1, 0);
    tc_hash d;
    struct msg_batch b = h_one_tx_batch(&h, 0, &d);
    struct msg_signer primary = msg_signer_keypair(&h.keys[0]);
    assert_int_equal(msg_encode_pre_prepare(&h.buf, 0, 0, 1, &b, &primary), TALLY_OK);
    struct pbft_persist pp = {
        .kind = PBFT_PERSIST_PREPREPARE, .view = 0, .seq = 1, .digest = d, .batch = &b};
    memcpy(pp.sig.b, h.buf.data + h.buf.len - TC_SIG_BYTES, TC_SIG_BYTES);
    msg_buf_reset(&h.buf);
    struct pbft_persist pr = {.kind = PBFT_PERSIST_PREPARE, .view = 0, .seq = 1, .digest = d};
    assert_int_equal(pbft_restore(h.core, &pp), TALLY_OK);
    assert_int_equal(pbft_restore(h.core, &pr), TALLY_OK);
    h_phase(&h, MSG_PREPARE, 2, 0, 1, &d); /* with ours, 2f: prepared */
    assert_int_equal(h.npersisted, 1);
    assert_int_equal(h.persisted[0].kind, PBFT_PERSIST_COMMIT);
    assert_true(h.persisted[0].prepare_from == ((1u << 1) | (1u << 2)));
    struct msg_signer me = msg_signer_keypair(&h.keys[1]);
    assert_int_equal(msg_encode_phase(&h.buf, MSG_PREPARE, 1, 0, 1, &d, &me), TALLY_OK);
    assert_memory_equal(h.persisted[0].prepare_sigs[1].b, h.buf.data + h.buf.len - TC_SIG_BYTES,
                        TC_SIG_BYTES);
    msg_buf_reset(&h.buf);
    h_stop(&h);
}

static void test_persist_failure_stops_promises(void **state)
{
    (void)state;
    struct harness h;
    h_start(&h, 1, 0);
    h.persist_rc = TALLY_EIO;
    h_pre_prepare(&h, 0, 0, 1, 0, 1, NULL);
    assert_int_equal(h.nsent, 0);
    h.persist_rc = TALLY_OK;
    h_pre_prepare(&h, 0, 0, 2, 1, 1, NULL);
    pbft_on_tick(h.core, 1000);
    assert_int_equal(h.nsent, 0);
    assert_int_equal(h.npersisted, 0);
    h_stop(&h);
}

/* A peer reports it executed nothing: we resend the primary's PRE-PREPARE
 * (its signature intact) and our own PREPARE and COMMIT. */
static void test_status_retransmission(void **state)
{
    (void)state;
    struct harness h;
    h_start(&h, 1, 0);
    tc_hash d;
    h_pre_prepare(&h, 0, 0, 1, 0, 2, &d);
    h_phase(&h, MSG_PREPARE, 2, 0, 1, &d);
    h_phase(&h, MSG_COMMIT, 0, 0, 1, &d);
    h_phase(&h, MSG_COMMIT, 2, 0, 1, &d);
    assert_int_equal(h.nexecuted, 1);
    size_t before = h.nsent;
    struct msg_signer signer = msg_signer_keypair(&h.keys[3]);
    assert_int_equal(msg_encode_status_active(&h.buf, 3, 0, 0, 0, 0, 1, &signer), TALLY_OK);
    h_deliver(&h);
    assert_int_equal(h.nsent, before + 3);
    assert_int_equal(h.sent[before].to, 3);
    assert_int_equal(h.sent[before].m.type, MSG_PRE_PREPARE);
    assert_int_equal(h.sent[before].m.sender, 0);
    assert_int_equal(msg_verify(&h.sent[before].m, &h.keys[0].pk), TALLY_OK);
    assert_int_equal(h.sent[before + 1].m.type, MSG_PREPARE);
    assert_int_equal(h.sent[before + 2].m.type, MSG_COMMIT);
    h_stop(&h);
}

static void test_bad_config(void **state)
{
    (void)state;
    struct harness h;
    h_start(&h, 0, 0);
    struct pbft_io io = {
        .ctx = &h, .sign = h_sign, .persist = h_persist, .send = h_send, .execute = h_execute};
    struct pbft_config c = h.cfg;
    c.n = 5; /* not 3f+1 */
    assert_null(pbft_create(&c, &io, 0));
    c = h.cfg;
    c.id = 4;
    assert_null(pbft_create(&c, &io, 0));
    c = h.cfg;
    c.window = 6; /* not a multiple of K = 4 */
    assert_null(pbft_create(&c, &io, 0));
    c = h.cfg;
    c.batch_max_txs = 0;
    assert_null(pbft_create(&c, &io, 0));
    assert_int_equal(pbft_primary_of(h.core, 5), 1);
    h_stop(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_primary_persists_then_sends),
        cmocka_unit_test(test_backup_normal_case),
        cmocka_unit_test(test_early_phases_then_pre_prepare),
        cmocka_unit_test(test_drops_are_counted),
        cmocka_unit_test(test_in_order_execution),
        cmocka_unit_test(test_dedupe_and_batch_timeout),
        cmocka_unit_test(test_quiet_cut_after_one_timeout),
        cmocka_unit_test(test_pre_prepare_below_executed),
        cmocka_unit_test(test_pipeline_limit),
        cmocka_unit_test(test_restore),
        cmocka_unit_test(test_proposal_horizon),
        cmocka_unit_test(test_backup_floor),
        cmocka_unit_test(test_restored_commit_is_prepared),
        cmocka_unit_test(test_restored_older_view_proposals),
        cmocka_unit_test(test_restored_prepare_in_certificate),
        cmocka_unit_test(test_assigned_after_new_view),
        cmocka_unit_test(test_persist_failure_stops_promises),
        cmocka_unit_test(test_status_retransmission),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
