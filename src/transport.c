/* Transport on NNG streams: see transport.h for the layout, src/spstream.h
 * for the links toward peers and src/spframe.h for the bytes. Locking: an
 * accepted connection's send side and flags are under its mtx, its receive
 * buffer belongs to its read callback; the slot table and the dead list are
 * under conn_mtx, which is taken before a connection's mtx, never after. */
#include "src/transport.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/log.h"
#include "src/mono.h"
#include "src/rxpoll.h"
#include "src/spframe.h"
#include "src/spstream.h"

#define TRANSPORT_MAX_CONNS 2048           /* the slot table: both listeners' connections */
#define TRANSPORT_MAX_PEER_CONNS 64        /* accepted on the peer address at once */
#define TRANSPORT_MAX_CLIENT_CONNS 1024    /* accepted on the client address at once */
#define TRANSPORT_CLIENT_QUEUE 1024        /* client messages waiting for a verify thread */
#define TRANSPORT_INLINE_CLIENT_BYTES 2048 /* a client message handled where it was read */
#define TRANSPORT_MAX_CLIENT_THREADS 2
#define TRANSPORT_CLIENT_SEND_BYTES (4u * 1024u * 1024u) /* replies queued toward one client */
#define TRANSPORT_REAP_MS 1000         /* ended connections are freed at least this often */
#define TRANSPORT_ACCEPT_RETRY_MS 10   /* after a failed accept (out of descriptors) */
#define TRANSPORT_REFUSAL_LOG_MS 10000 /* at most one refusal warning per listener */
#define TRANSPORT_DEFAULT_MAX_MSG (64u * 1024u * 1024u)
#define TRANSPORT_RX_THREADS 4    /* read accepted connections (src/rxpoll.h) */
#define TRANSPORT_FD_UNKNOWN (-2) /* in_conn.w.fd before the lookup */

struct transport;

/* One other replica: the link toward it. */
struct peer {
    uint32_t id;
    struct spstream_link *link;
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
    nng_aio *quick_aio;     /* send_aio's first try, without a callback (spstream_sendq_start) */
    nng_aio *rx_aio;        /* reads on an rxpoll thread, without a callback */
    struct rxpoll_watch w;  /* the socket, once the handshake is in (w.fd -1: NNG reads it) */
    struct spstream_rbuf r; /* only the reader (a callback, or w.ready) touches it */
    bool passed_inline;     /* (the reader's) a client message went to on_recv here */
    pthread_mutex_t mtx;
    /* Under mtx: */
    bool reading, closing; /* reading: a read in flight, or the connection is paused */
    bool retire_claimed;   /* a thread is retiring it (conn_close_claim_locked) */
    struct spstream_sendq q;
    /* Under the transport's conn_mtx: */
    bool dead;
    struct in_conn *next;
    /* Under the transport's cq_mtx: paused, waiting for room in the client
     * queue (its buffer holds the frame that did not fit). */
    struct in_conn *paused_next;
};

struct listener {
    struct transport *t;
    enum transport_origin origin;
    enum spframe_proto self_proto, peer_proto;
    nng_stream_listener *l;
    nng_aio *accept_aio, *sleep_aio;
    unsigned max_conns;
    /* Under the transport's conn_mtx: */
    unsigned nlive;
    uint64_t refused, refusal_logged_ms;
};

/* A client message waiting for a client thread. */
struct client_item {
    uint32_t id;
    nng_msg *msg;
};

struct transport;

