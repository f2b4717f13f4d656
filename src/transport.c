/* Transport over NNG: see transport.h for the socket layout. */
#include "src/transport.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <nng/protocol/pair1/pair.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>

#include "src/log.h"

#define TRANSPORT_RECONN_MIN_MS 20
#define TRANSPORT_RECONN_MAX_MS 500

struct transport;

struct transport_peer {
    struct transport *t;
    uint32_t id;
    bool open;
    nng_socket sock; /* push0, dials the peer */
    atomic_int pipes;
};

struct transport {
    struct transport_opts o;
    nng_socket peer_in;   /* pull0 listener */
    nng_socket client_in; /* pair1 poly listener */
    bool peer_in_open, client_in_open;
    struct transport_peer peers[TRANSPORT_MAX_PEERS];
    pthread_t threads[2 * TRANSPORT_MAX_RECV_THREADS];
    unsigned nthreads;
    atomic_uint_fast64_t peer_sent, peer_send_dropped;
    atomic_uint_fast64_t client_sent, client_send_dropped;
    atomic_uint_fast64_t peer_received, client_received;
    atomic_uint_fast64_t peer_closed, client_closed;
};

static void peer_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    (void)p;
    struct transport_peer *peer = arg;
    if (ev == NNG_PIPE_EV_ADD_POST) {
        atomic_fetch_add(&peer->pipes, 1);
        LOG_INFO("L0301", "connected to replica %u", peer->id);
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        atomic_fetch_sub(&peer->pipes, 1);
        LOG_INFO("L0302", "disconnected from replica %u", peer->id);
    }
}

/* Buffers and limits shared by the sockets. */
static int set_socket_opts(nng_socket s, size_t max_recv, bool send_side)
{
    int rv = nng_socket_set_int(s, NNG_OPT_RECVBUF, TRANSPORT_BUFFER_MSGS);
    if (rv == 0 && send_side)
        rv = nng_socket_set_int(s, NNG_OPT_SENDBUF, TRANSPORT_BUFFER_MSGS);
    if (rv == 0 && max_recv > 0)
        rv = nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, max_recv);
    if (rv == 0)
        rv = nng_socket_set_ms(s, NNG_OPT_RECONNMINT, TRANSPORT_RECONN_MIN_MS);
    if (rv == 0)
        rv = nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, TRANSPORT_RECONN_MAX_MS);
    return rv;
}

static void recv_loop(struct transport *t, nng_socket s, enum transport_origin origin)
{
    for (;;) {
        nng_msg *msg = NULL;
        int rv = nng_recvmsg(s, &msg, 0);
        if (rv == NNG_ECLOSED)
            break;
        if (rv != 0)
            continue;
        nng_pipe p = nng_msg_get_pipe(msg);
        atomic_fetch_add(origin == TRANSPORT_FROM_CLIENT ? &t->client_received : &t->peer_received,
                         1);
        if (!t->o.on_recv(t->o.ctx, origin, (uint32_t)nng_pipe_id(p), msg)) {
            atomic_fetch_add(origin == TRANSPORT_FROM_CLIENT ? &t->client_closed : &t->peer_closed,
                             1);
            nng_pipe_close(p);
        }
    }
}

static void *peer_recv_main(void *arg)
{
    struct transport *t = arg;
    recv_loop(t, t->peer_in, TRANSPORT_FROM_PEER);
    return NULL;
}

static void *client_recv_main(void *arg)
{
    struct transport *t = arg;
    recv_loop(t, t->client_in, TRANSPORT_FROM_CLIENT);
    return NULL;
}

