/* SP over NNG streams (src/spstream.c): the send queue's caps, the requeue
 * of a failed write's unsent frames, a receive buffer that pauses when its
 * frames cannot be taken (the client queue's backpressure), a link that
 * writes through a full socket, and one that reads on an rxpoll pool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <stdio.h>

#include "src/mono.h"
#include "src/spstream.h"
#include "tests/helpers/stream_pair.h"

static bool push_frame(struct spstream_sendq *q, uint8_t fill, size_t len)
{
    uint8_t hdr[SPFRAME_MAX_HEADER], body[256];
    memset(body, fill, len);
    size_t hlen = spframe_header(hdr, len, false);
    return spstream_sendq_push(q, hdr, hlen, body, len);
}

static void test_caps(void **state)
{
    (void)state;
    struct spstream_sendq q = {.max_msgs = 2, .max_bytes = 100};
    assert_true(push_frame(&q, 'a', 10));
    assert_true(push_frame(&q, 'b', 10));
    assert_false(push_frame(&q, 'c', 10)); /* a third message */
    assert_int_equal(q.pending_msgs, 2);
    assert_int_equal(q.pending_len, 2 * (SPFRAME_HEADER + 10));
    spstream_sendq_free(&q);

    /* One message larger than the byte cap still goes into an empty queue
     * (else it could never be sent), but nothing joins it. */
    q = (struct spstream_sendq){.max_msgs = 8, .max_bytes = 100};
    assert_true(push_frame(&q, 'a', 200));
    assert_false(push_frame(&q, 'b', 1));
    spstream_sendq_free(&q);
}

/* Put what is pending into the write in flight, as sendq_start does. */
static void take_pending(struct spstream_sendq *q)
{
    spstream_sendq_take(q);
    q->sending = true;
}

static void test_requeue_unsent(void **state)
{
    (void)state;
    const size_t f = SPFRAME_HEADER + 10; /* one frame's bytes */
    struct spstream_sendq q = {0};
    for (uint8_t i = 0; i < 4; i++)
        assert_true(push_frame(&q, (uint8_t)('a' + i), 10));
    take_pending(&q);
    assert_true(push_frame(&q, 'z', 10)); /* queued during the write */

    /* The connection broke after a frame and a half went out: the half
     * frame is lost, the last two come back ahead of the newer one. */
    spstream_sendq_wrote(&q, f + f / 2);
    spstream_sendq_requeue_unsent(&q);
    assert_int_equal(q.inflight_len, 0);
    assert_false(q.sending);
    assert_int_equal(q.pending_msgs, 3);
    assert_int_equal(q.pending_len, 3 * f);
    assert_int_equal(q.pending[SPFRAME_HEADER], 'c');
    assert_int_equal(q.pending[f + SPFRAME_HEADER], 'd');
    assert_int_equal(q.pending[2 * f + SPFRAME_HEADER], 'z');
    spstream_sendq_free(&q);

    /* Nothing written at all: every frame comes back. */
    q = (struct spstream_sendq){0};
    assert_true(push_frame(&q, 'a', 10));
    assert_true(push_frame(&q, 'b', 10));
    take_pending(&q);
    spstream_sendq_requeue_unsent(&q);
    assert_int_equal(q.pending_msgs, 2);
    assert_int_equal(q.pending[SPFRAME_HEADER], 'a');
    spstream_sendq_free(&q);

    /* A frame boundary exactly at the break: the next frame is whole. */
    q = (struct spstream_sendq){0};
    assert_true(push_frame(&q, 'a', 10));
    assert_true(push_frame(&q, 'b', 10));
    take_pending(&q);
    q.inflight_off = f;
    spstream_sendq_requeue_unsent(&q);
    assert_int_equal(q.pending_msgs, 1);
    assert_int_equal(q.pending[SPFRAME_HEADER], 'b');
    spstream_sendq_free(&q);
}

/* A frame callback that takes `room` frames, then asks to be called later. */
struct taker {
    size_t room, taken;
    uint8_t first[8]; /* first byte of each frame taken */
};

static enum spstream_take take_some(void *ctx, const uint8_t *body, size_t len)
{
    struct taker *k = ctx;
    assert_int_equal(len, 10);
    if (k->room == 0)
        return SPSTREAM_LATER;
    k->room--;
    k->first[k->taken++] = body[0];
    return SPSTREAM_TAKEN;
}