/* A client thread, and the connection whose message it is handling. */
struct client_thread {
    struct transport *t;
    pthread_t thread;
    bool handling; /* under cq_mtx: a message of connection `conn` */
    uint32_t conn;
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
    bool stopping;
    uint32_t next_slot, conn_generation; /* where the search for a free slot starts */
    struct peer peers[TRANSPORT_MAX_PEERS];
    /* Client messages are verified on threads of their own, so that a flood
     * of client connections cannot hold the threads that carry the
     * replicas' traffic. */
    pthread_mutex_t cq_mtx;
    pthread_cond_t cq_cond;
    bool cq_ok, cq_stop;
    struct client_item cq[TRANSPORT_CLIENT_QUEUE]; /* a ring, under cq_mtx */
    size_t cq_head, cq_len;
    unsigned cq_busy; /* client threads handling a message or a paused connection */
    bool inline_busy; /* a reading thread is handling a client message itself */
    struct in_conn *paused, *paused_tail; /* under cq_mtx: client connections to resume */
    struct client_thread cthreads[TRANSPORT_MAX_CLIENT_THREADS];
    unsigned ncthreads; /* started */
    bool cq_parallel;   /* more than one client thread (set before they start) */
    struct rxpoll *rx;  /* reads every accepted connection whose socket it found */
    atomic_uint_fast64_t client_paused;
    nng_aio *reap_aio; /* frees ended connections now and then */
    atomic_uint_fast64_t peer_sent, peer_send_dropped;
    atomic_uint_fast64_t client_sent, client_send_dropped;
    atomic_uint_fast64_t peer_received, client_received;
    atomic_uint_fast64_t peer_closed, client_closed;
    atomic_uint_fast64_t peer_bad_frames, client_bad_frames;
};

/* ---- outbound links ---------------------------------------------------------- */

static void peer_state(void *ctx, bool connected)
{
    struct peer *p = ctx;
    if (connected)
        LOG_INFO("L0301", "connected to replica %u", p->id);
    else
        LOG_INFO("L0302", "disconnected from replica %u", p->id);
}

static int peer_start(struct transport *t, uint32_t id, struct tally_err *err)
{
    struct spstream_link_opts lo = {.url = t->o.peer_addrs[id],
                                    .self = SPFRAME_PUSH0,
                                    .peer = SPFRAME_PULL0,
                                    .on_frame = NULL, /* a pull0 listener sends nothing */
                                    .on_state = peer_state,
                                    .ctx = &t->peers[id]};
    int rc = spstream_link_start(&lo, &t->peers[id].link, err);
    if (rc != TALLY_OK)
        tally_err_wrap(err, "link toward replica %u: ", id);
    return rc;
}

/* ---- inbound connections --------------------------------------------------- */

static void conn_free(struct in_conn *c)
{
    rxpoll_forget(c->ln->t->rx, &c->w); /* before the stream's descriptor closes */
    if (c->rx_aio != NULL)
        nng_aio_free(c->rx_aio);
    if (c->recv_aio != NULL)
        nng_aio_free(c->recv_aio); /* waits for its callback to return */
    if (c->send_aio != NULL)
        nng_aio_free(c->send_aio);
    if (c->quick_aio != NULL)
        nng_aio_free(c->quick_aio);
    if (c->stream != NULL)
        nng_stream_free(c->stream);
    pthread_mutex_destroy(&c->mtx);
    spstream_rbuf_free(&c->r);
    spstream_sendq_free(&c->q);
    free(c);
}

/* Free the connections that have ended (on each accept, and every
 * TRANSPORT_REAP_MS). Not from their own callbacks. */
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

static void reap_cb(void *arg)
{
    struct transport *t = arg;
    if (nng_aio_result(t->reap_aio) != 0)
        return; /* stopped */
    conns_reap(t);
    nng_sleep_aio(TRANSPORT_REAP_MS, t->reap_aio);
}

/* Under conn_mtx: unlist c and leave it to the reaper. */
static void conn_retire_locked(struct transport *t, struct in_conn *c)
{
    if (c->dead)
        return;
    c->dead = true;
    t->slots[c->id % TRANSPORT_MAX_CONNS] = NULL;
    c->ln->nlive--;
    c->next = t->dead;
    t->dead = c;
}

/* The caller saw c closing with nothing in flight; c must not be touched
 * afterwards. */
static void conn_retire(struct in_conn *c)
{
    struct transport *t = c->ln->t;
    pthread_mutex_lock(&t->conn_mtx);
    conn_retire_locked(t, c);
    pthread_mutex_unlock(&t->conn_mtx);
}

/* Under c->mtx: close the stream (what is in flight completes with an
 * error). */
static void conn_close_locked(struct in_conn *c)
{
    if (!c->closing) {
        c->closing = true;
        nng_stream_close(c->stream);
    }
}

