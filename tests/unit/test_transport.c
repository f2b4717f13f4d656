/* The replica's transport (src/transport.c), client side: with two client
 * threads, each connection's messages reach on_recv one at a time and in the
 * order they were sent (a client's transactions of one account carry
 * consecutive nonces), while two connections are still handled in
 * parallel. Clients are stock NNG pair1 sockets on 127.0.0.1. */
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/pair1/pair.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>

#include "src/mono.h"
#include "src/transport.h"

#define CLIENTS 2
#define MSGS_PER_CLIENT 1500
#define BIG_BYTES 2600 /* over the transport's inline limit: queued for a client thread */
#define SMALL_BYTES 64 /* may be handled inline on the reading thread */
#define DEADLINE_MS 30000

struct received {
    pthread_mutex_t mtx;
    uint32_t next[CLIENTS]; /* the sequence number expected next, per client */
    uint32_t out_of_order, bad;
    atomic_uint total;
    atomic_uint inside, most_inside; /* on_recv calls running at once */
};

/* A few tens of microseconds of work, different per message, so that two
 * threads handling one connection would overtake each other. */
static void busy_for_us(uint64_t us)
{
    uint64_t until = mono_now_us() + us;
    while (mono_now_us() < until) {
    }
}

static bool on_recv(void *ctx, enum transport_origin origin, uint32_t pipe, nng_msg *msg)
{
    struct received *r = ctx;
    (void)origin;
    (void)pipe;
    unsigned in = atomic_fetch_add(&r->inside, 1) + 1;
    unsigned most = atomic_load(&r->most_inside);
    while (in > most && !atomic_compare_exchange_weak(&r->most_inside, &most, in)) {
    }
    uint32_t client = UINT32_MAX, seq = 0;
    if (nng_msg_len(msg) >= 8) {
        const uint8_t *b = nng_msg_body(msg);
        client = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        seq = (uint32_t)b[4] << 24 | (uint32_t)b[5] << 16 | (uint32_t)b[6] << 8 | b[7];
    }
    busy_for_us((seq * 7u) % 60u);
    pthread_mutex_lock(&r->mtx);
    if (client >= CLIENTS)
        r->bad++;
    else if (seq != r->next[client])
        r->out_of_order++;
    if (client < CLIENTS)
        r->next[client] = seq + 1;
    pthread_mutex_unlock(&r->mtx);
    atomic_fetch_sub(&r->inside, 1);
    atomic_fetch_add(&r->total, 1);
    nng_msg_free(msg);
    return true;
}

static struct transport_opts opts_for(const char *peer_url, const char *client_url,
                                      struct received *r, unsigned client_threads)
{
    return (struct transport_opts){.self = 0,
                                   .n = 1,
                                   .peer_listen = peer_url,
                                   .client_listen = client_url,
                                   .max_message_bytes = 1u << 20,
                                   .on_recv = on_recv,
                                   .ctx = r,
                                   .client_threads = client_threads};
}

/* A port of 127.0.0.1 that was free a moment ago. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

struct sender {
    nng_socket s;
    uint32_t client;
    int failed;
};

static void *send_all(void *arg)
{
    struct sender *sd = arg;
    static uint8_t buf[CLIENTS][BIG_BYTES];
    uint8_t *b = buf[sd->client];
    for (uint32_t seq = 0; seq < MSGS_PER_CLIENT; seq++) {
        memset(b, 0x5a, BIG_BYTES);
        uint32_t fields[2] = {sd->client, seq};
        for (int f = 0; f < 2; f++)
            for (int k = 0; k < 4; k++)
                b[f * 4 + k] = (uint8_t)(fields[f] >> (24 - 8 * k));
        size_t len = seq % 5 == 0 ? SMALL_BYTES : BIG_BYTES;
        if (nng_send(sd->s, b, len, 0) != 0) {
            sd->failed = 1;
            break;
        }
    }
    return NULL;
}

static void test_client_order_with_two_threads(void **state)
{
    (void)state;
    struct received r = {0};
    assert_int_equal(pthread_mutex_init(&r.mtx, NULL), 0);
    char peer_url[64], client_url[64];
    snprintf(peer_url, sizeof(peer_url), "tcp://127.0.0.1:%d", free_port());
    snprintf(client_url, sizeof(client_url), "tcp://127.0.0.1:%d", free_port());
    struct transport_opts o = opts_for(peer_url, client_url, &r, 2);
    struct transport *t = NULL;
    struct tally_err err = {0};
    assert_int_equal(transport_start(&o, &t, &err), 0);

    struct sender sd[CLIENTS];
    pthread_t th[CLIENTS];
    for (uint32_t i = 0; i < CLIENTS; i++) {
        sd[i] = (struct sender){.client = i};
        assert_int_equal(nng_pair1_open(&sd[i].s), 0);
        assert_int_equal(nng_socket_set_ms(sd[i].s, NNG_OPT_SENDTIMEO, DEADLINE_MS), 0);
        assert_int_equal(nng_dial(sd[i].s, client_url, NULL, 0), 0);
    }
    for (uint32_t i = 0; i < CLIENTS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, send_all, &sd[i]), 0);
    for (uint32_t i = 0; i < CLIENTS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(sd[i].failed, 0);
    }
    uint64_t deadline = mono_now_ms() + DEADLINE_MS;
    while (atomic_load(&r.total) < CLIENTS * MSGS_PER_CLIENT && mono_now_ms() < deadline)
        nng_msleep(2);

    assert_int_equal(atomic_load(&r.total), CLIENTS * MSGS_PER_CLIENT);
    assert_int_equal(r.bad, 0);
    assert_int_equal(r.out_of_order, 0);
    for (uint32_t i = 0; i < CLIENTS; i++)
        assert_int_equal(r.next[i], MSGS_PER_CLIENT);
    /* Different connections still went to both threads at once. */
    assert_int_equal(atomic_load(&r.most_inside), 2);

    for (uint32_t i = 0; i < CLIENTS; i++)
        nng_close(sd[i].s);
    transport_stop(t);
    pthread_mutex_destroy(&r.mtx);
}

static void test_bad_client_threads(void **state)
{
    (void)state;
    struct received r = {0};
    struct transport_opts o = opts_for("tcp://127.0.0.1:1", "tcp://127.0.0.1:2", &r, 3);
    struct transport *t = NULL;
    struct tally_err err = {0};
    assert_int_equal(transport_start(&o, &t, &err), TALLY_EINVAL);
    assert_null(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_order_with_two_threads),
        cmocka_unit_test(test_bad_client_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