static void test_rbuf_pause_and_resume(void **state)
{
    (void)state;
    struct spstream_rbuf r;
    assert_int_equal(spstream_rbuf_init(&r), 0);
    /* The other side's handshake and four frames, as one read. */
    size_t n = 0;
    spframe_handshake(r.buf, SPFRAME_PUSH0);
    n += SPFRAME_HANDSHAKE;
    for (uint8_t i = 0; i < 4; i++) {
        n += spframe_header(r.buf + n, 10, false);
        memset(r.buf + n, 'a' + i, 10);
        n += 10;
    }
    struct taker k = {.room = 1};
    /* One frame fits: the rest stays, the first of them at the front. */
    assert_int_equal(spstream_rbuf_deliver(&r, n, SPFRAME_PUSH0, 100, take_some, &k),
                     SPSTREAM_PAUSED);
    assert_int_equal(k.taken, 1);
    assert_int_equal(r.have, 3 * (SPFRAME_HEADER + 10));
    assert_int_equal(r.buf[SPFRAME_HEADER], 'b');
    /* Still no room: nothing moves. */
    assert_int_equal(spstream_rbuf_deliver(&r, 0, SPFRAME_PUSH0, 100, take_some, &k),
                     SPSTREAM_PAUSED);
    assert_int_equal(k.taken, 1);
    /* Room for everything: resumed without new bytes, in order. */
    k.room = 8;
    assert_int_equal(spstream_rbuf_deliver(&r, 0, SPFRAME_PUSH0, 100, take_some, &k), SPSTREAM_OK);
    assert_int_equal(k.taken, 4);
    assert_memory_equal(k.first, "abcd", 4);
    assert_int_equal(r.have, 0);
    spstream_rbuf_free(&r);
}

/* ---- a link through a full socket ------------------------------------------ */

#define BIG_FRAMES 400
#define BIG_FRAME_BYTES 60000 /* 24 MB in all: more than loopback TCP buffers */

struct big_reader {
    uint32_t next; /* the index the next frame must carry */
    bool bad;
};

static enum spstream_take take_big(void *ctx, const uint8_t *body, size_t len)
{
    struct big_reader *b = ctx;
    uint32_t idx;
    memcpy(&idx, body, sizeof(idx));
    if (len != BIG_FRAME_BYTES || idx != b->next || body[len - 1] != (uint8_t)idx)
        b->bad = true;
    b->next++;
    return SPSTREAM_TAKEN;
}

/* Listen on a free port of 127.0.0.1 (its URL into url) with an accept
 * posted on *aio, which times out after 10 s (fail, not hang). */
static void listen_and_accept(nng_stream_listener **ln, nng_aio **aio, char *url, size_t cap)
{
    int port = 0;
    assert_int_equal(nng_stream_listener_alloc(ln, "tcp://127.0.0.1:0"), 0);
    assert_int_equal(nng_stream_listener_listen(*ln), 0);
    assert_int_equal(nng_stream_listener_get_int(*ln, NNG_OPT_TCP_BOUND_PORT, &port), 0);
    assert_int_equal(nng_aio_alloc(aio, NULL, NULL), 0);
    nng_aio_set_timeout(*aio, 10000); /* every wait on it: fail, not hang */
    nng_stream_listener_accept(*ln, *aio);
    snprintf(url, cap, "tcp://127.0.0.1:%d", port);
}

/* The other side reads nothing until every frame is queued, so the link's
 * socket fills and its writes go on from send_aio's callback (the
 * SPSTREAM_WRITE_PENDING path of spstream_sendq_start), not at once: every
 * frame still arrives, whole and in order. */