/* Under c->mtx: close, and whether the caller is the one to retire c once
 * unlocked: c is idle (nothing read or written any more) and nobody else
 * claimed it. Exactly one caller gets true, so two threads that both see c
 * idle (a client thread closing it, and the reading thread ending on its
 * hang-up) cannot both retire it: the second would touch it after the
 * reaper freed it. */
static bool conn_close_claim_locked(struct in_conn *c)
{
    conn_close_locked(c);
    if (c->reading || c->q.sending || c->retire_claimed)
        return false;
    c->retire_claimed = true;
    return true;
}

/* Under c->mtx: write what is queued. Writes the socket takes at once
 * follow each other here; one it cannot take is finished by conn_send_cb.
 * On an error the connection closes, and the read side retires it. */
static void conn_send_due(struct in_conn *c)
{
    while (!c->closing && !c->q.sending && spstream_sendq_has_work(&c->q)) {
        enum spstream_write w = spstream_sendq_start(&c->q, c->stream, c->quick_aio, c->send_aio);
        if (w == SPSTREAM_WRITE_FAILED)
            conn_close_locked(c);
        if (w != SPSTREAM_WRITE_DONE)
            return;
    }
}

static void conn_send_cb(void *arg)
{
    struct in_conn *c = arg;
    bool retire = false;
    pthread_mutex_lock(&c->mtx);
    int rv = nng_aio_result(c->send_aio);
    spstream_sendq_wrote(&c->q, rv == 0 ? nng_aio_count(c->send_aio) : 0);
    if (rv != 0)
        conn_close_locked(c);
    conn_send_due(c); /* (nothing once closing) */
    if (c->closing)
        retire = conn_close_claim_locked(c); /* once no read is posted either */
    pthread_mutex_unlock(&c->mtx);
    if (retire)
        conn_retire(c);
}

/* After a read's frames went on, on the reading thread: the owner steps
 * what a peer's (or an inline client message) queued. */
static void conn_read_done(struct in_conn *c)
{
    struct transport *t = c->ln->t;
    bool stepped_here = c->ln->origin == TRANSPORT_FROM_PEER || c->passed_inline;
    c->passed_inline = false;
    if (stepped_here && t->o.peer_read_done != NULL)
        t->o.peer_read_done(t->o.ctx);
}

/* Queue one frame toward c (under c->mtx). */
static bool conn_queue_locked(struct in_conn *c, const uint8_t *bytes, size_t len)
{
    uint8_t hdr[SPFRAME_MAX_HEADER];
    size_t hlen = spframe_header(hdr, len, c->ln->origin == TRANSPORT_FROM_CLIENT);
    if (c->closing || !spstream_sendq_push(&c->q, hdr, hlen, bytes, len))
        return false;
    conn_send_due(c);
    return true;
}

/* One received frame. A peer's goes to on_recv here (false: close the
 * connection); a client's to the client threads' queue, or, when that is
 * full, it waits in the connection's buffer, which stops reading: the client
 * is slowed down by TCP instead of losing requests. */
static enum spstream_take conn_frame(void *ctx, const uint8_t *body, size_t len)
{
    struct in_conn *c = ctx;
    struct transport *t = c->ln->t;
    nng_msg *msg = NULL;
    if (nng_msg_alloc(&msg, len) != 0)
        return SPSTREAM_REFUSED;
    memcpy(nng_msg_body(msg), body, len);
    if (c->ln->origin == TRANSPORT_FROM_CLIENT) {
        bool queued = false, here = false;
        pthread_mutex_lock(&t->cq_mtx);
        /* Small, and nothing of any client waits or is being handled: on
         * this thread (one at a time), as a client thread would at once. */
        if (len <= TRANSPORT_INLINE_CLIENT_BYTES && t->cq_len == 0 && t->paused == NULL &&
            t->cq_busy == 0 && !t->inline_busy) {
            t->inline_busy = here = true;
        } else if (t->cq_len < TRANSPORT_CLIENT_QUEUE) {
            t->cq[(t->cq_head + t->cq_len) % TRANSPORT_CLIENT_QUEUE] =
                (struct client_item){.id = c->id, .msg = msg};
            t->cq_len++;
            queued = true;
            pthread_cond_signal(&t->cq_cond);
        }
        pthread_mutex_unlock(&t->cq_mtx);
        if (here) {
            atomic_fetch_add(&t->client_received, 1);
            bool ok = t->o.on_recv(t->o.ctx, TRANSPORT_FROM_CLIENT_INLINE, c->id, msg);
            pthread_mutex_lock(&t->cq_mtx);
            t->inline_busy = false;
            pthread_mutex_unlock(&t->cq_mtx);
            c->passed_inline = true;
            if (ok)
                return SPSTREAM_TAKEN;
            atomic_fetch_add(&t->client_closed, 1);
            return SPSTREAM_REFUSED;
        }
        if (!queued) {
            nng_msg_free(msg);
            return SPSTREAM_LATER;
        }
        atomic_fetch_add(&t->client_received, 1);
        return SPSTREAM_TAKEN;
    }
    atomic_fetch_add(&t->peer_received, 1);
    if (t->o.on_recv(t->o.ctx, TRANSPORT_FROM_PEER, c->id, msg))
        return SPSTREAM_TAKEN;
    atomic_fetch_add(&t->peer_closed, 1);
    return SPSTREAM_REFUSED;
}