int transport_start(const struct transport_opts *o, struct transport **out, struct tally_err *err)
{
    int rc = TALLY_OK, rv;
    if (o->n == 0 || o->n > TRANSPORT_MAX_PEERS || o->self >= o->n || o->on_recv == NULL ||
        o->recv_threads == 0 || o->recv_threads > TRANSPORT_MAX_RECV_THREADS)
        return tally_errf(err, TALLY_EINVAL, "transport: bad options");
    struct transport *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return tally_errf(err, TALLY_ENOMEM, "transport: out of memory");
    t->o = *o;

    if ((rv = nng_pull0_open(&t->peer_in)) != 0) {
        rc = tally_errf(err, TALLY_EIO, "opening peer socket: %s", nng_strerror(rv));
        goto fail;
    }
    t->peer_in_open = true;
    if ((rv = set_socket_opts(t->peer_in, o->max_message_bytes, false)) != 0) {
        rc = tally_errf(err, TALLY_EIO, "peer socket options: %s", nng_strerror(rv));
        goto fail;
    }
    if ((rv = nng_listen(t->peer_in, o->peer_listen, NULL, 0)) != 0) {
        rc = tally_errf(err, TALLY_EIO, "listening on peer address %s: %s", o->peer_listen,
                        nng_strerror(rv));
        goto fail;
    }

    if ((rv = nng_pair1_open_poly(&t->client_in)) != 0) {
        rc = tally_errf(err, TALLY_EIO, "opening client socket: %s", nng_strerror(rv));
        goto fail;
    }
    t->client_in_open = true;
    if ((rv = set_socket_opts(t->client_in, o->max_message_bytes, true)) != 0) {
        rc = tally_errf(err, TALLY_EIO, "client socket options: %s", nng_strerror(rv));
        goto fail;
    }
    if ((rv = nng_listen(t->client_in, o->client_listen, NULL, 0)) != 0) {
        rc = tally_errf(err, TALLY_EIO, "listening on client address %s: %s", o->client_listen,
                        nng_strerror(rv));
        goto fail;
    }

    for (uint32_t i = 0; i < o->n; i++) {
        struct transport_peer *p = &t->peers[i];
        p->t = t;
        p->id = i;
        atomic_init(&p->pipes, 0);
        if (i == o->self)
            continue;
        if ((rv = nng_push0_open(&p->sock)) != 0) {
            rc = tally_errf(err, TALLY_EIO, "opening socket toward replica %u: %s", i,
                            nng_strerror(rv));
            goto fail;
        }
        p->open = true;
        if ((rv = set_socket_opts(p->sock, 0, true)) != 0 ||
            (rv = nng_pipe_notify(p->sock, NNG_PIPE_EV_ADD_POST, peer_pipe_cb, p)) != 0 ||
            (rv = nng_pipe_notify(p->sock, NNG_PIPE_EV_REM_POST, peer_pipe_cb, p)) != 0) {
            rc = tally_errf(err, TALLY_EIO, "socket toward replica %u: %s", i, nng_strerror(rv));
            goto fail;
        }
        /* Non-blocking dial: NNG keeps retrying in the background. */
        if ((rv = nng_dial(p->sock, o->peer_addrs[i], NULL, NNG_FLAG_NONBLOCK)) != 0) {
            rc = tally_errf(err, TALLY_EIO, "dialing replica %u at %s: %s", i, o->peer_addrs[i],
                            nng_strerror(rv));
            goto fail;
        }
    }

    for (unsigned i = 0; i < 2 * o->recv_threads; i++) {
        if (pthread_create(&t->threads[i], NULL, i % 2 == 0 ? peer_recv_main : client_recv_main,
                           t) != 0) {
            rc = tally_errf(err, TALLY_EIO, "starting a receive thread");
            goto fail;
        }
        t->nthreads++;
    }
    *out = t;
    return TALLY_OK;

fail:
    transport_stop(t);
    return rc;
}

void transport_stop(struct transport *t)
{
    if (t == NULL)
        return;
    if (t->peer_in_open)
        nng_close(t->peer_in);
    if (t->client_in_open)
        nng_close(t->client_in);
    for (uint32_t i = 0; i < t->o.n; i++)
        if (t->peers[i].open)
            nng_close(t->peers[i].sock);
    for (unsigned i = 0; i < t->nthreads; i++)
        pthread_join(t->threads[i], NULL);
    free(t);
}

void transport_send_peer(struct transport *t, uint32_t to, const uint8_t *bytes, size_t len)
{
    if (to >= t->o.n || to == t->o.self || !t->peers[to].open)
        return;
    int rv = nng_send(t->peers[to].sock, (void *)bytes, len, NNG_FLAG_NONBLOCK);
    if (rv == 0)
        atomic_fetch_add(&t->peer_sent, 1);
    else
        atomic_fetch_add(&t->peer_send_dropped, 1);
}

void transport_broadcast(struct transport *t, const uint8_t *bytes, size_t len)
{
    for (uint32_t i = 0; i < t->o.n; i++)
        if (i != t->o.self)
            transport_send_peer(t, i, bytes, len);
}

void transport_send_client(struct transport *t, uint32_t pipe, const uint8_t *bytes, size_t len)
{
    nng_msg *msg = NULL;
    if (nng_msg_alloc(&msg, len) != 0) {
        atomic_fetch_add(&t->client_send_dropped, 1);
        return;
    }
    memcpy(nng_msg_body(msg), bytes, len);
    nng_pipe p = NNG_PIPE_INITIALIZER;
    p.id = pipe;
    nng_msg_set_pipe(msg, p);
    if (nng_sendmsg(t->client_in, msg, NNG_FLAG_NONBLOCK) != 0) {
        nng_msg_free(msg); /* ownership stays with us on failure */
        atomic_fetch_add(&t->client_send_dropped, 1);
        return;
    }
    atomic_fetch_add(&t->client_sent, 1);
}

uint32_t transport_peers_connected(const struct transport *t)
{
    uint32_t c = 0;
    for (uint32_t i = 0; i < t->o.n; i++)
        if (i != t->o.self && atomic_load(&t->peers[i].pipes) > 0)
            c++;
    return c;
}

int transport_peer_is_connected(const struct transport *t, uint32_t id)
{
    if (id >= t->o.n || id == t->o.self)
        return 0;
    return atomic_load(&t->peers[id].pipes) > 0;
}

void transport_get_stats(const struct transport *t, struct transport_stats *out)
{
    struct transport *m = (struct transport *)t;
    out->peer_sent = atomic_load(&m->peer_sent);
    out->peer_send_dropped = atomic_load(&m->peer_send_dropped);
    out->client_sent = atomic_load(&m->client_sent);
    out->client_send_dropped = atomic_load(&m->client_send_dropped);
    out->peer_received = atomic_load(&m->peer_received);
    out->client_received = atomic_load(&m->client_received);
    out->peer_closed = atomic_load(&m->peer_closed);
    out->client_closed = atomic_load(&m->client_closed);
}