static void test_link_through_full_socket(void **state)
{
    (void)state;
    nng_stream_listener *ln = NULL;
    nng_aio *aio = NULL;
    char url[64];
    listen_and_accept(&ln, &aio, url, sizeof(url));

    struct spstream_link_opts o = {
        .url = url, .self = SPFRAME_PUSH0, .peer = SPFRAME_PULL0, .max_body = 1024};
    struct spstream_link *l = NULL;
    struct tally_err err = {0};
    assert_int_equal(spstream_link_start(&o, &l, &err), 0);
    nng_aio_wait(aio);
    assert_int_equal(nng_aio_result(aio), 0);
    nng_stream *s = nng_aio_get_output(aio, 0);

    /* Our handshake (a pull0 speaker's), then wait for the link to see it. */
    uint8_t hs[SPFRAME_HANDSHAKE];
    spframe_handshake(hs, SPFRAME_PULL0);
    nng_iov iov = {.iov_buf = hs, .iov_len = sizeof(hs)};
    assert_int_equal(nng_aio_set_iov(aio, 1, &iov), 0);
    nng_stream_send(s, aio);
    nng_aio_wait(aio);
    assert_int_equal(nng_aio_result(aio), 0);
    assert_int_equal(nng_aio_count(aio), sizeof(hs));
    uint64_t deadline = mono_now_us() + 10000000;
    while (!spstream_link_connected(l) && mono_now_us() < deadline)
        nng_msleep(1);
    assert_true(spstream_link_connected(l));

    static uint8_t body[BIG_FRAME_BYTES];
    for (uint32_t i = 0; i < BIG_FRAMES; i++) {
        memcpy(body, &i, sizeof(i));
        body[BIG_FRAME_BYTES - 1] = (uint8_t)i;
        assert_true(spstream_link_send(l, body, sizeof(body)));
    }

    struct spstream_rbuf r;
    assert_int_equal(spstream_rbuf_init(&r), 0);
    struct big_reader b = {0};
    deadline = mono_now_us() + 30000000;
    while (b.next < BIG_FRAMES && !b.bad && mono_now_us() < deadline) {
        assert_int_equal(spstream_rbuf_arm(&r, aio), 0);
        nng_aio_set_timeout(aio, 10000); /* (arm sets none once the handshake is in) */
        nng_stream_recv(s, aio);
        nng_aio_wait(aio);
        assert_int_equal(nng_aio_result(aio), 0);
        assert_int_equal(spstream_rbuf_deliver(&r, nng_aio_count(aio), SPFRAME_PUSH0,
                                               BIG_FRAME_BYTES, take_big, &b),
                         SPSTREAM_OK);
    }
    assert_false(b.bad);
    assert_int_equal(b.next, BIG_FRAMES);
    assert_true(spstream_link_writes_waited(l) > 0); /* the socket did fill */

    spstream_link_stop(l);
    spstream_rbuf_free(&r);
    nng_stream_free(s);
    nng_aio_free(aio);
    nng_stream_listener_free(ln);
}

/* Frames a link delivered, from the thread that read them. */
struct got_frames {
    pthread_mutex_t mtx;
    uint32_t next;
    bool bad;
};

static enum spstream_take take_counted(void *ctx, const uint8_t *body, size_t len)
{
    struct got_frames *g = ctx;
    uint32_t idx = 0;
    pthread_mutex_lock(&g->mtx);
    if (len != 3000)
        g->bad = true;
    else
        memcpy(&idx, body, sizeof(idx));
    if (idx != g->next || body[len - 1] != (uint8_t)idx)
        g->bad = true;
    g->next++;
    pthread_mutex_unlock(&g->mtx);
    return SPSTREAM_TAKEN;
}

static enum spstream_take take_count(void *ctx, const uint8_t *body, size_t len)
{
    (void)body;
    size_t *n = ctx;
    assert_int_equal(len, 1000);
    (*n)++;
    return SPSTREAM_TAKEN;
}

/* spstream_rbuf_read_now reads at most SPSTREAM_READS_PER_WAKE buffers per
 * call, however much the socket holds (shown with a 4 KiB buffer so that
 * 64 KiB in the socket are more than that), and calls again get the rest. */