/* Close connection id (if it is still open), from outside its callbacks. */
static void conn_close_id(struct transport *t, uint32_t id)
{
    pthread_mutex_lock(&t->conn_mtx);
    struct in_conn *c = t->slots[id % TRANSPORT_MAX_CONNS];
    if (c != NULL && c->id == id) {
        pthread_mutex_lock(&c->mtx);
        bool idle = conn_close_claim_locked(c);
        pthread_mutex_unlock(&c->mtx);
        if (idle) /* else its last callback retires it */
            conn_retire_locked(t, c);
    }
    pthread_mutex_unlock(&t->conn_mtx);
}

/* Under c->mtx: read what comes next: on an rxpoll thread once the
 * handshake is in and the socket was found, else with NNG's callback. */
static void conn_read_locked(struct in_conn *c)
{
    if (c->closing) {
        conn_close_locked(c);
        return;
    }
    c->reading = true; /* a read posted, or the socket watched */
    if (c->r.got_hs && c->w.fd >= 0) {
        if (rxpoll_arm(c->ln->t->rx, &c->w) != 0) {
            c->reading = false;
            conn_close_locked(c);
        }
        return;
    }
    if (spstream_rbuf_arm(&c->r, c->recv_aio) != 0) {
        c->reading = false;
        conn_close_locked(c);
        return;
    }
    nng_stream_recv(c->stream, c->recv_aio);
}

/* Put c on the paused list (its reading flag stays set: the pause stands
 * for the read, so c cannot be retired meanwhile). */
static void conn_pause(struct transport *t, struct in_conn *c)
{
    atomic_fetch_add(&t->client_paused, 1);
    pthread_mutex_lock(&t->cq_mtx);
    c->paused_next = NULL;
    if (t->paused_tail != NULL)
        t->paused_tail->paused_next = c;
    else
        t->paused = c;
    t->paused_tail = c;
    pthread_cond_signal(&t->cq_cond); /* the queue may have drained already */
    pthread_mutex_unlock(&t->cq_mtx);
}

/* After a delivery (from a read, or resuming a pause): read on, pause, or
 * close and retire. */
static void conn_after_deliver(struct in_conn *c, enum spstream_deliver d)
{
    struct transport *t = c->ln->t;
    if (d == SPSTREAM_BAD)
        atomic_fetch_add(c->ln->origin == TRANSPORT_FROM_CLIENT ? &t->client_bad_frames
                                                                : &t->peer_bad_frames,
                         1);
    /* The socket, once the handshake is in: looked up before taking c->mtx
     * (it scans /proc/self/fd; transport_send_client waits for c->mtx while
     * holding conn_mtx). The reader owns c->w.fd and c->r until it posts
     * the next read. -1: NNG goes on reading it. */
    if (d == SPSTREAM_OK && c->r.got_hs && c->w.fd == TRANSPORT_FD_UNKNOWN)
        c->w.fd = rxpoll_stream_fd(c->stream);
    pthread_mutex_lock(&c->mtx);
    if (d == SPSTREAM_PAUSED && !c->closing) {
        pthread_mutex_unlock(&c->mtx);
        conn_pause(t, c);
        return;
    }
    c->reading = false;
    bool retire = false;
    if (d == SPSTREAM_OK && !c->closing)
        conn_read_locked(c);
    if (d != SPSTREAM_OK || c->closing)
        retire = conn_close_claim_locked(c);
    pthread_mutex_unlock(&c->mtx);
    if (retire)
        conn_retire(c);
}

