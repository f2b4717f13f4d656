/* Reading NNG streams on our own threads (src/rxpoll.c): finding a TCP
 * stream's descriptor, a read of what is there (and of nothing), and a watch
 * that fires on a pool thread for bytes and for a hang-up. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>

#include "src/mono.h"
#include "src/rxpoll.h"
#include "tests/helpers/stream_pair.h"

static void test_stream_fd(void **state)
{
    (void)state;
    nng_stream_listener *ln = NULL;
    nng_stream *a = NULL, *b = NULL;
    assert_int_equal(stream_pair(&ln, &a, &b), 0);
    int fa = rxpoll_stream_fd(a), fb = rxpoll_stream_fd(b);
    assert_true(fa >= 0);
    assert_true(fb >= 0);
    assert_int_not_equal(fa, fb);
    /* The right sockets: what a writes to its descriptor, b reads. */
    assert_int_equal(write(fa, "x", 1), 1);
    char c = 0;
    nng_aio *aio = NULL;
    assert_int_equal(nng_aio_alloc(&aio, NULL, NULL), 0);
    nng_iov iov = {.iov_buf = &c, .iov_len = 1};
    assert_int_equal(nng_aio_set_iov(aio, 1, &iov), 0);
    nng_aio_set_timeout(aio, 10000);
    nng_stream_recv(b, aio);
    nng_aio_wait(aio);
    assert_int_equal(nng_aio_result(aio), 0);
    assert_int_equal(c, 'x');
    nng_aio_free(aio);
    nng_stream_free(a);
    nng_stream_free(b);
    nng_stream_listener_free(ln);

    /* Not TCP: not ours to place. */
    char url[96];
    snprintf(url, sizeof(url), "ipc:///tmp/tally-rxpoll-test-%d", (int)getpid());
    nng_stream_listener *il = NULL;
    nng_stream_dialer *id = NULL;
    nng_aio *acc = NULL, *dial = NULL;
    assert_int_equal(nng_stream_listener_alloc(&il, url), 0);
    assert_int_equal(nng_stream_listener_listen(il), 0);
    assert_int_equal(nng_stream_dialer_alloc(&id, url), 0);
    assert_int_equal(nng_aio_alloc(&acc, NULL, NULL), 0);
    assert_int_equal(nng_aio_alloc(&dial, NULL, NULL), 0);
    nng_aio_set_timeout(acc, 10000);
    nng_aio_set_timeout(dial, 10000);
    nng_stream_listener_accept(il, acc);
    nng_stream_dialer_dial(id, dial);
    nng_aio_wait(dial);
    nng_aio_wait(acc);
    assert_int_equal(nng_aio_result(dial), 0);
    assert_int_equal(nng_aio_result(acc), 0);
    nng_stream *ia = nng_aio_get_output(dial, 0), *ib = nng_aio_get_output(acc, 0);
    assert_int_equal(rxpoll_stream_fd(ia), -1);
    assert_int_equal(rxpoll_stream_fd(ib), -1);
    nng_stream_free(ia);
    nng_stream_free(ib);
    nng_aio_free(acc);
    nng_aio_free(dial);
    nng_stream_dialer_free(id);
    nng_stream_listener_free(il);
}

/* What a watch's ready callback saw, read on the pool thread. */
struct seen {
    pthread_mutex_t mtx;
    nng_stream *s;
    nng_aio *quick;
    char buf[64];
    size_t have;
    int calls, hangups, last_rv;
};

static void on_ready(void *ctx, bool hangup)
{
    struct seen *z = ctx;
    nng_iov iov = {.iov_buf = z->buf + z->have, .iov_len = sizeof(z->buf) - z->have};
    size_t got = 0;
    int rv = nng_aio_set_iov(z->quick, 1, &iov) == 0 ? rxpoll_read_now(z->s, z->quick, &got) : -1;
    pthread_mutex_lock(&z->mtx);
    z->have += got;
    z->calls++;
    z->hangups += hangup;
    z->last_rv = rv;
    pthread_mutex_unlock(&z->mtx);
}

