/* Transport on NNG streams: see transport.h for the layout and
 * src/spframe.h for the bytes. Locking: a peer link's fields are under its
 * mtx; a connection's send side and flags under its mtx, its receive buffer
 * belongs to its read callback; the slot table and the dead list are under
 * conn_mtx, which is taken before a connection's mtx, never after. */
#include "src/transport.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "src/log.h"
#include "src/spframe.h"

#define TRANSPORT_RECONN_MIN_MS 20
#define TRANSPORT_RECONN_MAX_MS 500
#define TRANSPORT_RECV_CHUNK (64u * 1024u)
#define TRANSPORT_MAX_CONNS 1024 /* peer and client connections accepted at once */
#define TRANSPORT_SEND_BYTES (64u * 1024u * 1024u) /* queued toward one peer */
#define TRANSPORT_DEFAULT_MAX_MSG (64u * 1024u * 1024u)

struct transport;

/* A growable byte buffer. */
struct tbuf {
    uint8_t *data;
    size_t len, cap;
};

static int tbuf_reserve(struct tbuf *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

/* Frames waiting for a stream, and the ones being written. Under its
 * owner's mutex. pending fills while inflight is written; when the write
 * completes they swap, so everything queued meanwhile goes in one write. */
struct sendq {
    struct tbuf pending, inflight;
    size_t inflight_off, pending_msgs;
    bool sending;
};

/* Queue one frame: its header (or a handshake) and body. */
static bool sendq_push(struct sendq *q, const uint8_t *hdr, size_t hlen, const uint8_t *body,
                       size_t len)
{
    if (q->pending_msgs >= TRANSPORT_BUFFER_MSGS ||
        q->pending.len + hlen + len > TRANSPORT_SEND_BYTES ||
        tbuf_reserve(&q->pending, hlen + len) != 0)
        return false;
    memcpy(q->pending.data + q->pending.len, hdr, hlen);
    if (len > 0)
        memcpy(q->pending.data + q->pending.len + hlen, body, len);
    q->pending.len += hlen + len;
    q->pending_msgs++;
    return true;
}

static bool sendq_has_work(const struct sendq *q)
{
    return q->inflight.len > 0 || q->pending.len > 0;
}

/* Start writing (the rest of) inflight, or else everything pending. */
static int sendq_start(struct sendq *q, nng_stream *stream, nng_aio *aio)
{
    if (q->inflight.len == 0) {
        struct tbuf b = q->inflight;
        q->inflight = q->pending;
        q->pending = b;
        q->pending.len = 0;
        q->pending_msgs = 0;
        q->inflight_off = 0;
    }
    nng_iov iov = {.iov_buf = q->inflight.data + q->inflight_off,
                   .iov_len = q->inflight.len - q->inflight_off};
    if (nng_aio_set_iov(aio, 1, &iov) != 0)
        return -1;
    q->sending = true;
    nng_stream_send(stream, aio);
    return 0;
}

/* A write of n bytes completed. */
static void sendq_wrote(struct sendq *q, size_t n)
{
    q->sending = false;
    q->inflight_off += n;
    if (q->inflight_off >= q->inflight.len) {
        q->inflight.len = 0;
        q->inflight_off = 0;
    }
}

/* The stream is gone: what was being written is lost (pending stays). */
static void sendq_drop_inflight(struct sendq *q)
{
    q->sending = false;
    q->inflight.len = 0;
    q->inflight_off = 0;
}

static void sendq_free(struct sendq *q)
{
    free(q->pending.data);
    free(q->inflight.data);
}

/* ---- outbound: one stream toward each other replica ---------------------- */

struct peer_link {
    struct transport *t;
    uint32_t id;
    nng_stream_dialer *dialer;
    nng_aio *dial_aio, *sleep_aio, *send_aio, *watch_aio;
    pthread_mutex_t mtx;
    bool mtx_ok;
    /* Under mtx: */
    nng_stream *stream; /* NULL when not connected */
    bool watching, closing, stopping;
    bool hs_ok; /* the peer's handshake arrived and is pull0's */
    struct sendq q;
    uint8_t watch_buf[SPFRAME_HANDSHAKE];
    size_t watch_have;
    nng_duration backoff;
    atomic_bool connected;
};

/* ---- inbound: connections accepted on a listener ---------------------------
 *
 * Peer connections (pull0 side) only read after the handshake; client
 * connections (pair1) also carry replies, queued like a peer link's. */

struct listener;

struct in_conn {
    struct listener *ln;
    uint32_t id;
    nng_stream *stream;
    nng_aio *recv_aio, *send_aio;
    uint8_t *buf; /* received, not yet delivered; only the read callback touches it */
    size_t cap, have;
    bool got_hs;
    pthread_mutex_t mtx;
    /* Under mtx: */
    bool reading, closing;
    struct sendq q;
    /* Under the transport's conn_mtx: */
    bool dead;
    struct in_conn *next;
};

struct listener {
    struct transport *t;
    enum transport_origin origin;
    enum spframe_proto self_proto, peer_proto;
    nng_stream_listener *l;
    nng_aio *accept_aio;
};

struct transport {
    struct transport_opts o;
    size_t max_frame;
    struct listener peer_ln, client_ln;
    pthread_mutex_t conn_mtx;
    bool conn_mtx_ok;
    /* Under conn_mtx: */
    struct in_conn *slots[TRANSPORT_MAX_CONNS]; /* live connections, by id % TRANSPORT_MAX_CONNS */
    struct in_conn *dead;                       /* ended, to be freed */
    unsigned nlive;
    bool stopping;
    uint32_t next_conn_id, conn_generation;
    struct peer_link peers[TRANSPORT_MAX_PEERS];
    atomic_uint_fast64_t peer_sent, peer_send_dropped;
    atomic_uint_fast64_t client_sent, client_send_dropped;
    atomic_uint_fast64_t peer_received, client_received;
    atomic_uint_fast64_t peer_closed, client_closed;
    atomic_uint_fast64_t peer_bad_frames, client_bad_frames;
};

/* ---- outbound links -------------------------------------------------------- */

static void link_schedule_redial(struct peer_link *l)
{
    if (l->stopping)
        return;
    nng_sleep_aio(l->backoff, l->sleep_aio);
    l->backoff *= 2;
    if (l->backoff > TRANSPORT_RECONN_MAX_MS)
        l->backoff = TRANSPORT_RECONN_MAX_MS;
}

/* Once nothing is in flight on a failed stream, free it and dial again. */
static void link_reap_if_idle(struct peer_link *l)
{
    if (!l->closing || l->q.sending || l->watching)
        return;
    nng_stream_free(l->stream);
    l->stream = NULL;
    l->closing = false;
    sendq_drop_inflight(&l->q);
    link_schedule_redial(l);
}

static void link_fail(struct peer_link *l)
{
    if (l->stream == NULL || l->closing)
        return;
    l->closing = true;
    if (atomic_exchange(&l->connected, false))
        LOG_INFO("L0302", "disconnected from replica %u", l->id);
    nng_stream_close(l->stream); /* completes the send and watch with errors */
    link_reap_if_idle(l);
}

static void link_start_send(struct peer_link *l)
{
    if (sendq_start(&l->q, l->stream, l->send_aio) != 0)
        link_fail(l);
}

static void link_send_cb(void *arg)
{
    struct peer_link *l = arg;
    pthread_mutex_lock(&l->mtx);
    int rv = nng_aio_result(l->send_aio);
    sendq_wrote(&l->q, rv == 0 ? nng_aio_count(l->send_aio) : 0);
    if (rv != 0 || l->closing) {
        link_fail(l);
        link_reap_if_idle(l);
    } else if (sendq_has_work(&l->q)) {
        link_start_send(l);
    }
    pthread_mutex_unlock(&l->mtx);
}

static void link_watch(struct peer_link *l)
{
    nng_iov iov;
    if (!l->hs_ok)
        iov = (nng_iov){.iov_buf = l->watch_buf + l->watch_have,
                        .iov_len = SPFRAME_HANDSHAKE - l->watch_have};
    else
        iov = (nng_iov){.iov_buf = l->watch_buf, .iov_len = 1};
    if (nng_aio_set_iov(l->watch_aio, 1, &iov) != 0) {
        link_fail(l);
        return;
    }
    l->watching = true;
    nng_stream_recv(l->stream, l->watch_aio);
}

/* The read side of an outbound link: the pull0 handshake, then nothing (a
 * pull0 peer never sends); the read ends when the connection does. */
static void link_watch_cb(void *arg)
{
    struct peer_link *l = arg;
    pthread_mutex_lock(&l->mtx);
    l->watching = false;
    int rv = nng_aio_result(l->watch_aio);
    if (rv != 0 || l->closing || l->hs_ok) {
        if (rv == 0 && !l->closing)
            LOG_WARN("L0303", "replica %u sent data on a push link: closed", l->id);
        link_fail(l);
        link_reap_if_idle(l);
        pthread_mutex_unlock(&l->mtx);
        return;
    }
    l->watch_have += nng_aio_count(l->watch_aio);
    if (l->watch_have == SPFRAME_HANDSHAKE) {
        if (!spframe_handshake_ok(l->watch_buf, SPFRAME_PULL0)) {
            LOG_WARN("L0304", "replica %u's peer address did not answer as a pull0 listener",
                     l->id);
            link_fail(l);
            link_reap_if_idle(l);
            pthread_mutex_unlock(&l->mtx);
            return;
        }
        l->hs_ok = true;
        l->backoff = TRANSPORT_RECONN_MIN_MS;
        atomic_store(&l->connected, true);
        LOG_INFO("L0301", "connected to replica %u", l->id);
    }
    link_watch(l);
    pthread_mutex_unlock(&l->mtx);
}

static void link_dial_cb(void *arg)
{
    struct peer_link *l = arg;
    pthread_mutex_lock(&l->mtx);
    int rv = nng_aio_result(l->dial_aio);
    if (rv != 0) {
        link_schedule_redial(l);
        pthread_mutex_unlock(&l->mtx);
        return;
    }
    nng_stream *s = nng_aio_get_output(l->dial_aio, 0);
    if (l->stopping) {
        pthread_mutex_unlock(&l->mtx);
        nng_stream_free(s);
        return;
    }
    l->stream = s;
    l->closing = false;
    l->hs_ok = false;
    l->watch_have = 0;
    /* Our handshake goes first, then whatever was queued while away. */
    sendq_drop_inflight(&l->q);
    if (tbuf_reserve(&l->q.inflight, SPFRAME_HANDSHAKE) != 0) {
        link_fail(l);
        pthread_mutex_unlock(&l->mtx);
        return;
    }
    spframe_handshake(l->q.inflight.data, SPFRAME_PUSH0);
    l->q.inflight.len = SPFRAME_HANDSHAKE;
    link_start_send(l); /* the handshake now; the pending frames when it is out */
    if (l->stream != NULL && !l->closing)
        link_watch(l);
    pthread_mutex_unlock(&l->mtx);
}

static void link_sleep_cb(void *arg)
{
    struct peer_link *l = arg;
    pthread_mutex_lock(&l->mtx);
    if (!l->stopping && nng_aio_result(l->sleep_aio) == 0)
        nng_stream_dialer_dial(l->dialer, l->dial_aio);
    pthread_mutex_unlock(&l->mtx);
}

static int link_start(struct transport *t, uint32_t id, struct tally_err *err)
{
    struct peer_link *l = &t->peers[id];
    int rv;
    if (pthread_mutex_init(&l->mtx, NULL) != 0)
        return tally_errf(err, TALLY_EIO, "link toward replica %u: no mutex", id);
    l->mtx_ok = true;
    l->backoff = TRANSPORT_RECONN_MIN_MS;
    if ((rv = nng_aio_alloc(&l->dial_aio, link_dial_cb, l)) != 0 ||
        (rv = nng_aio_alloc(&l->sleep_aio, link_sleep_cb, l)) != 0 ||
        (rv = nng_aio_alloc(&l->send_aio, link_send_cb, l)) != 0 ||
        (rv = nng_aio_alloc(&l->watch_aio, link_watch_cb, l)) != 0)
        return tally_errf(err, TALLY_EIO, "link toward replica %u: %s", id, nng_strerror(rv));
    if ((rv = nng_stream_dialer_alloc(&l->dialer, t->o.peer_addrs[id])) != 0)
        return tally_errf(err, TALLY_EIO, "dialing replica %u at %s: %s", id, t->o.peer_addrs[id],
                          nng_strerror(rv));
    (void)nng_stream_dialer_set_bool(l->dialer, NNG_OPT_TCP_NODELAY, true);
    nng_stream_dialer_dial(l->dialer, l->dial_aio); /* retried in the background */
    return TALLY_OK;
}

static void link_stop(struct peer_link *l)
{
    if (!l->mtx_ok)
        return;
    pthread_mutex_lock(&l->mtx);
    l->stopping = true;
    if (l->stream != NULL)
        nng_stream_close(l->stream);
    pthread_mutex_unlock(&l->mtx);
    if (l->dialer != NULL)
        nng_stream_dialer_close(l->dialer);
    nng_aio *aios[] = {l->sleep_aio, l->dial_aio, l->send_aio, l->watch_aio};
    for (size_t i = 0; i < sizeof(aios) / sizeof(aios[0]); i++)
        if (aios[i] != NULL)
            nng_aio_stop(aios[i]);
    for (size_t i = 0; i < sizeof(aios) / sizeof(aios[0]); i++)
        if (aios[i] != NULL)
            nng_aio_free(aios[i]);
    if (l->stream != NULL)
        nng_stream_free(l->stream);
    if (l->dialer != NULL)
        nng_stream_dialer_free(l->dialer);
    sendq_free(&l->q);
    pthread_mutex_destroy(&l->mtx);
}

/* ---- inbound connections --------------------------------------------------- */

static void conn_free(struct in_conn *c)
{
    if (c->recv_aio != NULL)
        nng_aio_free(c->recv_aio); /* waits for its callback to return */
    if (c->send_aio != NULL)
        nng_aio_free(c->send_aio);
    if (c->stream != NULL)
        nng_stream_free(c->stream);
    pthread_mutex_destroy(&c->mtx);
    free(c->buf);
    sendq_free(&c->q);
    free(c);
}

/* Free the connections that have ended. Not from their own callbacks. */
static void conns_reap(struct transport *t)
{
    pthread_mutex_lock(&t->conn_mtx);
    struct in_conn *c = t->dead;
    t->dead = NULL;
    pthread_mutex_unlock(&t->conn_mtx);
    while (c != NULL) {
        struct in_conn *next = c->next;
        conn_free(c);
        c = next;
    }
}

/* Unlist c and leave it to the reaper. The caller saw it closing with
 * nothing in flight; c must not be touched afterwards. */
static void conn_retire(struct in_conn *c)
{
    struct transport *t = c->ln->t;
    pthread_mutex_lock(&t->conn_mtx);
    if (!c->dead) {
        c->dead = true;
        t->slots[c->id % TRANSPORT_MAX_CONNS] = NULL;
        t->nlive--;
        c->next = t->dead;
        t->dead = c;
    }
    pthread_mutex_unlock(&t->conn_mtx);
}

/* Under c->mtx: close the stream (what is in flight completes with an
 * error). Returns whether c is now idle, to be retired once unlocked. */
static bool conn_close_locked(struct in_conn *c)
{
    if (!c->closing) {
        c->closing = true;
        nng_stream_close(c->stream);
    }
    return !c->reading && !c->q.sending;
}

static void conn_start_send(struct in_conn *c)
{
    if (sendq_start(&c->q, c->stream, c->send_aio) != 0)
        (void)conn_close_locked(c); /* the read side retires it */
}

static void conn_send_cb(void *arg)
{
    struct in_conn *c = arg;
    bool retire = false;
    pthread_mutex_lock(&c->mtx);
    int rv = nng_aio_result(c->send_aio);
    sendq_wrote(&c->q, rv == 0 ? nng_aio_count(c->send_aio) : 0);
    if (rv != 0 || c->closing)
        retire = conn_close_locked(c);
    else if (sendq_has_work(&c->q))
        conn_start_send(c);
    pthread_mutex_unlock(&c->mtx);
    if (retire)
        conn_retire(c);
}

/* Queue one frame toward c (under c->mtx). */
static bool conn_queue_locked(struct in_conn *c, const uint8_t *bytes, size_t len)
{
    uint8_t hdr[SPFRAME_MAX_HEADER];
    size_t hlen = spframe_header(hdr, len, c->ln->origin == TRANSPORT_FROM_CLIENT);
    if (c->closing || !sendq_push(&c->q, hdr, hlen, bytes, len))
        return false;
    if (!c->q.sending)
        conn_start_send(c);
    return true;
}

/* Hand every whole frame in the buffer to on_recv. False: close. */
static bool conn_deliver(struct in_conn *c)
{
    struct transport *t = c->ln->t;
    bool pair = c->ln->origin == TRANSPORT_FROM_CLIENT;
    size_t off = 0;
    if (!c->got_hs) {
        if (c->have < SPFRAME_HANDSHAKE)
            return true;
        if (!spframe_handshake_ok(c->buf, c->ln->peer_proto)) {
            atomic_fetch_add(pair ? &t->client_bad_frames : &t->peer_bad_frames, 1);
            return false;
        }
        c->got_hs = true;
        off = SPFRAME_HANDSHAKE;
    }
    for (;;) {
        struct spframe_next f;
        enum spframe_status st = spframe_parse(c->buf + off, c->have - off, t->max_frame, pair, &f);
        if (st == SPFRAME_BAD) {
            atomic_fetch_add(pair ? &t->client_bad_frames : &t->peer_bad_frames, 1);
            return false;
        }
        if (st == SPFRAME_NEED) {
            if (f.need > c->cap) { /* grow for this one frame (bounded by max_frame) */
                memmove(c->buf, c->buf + off, c->have - off);
                c->have -= off;
                off = 0;
                uint8_t *p = realloc(c->buf, f.need);
                if (p == NULL)
                    return false;
                c->buf = p;
                c->cap = f.need;
            }
            break;
        }
        off += f.consumed;
        if (st == SPFRAME_SKIP)
            continue;
        nng_msg *msg = NULL;
        if (nng_msg_alloc(&msg, f.len) != 0)
            return false;
        memcpy(nng_msg_body(msg), f.body, f.len);
        atomic_fetch_add(pair ? &t->client_received : &t->peer_received, 1);
        if (!t->o.on_recv(t->o.ctx, c->ln->origin, c->id, msg)) {
            atomic_fetch_add(pair ? &t->client_closed : &t->peer_closed, 1);
            return false;
        }
    }
    if (off > 0) {
        memmove(c->buf, c->buf + off, c->have - off);
        c->have -= off;
    }
    if (c->have == 0 && c->cap > 4 * TRANSPORT_RECV_CHUNK) { /* give back a big frame's room */
        uint8_t *p = realloc(c->buf, TRANSPORT_RECV_CHUNK);
        if (p != NULL) {
            c->buf = p;
            c->cap = TRANSPORT_RECV_CHUNK;
        }
    }
    return true;
}

/* Under c->mtx: read what comes next. */
static void conn_read_locked(struct in_conn *c)
{
    nng_iov iov = {.iov_buf = c->buf + c->have, .iov_len = c->cap - c->have};
    if (c->closing || nng_aio_set_iov(c->recv_aio, 1, &iov) != 0) {
        (void)conn_close_locked(c);
        return;
    }
    c->reading = true;
    nng_stream_recv(c->stream, c->recv_aio);
}

static void conn_recv_cb(void *arg)
{
    struct in_conn *c = arg;
    bool ok = nng_aio_result(c->recv_aio) == 0;
    if (ok) { /* the buffer is ours alone while no read is posted */
        c->have += nng_aio_count(c->recv_aio);
        ok = conn_deliver(c);
    }
    pthread_mutex_lock(&c->mtx);
    c->reading = false;
    bool retire = false;
    if (ok && !c->closing)
        conn_read_locked(c);
    if (!ok || c->closing)
        retire = conn_close_locked(c);
    pthread_mutex_unlock(&c->mtx);
    if (retire)
        conn_retire(c);
}

static struct in_conn *conn_new(struct listener *ln, nng_stream *s)
{
    struct in_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->ln = ln;
    c->stream = s;
    if (pthread_mutex_init(&c->mtx, NULL) != 0) {
        free(c);
        return NULL;
    }
    if ((c->buf = malloc(TRANSPORT_RECV_CHUNK)) == NULL ||
        nng_aio_alloc(&c->recv_aio, conn_recv_cb, c) != 0 ||
        nng_aio_alloc(&c->send_aio, conn_send_cb, c) != 0) {
        c->stream = NULL; /* the caller still owns it */
        conn_free(c);
        return NULL;
    }
    c->cap = TRANSPORT_RECV_CHUNK;
    return c;
}

static void accept_cb(void *arg)
{
    struct listener *ln = arg;
    struct transport *t = ln->t;
    int rv = nng_aio_result(ln->accept_aio);
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
        return;
    conns_reap(t);
    if (rv != 0) {
        nng_stream_listener_accept(ln->l, ln->accept_aio);
        return;
    }
    nng_stream *s = nng_aio_get_output(ln->accept_aio, 0);
    struct in_conn *c = conn_new(ln, s);
    bool listed = false;
    pthread_mutex_lock(&t->conn_mtx);
    if (c != NULL && !t->stopping && t->nlive < TRANSPORT_MAX_CONNS) {
        /* A free slot; the id names the slot and how often it was used. */
        uint32_t slot = t->next_conn_id % TRANSPORT_MAX_CONNS;
        while (t->slots[slot] != NULL)
            slot = (slot + 1) % TRANSPORT_MAX_CONNS;
        uint32_t gen = ++t->conn_generation;
        c->id = gen * TRANSPORT_MAX_CONNS + slot;
        if (c->id == 0) /* 0 is no connection */
            c->id = (++t->conn_generation) * TRANSPORT_MAX_CONNS + slot;
        t->next_conn_id = slot + 1;
        t->slots[slot] = c;
        t->nlive++;
        listed = true;
    }
    pthread_mutex_unlock(&t->conn_mtx);
    if (!listed) {
        if (c != NULL) {
            c->stream = NULL;
            conn_free(c);
        }
        nng_stream_free(s);
        LOG_WARN("L0305", "refused a %s connection (%u open, or out of memory)",
                 ln->origin == TRANSPORT_FROM_PEER ? "peer" : "client", TRANSPORT_MAX_CONNS);
    } else {
        pthread_mutex_lock(&c->mtx);
        /* Our handshake first (a frame-less send), then read. */
        uint8_t hs[SPFRAME_HANDSHAKE];
        spframe_handshake(hs, ln->self_proto);
        if (sendq_push(&c->q, hs, sizeof(hs), NULL, 0)) {
            conn_start_send(c);
        } else {
            (void)conn_close_locked(c);
        }
        conn_read_locked(c);
        bool retire = c->closing && conn_close_locked(c);
        pthread_mutex_unlock(&c->mtx);
        if (retire)
            conn_retire(c);
    }
    nng_stream_listener_accept(ln->l, ln->accept_aio);
}

static int listener_start(struct transport *t, struct listener *ln, enum transport_origin origin,
                          const char *url, struct tally_err *err)
{
    const char *what = origin == TRANSPORT_FROM_PEER ? "peer" : "client";
    int rv;
    ln->t = t;
    ln->origin = origin;
    ln->self_proto = origin == TRANSPORT_FROM_PEER ? SPFRAME_PULL0 : SPFRAME_PAIR1;
    ln->peer_proto = origin == TRANSPORT_FROM_PEER ? SPFRAME_PUSH0 : SPFRAME_PAIR1;
    if ((rv = nng_aio_alloc(&ln->accept_aio, accept_cb, ln)) != 0 ||
        (rv = nng_stream_listener_alloc(&ln->l, url)) != 0)
        return tally_errf(err, TALLY_EIO, "%s address %s: %s", what, url, nng_strerror(rv));
    (void)nng_stream_listener_set_bool(ln->l, NNG_OPT_TCP_NODELAY, true);
    if ((rv = nng_stream_listener_listen(ln->l)) != 0)
        return tally_errf(err, TALLY_EIO, "listening on %s address %s: %s", what, url,
                          nng_strerror(rv));
    nng_stream_listener_accept(ln->l, ln->accept_aio);
    return TALLY_OK;
}

/* Stop accepting (the connections are ended by transport_stop). */
static void listener_stop(struct listener *ln)
{
    if (ln->l != NULL)
        nng_stream_listener_close(ln->l);
    if (ln->accept_aio != NULL) {
        nng_aio_stop(ln->accept_aio);
        nng_aio_free(ln->accept_aio);
    }
    if (ln->l != NULL)
        nng_stream_listener_free(ln->l);
}

/* ---- start and stop ------------------------------------------------------------- */

int transport_start(const struct transport_opts *o, struct transport **out, struct tally_err *err)
{
    int rc = TALLY_OK;
    if (o->n == 0 || o->n > TRANSPORT_MAX_PEERS || o->self >= o->n || o->on_recv == NULL)
        return tally_errf(err, TALLY_EINVAL, "transport: bad options");
    struct transport *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return tally_errf(err, TALLY_ENOMEM, "transport: out of memory");
    t->o = *o;
    t->max_frame = o->max_message_bytes > 0 ? o->max_message_bytes : TRANSPORT_DEFAULT_MAX_MSG;
    for (uint32_t i = 0; i < o->n; i++) {
        t->peers[i].t = t;
        t->peers[i].id = i;
        atomic_init(&t->peers[i].connected, false);
    }
    if (pthread_mutex_init(&t->conn_mtx, NULL) != 0) {
        rc = tally_errf(err, TALLY_EIO, "transport: no mutex");
        goto fail;
    }
    t->conn_mtx_ok = true;
    if ((rc = listener_start(t, &t->peer_ln, TRANSPORT_FROM_PEER, o->peer_listen, err)) != 0 ||
        (rc = listener_start(t, &t->client_ln, TRANSPORT_FROM_CLIENT, o->client_listen, err)) != 0)
        goto fail;
    for (uint32_t i = 0; i < o->n; i++)
        if (i != o->self && (rc = link_start(t, i, err)) != TALLY_OK)
            goto fail;
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
    for (uint32_t i = 0; i < t->o.n; i++)
        link_stop(&t->peers[i]);
    listener_stop(&t->peer_ln);
    listener_stop(&t->client_ln);
    if (!t->conn_mtx_ok) {
        free(t);
        return;
    }
    pthread_mutex_lock(&t->conn_mtx);
    t->stopping = true;
    pthread_mutex_unlock(&t->conn_mtx);
    for (uint32_t slot = 0; slot < TRANSPORT_MAX_CONNS; slot++) {
        pthread_mutex_lock(&t->conn_mtx);
        struct in_conn *c = t->slots[slot];
        pthread_mutex_unlock(&t->conn_mtx);
        if (c == NULL)
            continue;
        pthread_mutex_lock(&c->mtx);
        (void)conn_close_locked(c);
        pthread_mutex_unlock(&c->mtx);
        /* Wait out both callbacks; whichever ends last retires c. */
        nng_aio_stop(c->recv_aio);
        nng_aio_stop(c->send_aio);
        conn_retire(c); /* a no-op if a callback did it */
    }
    conns_reap(t);
    pthread_mutex_destroy(&t->conn_mtx);
    free(t);
}

/* ---- sending ---------------------------------------------------------------------- */

void transport_send_peer(struct transport *t, uint32_t to, const uint8_t *bytes, size_t len)
{
    if (to >= t->o.n || to == t->o.self)
        return;
    struct peer_link *l = &t->peers[to];
    bool queued = false;
    uint8_t hdr[SPFRAME_MAX_HEADER];
    size_t hlen = spframe_header(hdr, len, false);
    pthread_mutex_lock(&l->mtx);
    if (!l->stopping && sendq_push(&l->q, hdr, hlen, bytes, len)) {
        queued = true;
        if (l->stream != NULL && !l->closing && !l->q.sending)
            link_start_send(l);
    }
    pthread_mutex_unlock(&l->mtx);
    atomic_fetch_add(queued ? &t->peer_sent : &t->peer_send_dropped, 1);
}

void transport_broadcast(struct transport *t, const uint8_t *bytes, size_t len)
{
    for (uint32_t i = 0; i < t->o.n; i++)
        if (i != t->o.self)
            transport_send_peer(t, i, bytes, len);
}

void transport_send_client(struct transport *t, uint32_t pipe, const uint8_t *bytes, size_t len)
{
    bool queued = false;
    pthread_mutex_lock(&t->conn_mtx);
    struct in_conn *c = t->slots[pipe % TRANSPORT_MAX_CONNS];
    if (c != NULL && c->id == pipe && c->ln->origin == TRANSPORT_FROM_CLIENT) {
        pthread_mutex_lock(&c->mtx);
        queued = conn_queue_locked(c, bytes, len);
        pthread_mutex_unlock(&c->mtx);
    }
    pthread_mutex_unlock(&t->conn_mtx);
    atomic_fetch_add(queued ? &t->client_sent : &t->client_send_dropped, 1);
}

/* ---- state ------------------------------------------------------------------------- */

uint32_t transport_peers_connected(const struct transport *t)
{
    uint32_t c = 0;
    for (uint32_t i = 0; i < t->o.n; i++)
        if (i != t->o.self && atomic_load(&t->peers[i].connected))
            c++;
    return c;
}

int transport_peer_is_connected(const struct transport *t, uint32_t id)
{
    if (id >= t->o.n || id == t->o.self)
        return 0;
    return atomic_load(&t->peers[id].connected);
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
    out->peer_bad_frames = atomic_load(&m->peer_bad_frames);
    out->client_bad_frames = atomic_load(&m->client_bad_frames);
}