static void conn_recv_cb(void *arg)
{
    struct in_conn *c = arg;
    struct transport *t = c->ln->t;
    enum spstream_deliver d = SPSTREAM_REJECTED;
    if (nng_aio_result(c->recv_aio) == 0) /* the buffer is ours while no read is posted */
        d = spstream_rbuf_deliver(&c->r, nng_aio_count(c->recv_aio), c->ln->peer_proto,
                                  t->max_frame, conn_frame, c);
    conn_read_done(c);
    conn_after_deliver(c, d);
}

static bool conn_closing(struct in_conn *c)
{
    pthread_mutex_lock(&c->mtx);
    bool closing = c->closing;
    pthread_mutex_unlock(&c->mtx);
    return closing;
}

/* On an rxpoll thread: c's socket is readable (or hung up). Read what it
 * holds and hand the frames on, as conn_recv_cb does for NNG's reads. */
static void conn_rx_ready(void *ctx, bool hangup)
{
    struct in_conn *c = ctx;
    struct transport *t = c->ln->t;
    enum spstream_deliver d = SPSTREAM_REJECTED;
    if (!conn_closing(c))
        d = spstream_rbuf_read_now(&c->r, c->stream, c->rx_aio, hangup, c->ln->peer_proto,
                                   t->max_frame, conn_frame, c);
    conn_read_done(c);
    conn_after_deliver(c, d);
}

/* On a client thread, with room in the queue: go on with a paused
 * connection's buffer (no read is in flight, so the buffer is ours). */
static void conn_resume(struct in_conn *c)
{
    struct transport *t = c->ln->t;
    enum spstream_deliver d = SPSTREAM_REJECTED;
    if (!conn_closing(c))
        d = spstream_rbuf_deliver(&c->r, 0, c->ln->peer_proto, t->max_frame, conn_frame, c);
    conn_after_deliver(c, d);
}

/* Under cq_mtx: take the oldest queued message of a connection that no
 * other client thread is handling a message of. One connection's messages
 * are thus handled one at a time and in the order they came (a client's
 * transactions of one account carry consecutive nonces: handled out of
 * order, the later one would be refused), while different connections' go
 * in parallel. The messages passed over all belong to connections held by
 * other threads and keep their order. */
static bool cq_take(struct transport *t, struct client_thread *self, struct client_item *out)
{
    for (size_t k = 0; k < t->cq_len; k++) {
        uint32_t id = t->cq[(t->cq_head + k) % TRANSPORT_CLIENT_QUEUE].id;
        bool held = false;
        for (unsigned i = 0; i < TRANSPORT_MAX_CLIENT_THREADS && !held; i++)
            held = &t->cthreads[i] != self && t->cthreads[i].handling && t->cthreads[i].conn == id;
        if (held)
            continue;
        *out = t->cq[(t->cq_head + k) % TRANSPORT_CLIENT_QUEUE];
        for (size_t j = k; j > 0; j--) /* close the gap */
            t->cq[(t->cq_head + j) % TRANSPORT_CLIENT_QUEUE] =
                t->cq[(t->cq_head + j - 1) % TRANSPORT_CLIENT_QUEUE];
        t->cq_head = (t->cq_head + 1) % TRANSPORT_CLIENT_QUEUE;
        t->cq_len--;
        self->handling = true;
        self->conn = id;
        return true;
    }
    return false;
}