/* Poll (with a deadline) until z has had `calls` calls. */
static bool wait_calls(struct seen *z, int calls)
{
    uint64_t deadline = mono_now_ms() + 10000;
    for (;;) {
        pthread_mutex_lock(&z->mtx);
        bool done = z->calls >= calls;
        pthread_mutex_unlock(&z->mtx);
        if (done || mono_now_ms() > deadline)
            return done;
        nng_msleep(1);
    }
}

static void test_watch_reads_and_hangs_up(void **state)
{
    (void)state;
    nng_stream_listener *ln = NULL;
    nng_stream *a = NULL, *b = NULL;
    assert_int_equal(stream_pair(&ln, &a, &b), 0);
    struct rxpoll *p = NULL;
    struct tally_err err = {0};
    assert_int_equal(rxpoll_start(2, "test-rx", &p, &err), 0);

    struct seen z = {.s = b};
    pthread_mutex_init(&z.mtx, NULL);
    assert_int_equal(nng_aio_alloc(&z.quick, NULL, NULL), 0);

    /* Nothing there: a read now says so at once. */
    nng_iov iov = {.iov_buf = z.buf, .iov_len = sizeof(z.buf)};
    assert_int_equal(nng_aio_set_iov(z.quick, 1, &iov), 0);
    size_t got = 99;
    assert_int_equal(rxpoll_read_now(b, z.quick, &got), NNG_ECANCELED);
    assert_int_equal(got, 0);

    struct rxpoll_watch w = {.fd = rxpoll_stream_fd(b), .ready = on_ready, .ctx = &z};
    assert_true(w.fd >= 0);
    assert_int_equal(rxpoll_arm(p, &w), 0);
    assert_int_equal(stream_send_all(a, "hello", 5), 0);
    assert_true(wait_calls(&z, 1));
    assert_int_equal(z.last_rv, 0);
    assert_int_equal(z.have, 5);
    assert_memory_equal(z.buf, "hello", 5);

    /* Armed again: the next bytes fire it once more. */
    assert_int_equal(rxpoll_arm(p, &w), 0);
    assert_int_equal(stream_send_all(a, " world", 6), 0);
    assert_true(wait_calls(&z, 2));
    assert_int_equal(z.have, 11);
    assert_memory_equal(z.buf, "hello world", 11);

    /* The other side goes away: it fires as a hang-up, and the read fails. */
    assert_int_equal(rxpoll_arm(p, &w), 0);
    nng_stream_free(a);
    assert_true(wait_calls(&z, 3));
    assert_int_equal(z.hangups, 1);
    assert_int_not_equal(z.last_rv, 0);

    rxpoll_stop(p);
    rxpoll_forget(p, &w);
    assert_false(w.added);
    rxpoll_free(p);
    nng_aio_free(z.quick);
    pthread_mutex_destroy(&z.mtx);
    nng_stream_free(b);
    nng_stream_listener_free(ln);
}

static void test_bad_thread_counts(void **state)
{
    (void)state;
    struct rxpoll *p = NULL;
    struct tally_err err = {0};
    assert_int_not_equal(rxpoll_start(0, "x", &p, &err), 0);
    assert_int_not_equal(rxpoll_start(RXPOLL_MAX_THREADS + 1, "x", &p, &err), 0);
    struct rxpoll_watch w = {.fd = -1};
    assert_int_equal(rxpoll_start(1, "x", &p, &err), 0);
    assert_int_equal(rxpoll_arm(p, &w), -1); /* nothing to watch */
    rxpoll_stop(p);
    rxpoll_stop(p); /* twice is fine */
    rxpoll_free(p);
    rxpoll_stop(NULL);
    rxpoll_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_fd),
        cmocka_unit_test(test_watch_reads_and_hangs_up),
        cmocka_unit_test(test_bad_thread_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