static void test_read_now_is_capped(void **state)
{
    (void)state;
    nng_stream_listener *ln = NULL;
    nng_stream *out = NULL, *in = NULL;
    nng_aio *quick = NULL;
    assert_int_equal(stream_pair(&ln, &out, &in), 0);
    assert_int_equal(nng_aio_alloc(&quick, NULL, NULL), 0);

    enum { FRAMES = 64 };
    static uint8_t wire[SPFRAME_HANDSHAKE + FRAMES * (SPFRAME_MAX_HEADER + 1000)];
    size_t len = 0;
    spframe_handshake(wire, SPFRAME_PUSH0);
    len += SPFRAME_HANDSHAKE;
    for (int i = 0; i < FRAMES; i++) {
        len += spframe_header(wire + len, 1000, false);
        memset(wire + len, i, 1000);
        len += 1000;
    }
    assert_int_equal(stream_send_all(out, wire, len), 0);

    struct spstream_rbuf r;
    assert_int_equal(spstream_rbuf_init(&r), 0);
    r.cap = 4096; /* the first 4 KiB of its buffer */
    size_t taken = 0, calls = 0;
    uint64_t deadline = mono_now_us() + 10000000;
    while (taken < FRAMES && mono_now_us() < deadline) {
        size_t before = taken;
        assert_int_equal(
            spstream_rbuf_read_now(&r, in, quick, false, SPFRAME_PUSH0, 2000, take_count, &taken),
            SPSTREAM_OK);
        /* At most 4 reads of 4 KiB: at most 16 frames of ~1 KiB. */
        assert_true(taken - before <= SPSTREAM_READS_PER_WAKE * 4096 / 1000);
        calls++;
    }
    assert_int_equal(taken, FRAMES);
    assert_true(calls >= FRAMES / (SPSTREAM_READS_PER_WAKE * 4096 / 1000));

    spstream_rbuf_free(&r);
    nng_stream_free(in);
    nng_stream_free(out);
    nng_aio_free(quick);
    nng_stream_listener_free(ln);
}

/* A pair1 link that reads on an rxpoll pool: frames arrive whole and in
 * order once the handshake is in (read by NNG), and the link stops while
 * its socket is watched. */
static void test_link_reads_on_pool(void **state)
{
    (void)state;
    nng_stream_listener *ln = NULL;
    nng_aio *aio = NULL;
    char url[64];
    listen_and_accept(&ln, &aio, url, sizeof(url));

    struct rxpoll *rx = NULL;
    struct tally_err err = {0};
    assert_int_equal(rxpoll_start(1, "test-rx", &rx, &err), 0);
    struct got_frames g = {.next = 0};
    pthread_mutex_init(&g.mtx, NULL);
    struct spstream_link_opts o = {.url = url,
                                   .self = SPFRAME_PAIR1,
                                   .peer = SPFRAME_PAIR1,
                                   .on_frame = take_counted,
                                   .max_body = 4096,
                                   .ctx = &g,
                                   .rx = rx};
    struct spstream_link *l = NULL;
    assert_int_equal(spstream_link_start(&o, &l, &err), 0);
    nng_aio_wait(aio);
    assert_int_equal(nng_aio_result(aio), 0);
    nng_stream *s = nng_aio_get_output(aio, 0);

    uint8_t hs[SPFRAME_HANDSHAKE];
    spframe_handshake(hs, SPFRAME_PAIR1);
    assert_int_equal(stream_send_all(s, hs, sizeof(hs)), 0);
    uint64_t deadline = mono_now_us() + 10000000;
    while (!spstream_link_connected(l) && mono_now_us() < deadline)
        nng_msleep(1);
    assert_true(spstream_link_connected(l));

    /* 100 frames of 3,000 bytes, several per write, some cut across writes. */
    static uint8_t wire[100 * (SPFRAME_MAX_HEADER + 3000)];
    size_t len = 0;
    for (uint32_t i = 0; i < 100; i++) {
        uint8_t body[3000] = {0};
        memcpy(body, &i, sizeof(i));
        body[sizeof(body) - 1] = (uint8_t)i;
        len += spframe_header(wire + len, sizeof(body), true);
        memcpy(wire + len, body, sizeof(body));
        len += sizeof(body);
    }
    for (size_t off = 0; off < len; off += 7001)
        assert_int_equal(stream_send_all(s, wire + off, len - off < 7001 ? len - off : 7001), 0);
    deadline = mono_now_us() + 10000000;
    for (;;) {
        pthread_mutex_lock(&g.mtx);
        bool done = g.next >= 100 || g.bad;
        pthread_mutex_unlock(&g.mtx);
        if (done || mono_now_us() > deadline)
            break;
        nng_msleep(1);
    }
    assert_false(g.bad);
    assert_int_equal(g.next, 100);

    spstream_link_stop(l); /* its socket is watched now: the stop must end that read */
    rxpoll_stop(rx);
    rxpoll_free(rx);
    pthread_mutex_destroy(&g.mtx);
    nng_stream_free(s);
    nng_aio_free(aio);
    nng_stream_listener_free(ln);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_requeue_unsent),
        cmocka_unit_test(test_rbuf_pause_and_resume),
        cmocka_unit_test(test_link_through_full_socket),
        cmocka_unit_test(test_link_reads_on_pool),
        cmocka_unit_test(test_read_now_is_capped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