static void *client_thread_main(void *arg)
{
    struct client_thread *self = arg;
    struct transport *t = self->t;
    pthread_mutex_lock(&t->cq_mtx);
    for (;;) {
        if (t->cq_stop)
            break;
        if (t->paused != NULL && t->cq_len < TRANSPORT_CLIENT_QUEUE) {
            struct in_conn *c = t->paused;
            t->paused = c->paused_next;
            if (t->paused == NULL)
                t->paused_tail = NULL;
            t->cq_busy++;
            pthread_mutex_unlock(&t->cq_mtx);
            conn_resume(c);
            pthread_mutex_lock(&t->cq_mtx);
            t->cq_busy--;
            continue;
        }
        struct client_item it;
        if (!cq_take(t, self, &it)) {
            pthread_cond_wait(&t->cq_cond, &t->cq_mtx);
            continue;
        }
        t->cq_busy++;
        pthread_mutex_unlock(&t->cq_mtx);
        if (!t->o.on_recv(t->o.ctx, TRANSPORT_FROM_CLIENT, it.id, it.msg)) {
            atomic_fetch_add(&t->client_closed, 1);
            conn_close_id(t, it.id);
        }
        pthread_mutex_lock(&t->cq_mtx);
        t->cq_busy--;
        self->handling = false;
        if (t->cq_len > 0 && t->cq_parallel) /* another may wait for this connection */
            pthread_cond_broadcast(&t->cq_cond);
    }
    pthread_mutex_unlock(&t->cq_mtx);
    return NULL;
}

static struct in_conn *conn_new(struct listener *ln, nng_stream *s)
{
    struct in_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->ln = ln;
    c->stream = s;
    /* The socket is looked up once the handshake is in (conn_read_locked):
     * not for every connection a flood opens. */
    c->w = (struct rxpoll_watch){.fd = TRANSPORT_FD_UNKNOWN, .ready = conn_rx_ready, .ctx = c};
    if (pthread_mutex_init(&c->mtx, NULL) != 0) {
        free(c);
        return NULL;
    }
    if (spstream_rbuf_init(&c->r) != 0 || nng_aio_alloc(&c->recv_aio, conn_recv_cb, c) != 0 ||
        nng_aio_alloc(&c->send_aio, conn_send_cb, c) != 0 ||
        nng_aio_alloc(&c->quick_aio, NULL, NULL) != 0 ||
        nng_aio_alloc(&c->rx_aio, NULL, NULL) != 0) {
        c->stream = NULL; /* the caller still owns it */
        conn_free(c);
        return NULL;
    }
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
    if (rv != 0) { /* out of descriptors, say: try again shortly, not at once */
        nng_sleep_aio(TRANSPORT_ACCEPT_RETRY_MS, ln->sleep_aio);
        return;
    }
    nng_stream *s = nng_aio_get_output(ln->accept_aio, 0);
    struct in_conn *c = conn_new(ln, s);
    bool listed = false, warn = false;
    uint64_t refused = 0;
    pthread_mutex_lock(&t->conn_mtx);
    if (c != NULL && !t->stopping && ln->nlive < ln->max_conns) {
        /* A free slot; the id names the slot and how often it was used. */
        uint32_t slot = t->next_slot % TRANSPORT_MAX_CONNS;
        while (t->slots[slot] != NULL)
            slot = (slot + 1) % TRANSPORT_MAX_CONNS;
        uint32_t gen = ++t->conn_generation;
        c->id = gen * TRANSPORT_MAX_CONNS + slot;
        if (c->id == 0) /* 0 is no connection */
            c->id = (++t->conn_generation) * TRANSPORT_MAX_CONNS + slot;
        t->next_slot = slot + 1;
        t->slots[slot] = c;
        ln->nlive++;
        listed = true;
    } else if (!t->stopping) {
        refused = ++ln->refused;
        uint64_t now = mono_now_ms();
        if (ln->refusal_logged_ms == 0 || now - ln->refusal_logged_ms >= TRANSPORT_REFUSAL_LOG_MS) {
            ln->refusal_logged_ms = now;
            warn = true;
        }
    }
    pthread_mutex_unlock(&t->conn_mtx);
    if (!listed) {
        if (c != NULL) {
            c->stream = NULL;
            conn_free(c);
        }
        nng_stream_free(s);
        if (warn)
            LOG_WARN("L0305",
                     "refused a %s connection: %u open, the most allowed (or out of memory); "
                     "%llu refused so far",
                     ln->origin == TRANSPORT_FROM_PEER ? "peer" : "client", ln->max_conns,
                     (unsigned long long)refused);
    } else {
        pthread_mutex_lock(&c->mtx);
        if (ln->origin == TRANSPORT_FROM_CLIENT) /* a client that does not read loses replies */
            c->q.max_bytes = TRANSPORT_CLIENT_SEND_BYTES;
        /* Our handshake first (a frame-less send), then read. */
        uint8_t hs[SPFRAME_HANDSHAKE];
        spframe_handshake(hs, ln->self_proto);
        if (spstream_sendq_push(&c->q, hs, sizeof(hs), NULL, 0)) {
            conn_send_due(c);
        } else {
            conn_close_locked(c);
        }
        conn_read_locked(c);
        bool retire = c->closing && conn_close_claim_locked(c);
        pthread_mutex_unlock(&c->mtx);
        if (retire)
            conn_retire(c);
    }
    nng_stream_listener_accept(ln->l, ln->accept_aio);
}

static void accept_retry_cb(void *arg)
{
    struct listener *ln = arg;
    if (nng_aio_result(ln->sleep_aio) == 0)
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
    ln->max_conns =
        origin == TRANSPORT_FROM_PEER ? TRANSPORT_MAX_PEER_CONNS : TRANSPORT_MAX_CLIENT_CONNS;
    if ((rv = nng_aio_alloc(&ln->accept_aio, accept_cb, ln)) != 0 ||
        (rv = nng_aio_alloc(&ln->sleep_aio, accept_retry_cb, ln)) != 0 ||
        (rv = nng_stream_listener_alloc(&ln->l, url)) != 0)
        return tally_errf(err, TALLY_EIO, "%s address %s: %s", what, url, nng_strerror(rv));
    (void)nng_stream_listener_set_bool(ln->l, NNG_OPT_TCP_NODELAY, true);
    /* A peer host that vanished without a FIN leaves a connection that only
     * the kernel's keepalive ever ends. */
    (void)nng_stream_listener_set_bool(ln->l, NNG_OPT_TCP_KEEPALIVE, true);
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
    if (ln->sleep_aio != NULL)
        nng_aio_stop(ln->sleep_aio);
    if (ln->accept_aio != NULL)
        nng_aio_stop(ln->accept_aio);
    if (ln->sleep_aio != NULL)
        nng_aio_free(ln->sleep_aio);
    if (ln->accept_aio != NULL)
        nng_aio_free(ln->accept_aio);
    if (ln->l != NULL)
        nng_stream_listener_free(ln->l);
}

/* ---- start and stop ------------------------------------------------------------- */

int transport_start(const struct transport_opts *o, struct transport **out, struct tally_err *err)
{
    int rc = TALLY_OK;
    if (o->n == 0 || o->n > TRANSPORT_MAX_PEERS || o->self >= o->n || o->on_recv == NULL ||
        o->client_threads > TRANSPORT_MAX_CLIENT_THREADS)
        return tally_errf(err, TALLY_EINVAL, "transport: bad options");
    struct transport *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return tally_errf(err, TALLY_ENOMEM, "transport: out of memory");
    t->o = *o;
    t->max_frame = o->max_message_bytes > 0 ? o->max_message_bytes : TRANSPORT_DEFAULT_MAX_MSG;
    for (uint32_t i = 0; i < o->n; i++)
        t->peers[i].id = i;
    if (pthread_mutex_init(&t->conn_mtx, NULL) != 0) {
        rc = tally_errf(err, TALLY_EIO, "transport: no mutex");
        goto fail;
    }
    t->conn_mtx_ok = true;
    if (pthread_mutex_init(&t->cq_mtx, NULL) != 0) {
        rc = tally_errf(err, TALLY_EIO, "transport: no mutex");
        goto fail;
    }
    if (pthread_cond_init(&t->cq_cond, NULL) != 0) {
        pthread_mutex_destroy(&t->cq_mtx);
        rc = tally_errf(err, TALLY_EIO, "transport: no condition variable");
        goto fail;
    }
    t->cq_ok = true;
    if (nng_aio_alloc(&t->reap_aio, reap_cb, t) != 0) {
        rc = tally_errf(err, TALLY_ENOMEM, "transport: out of memory");
        goto fail;
    }
    nng_sleep_aio(TRANSPORT_REAP_MS, t->reap_aio);
    /* One client thread is enough when the replicas share a small machine. */
    unsigned nthreads = o->client_threads != 0               ? o->client_threads
                        : sysconf(_SC_NPROCESSORS_ONLN) >= 8 ? 2
                                                             : 1;
    t->cq_parallel = nthreads > 1;
    for (unsigned i = 0; i < nthreads; i++) {
        t->cthreads[i].t = t;
        if (pthread_create(&t->cthreads[i].thread, NULL, client_thread_main, &t->cthreads[i]) !=
            0) {
            rc = tally_errf(err, TALLY_EIO, "transport: cannot start a client thread");
            goto fail;
        }
        t->ncthreads++;
    }
    if ((rc = rxpoll_start(TRANSPORT_RX_THREADS, "tally-rx", &t->rx, err)) != TALLY_OK)
        goto fail;
    if ((rc = listener_start(t, &t->peer_ln, TRANSPORT_FROM_PEER, o->peer_listen, err)) != 0 ||
        (rc = listener_start(t, &t->client_ln, TRANSPORT_FROM_CLIENT, o->client_listen, err)) != 0)
        goto fail;
    for (uint32_t i = 0; i < o->n; i++)
        if (i != o->self && (rc = peer_start(t, i, err)) != TALLY_OK)
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
    if (t->cq_ok) {
        pthread_mutex_lock(&t->cq_mtx);
        t->cq_stop = true;
        pthread_cond_broadcast(&t->cq_cond);
        pthread_mutex_unlock(&t->cq_mtx);
    }
    for (unsigned i = 0; i < t->ncthreads; i++)
        pthread_join(t->cthreads[i].thread, NULL);
    if (t->reap_aio != NULL)
        nng_aio_stop(t->reap_aio);
    for (uint32_t i = 0; i < t->o.n; i++)
        spstream_link_stop(t->peers[i].link);
    listener_stop(&t->peer_ln);
    listener_stop(&t->client_ln);
    if (!t->conn_mtx_ok) {
        free(t);
        return;
    }
    pthread_mutex_lock(&t->conn_mtx);
    t->stopping = true;
    pthread_mutex_unlock(&t->conn_mtx);
    rxpoll_stop(t->rx); /* no reader runs after this; what it watched is retired below */
    for (uint32_t slot = 0; slot < TRANSPORT_MAX_CONNS; slot++) {
        pthread_mutex_lock(&t->conn_mtx);
        struct in_conn *c = t->slots[slot];
        pthread_mutex_unlock(&t->conn_mtx);
        if (c == NULL)
            continue;
        pthread_mutex_lock(&c->mtx);
        conn_close_locked(c);
        pthread_mutex_unlock(&c->mtx);
        /* Wait out both callbacks; whichever ends last retires c. */
        nng_aio_stop(c->recv_aio);
        nng_aio_stop(c->send_aio);
        nng_aio_stop(c->quick_aio);
        conn_retire(c); /* a no-op if a callback did it */
    }
    conns_reap(t);
    rxpoll_free(t->rx);
    pthread_mutex_destroy(&t->conn_mtx);
    if (t->reap_aio != NULL)
        nng_aio_free(t->reap_aio);
    if (t->cq_ok) {
        for (size_t k = 0; k < t->cq_len; k++)
            nng_msg_free(t->cq[(t->cq_head + k) % TRANSPORT_CLIENT_QUEUE].msg);
        pthread_mutex_destroy(&t->cq_mtx);
        pthread_cond_destroy(&t->cq_cond);
    }
    free(t);
}

/* ---- sending ---------------------------------------------------------------------- */

void transport_send_peer(struct transport *t, uint32_t to, const uint8_t *bytes, size_t len)
{
    if (to >= t->o.n || to == t->o.self)
        return;
    bool queued = spstream_link_send(t->peers[to].link, bytes, len);
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
        if (i != t->o.self && spstream_link_connected(t->peers[i].link))
            c++;
    return c;
}

int transport_peer_is_connected(const struct transport *t, uint32_t id)
{
    if (id >= t->o.n || id == t->o.self)
        return 0;
    return spstream_link_connected(t->peers[id].link);
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
    out->client_paused = atomic_load(&m->client_paused);
    out->client_bad_frames = atomic_load(&m->client_bad_frames);
}
