/* SP over NNG streams: see spstream.h. */
#include "src/spstream.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SPSTREAM_RECV_CHUNK (64u * 1024u)
#define SPSTREAM_RECONN_MIN_MS 20
#define SPSTREAM_RECONN_MAX_MS 500

/* ---- send queue ---------------------------------------------------------------- */

static int grow(uint8_t **data, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    uint8_t *p = realloc(*data, c);
    if (p == NULL)
        return -1;
    *data = p;
    *cap = c;
    return 0;
}

bool spstream_sendq_push(struct spstream_sendq *q, const uint8_t *hdr, size_t hlen,
                         const uint8_t *body, size_t len)
{
    size_t need = q->pending_len + hlen + len;
    size_t max_msgs = q->max_msgs ? q->max_msgs : SPSTREAM_QUEUE_MSGS;
    size_t max_bytes = q->max_bytes ? q->max_bytes : SPSTREAM_QUEUE_BYTES;
    if (q->pending_len > 0 && (q->pending_msgs >= max_msgs || need > max_bytes))
        return false;
    if (grow(&q->pending, &q->pending_cap, need) != 0)
        return false;
    memcpy(q->pending + q->pending_len, hdr, hlen);
    if (len > 0)
        memcpy(q->pending + q->pending_len + hlen, body, len);
    q->pending_len = need;
    q->pending_msgs++;
    return true;
}

bool spstream_sendq_has_work(const struct spstream_sendq *q)
{
    return q->inflight_len > 0 || q->pending_len > 0;
}

void spstream_sendq_take(struct spstream_sendq *q)
{
    if (q->inflight_len == 0) { /* swap: pending becomes the write */
        uint8_t *b = q->inflight;
        size_t cap = q->inflight_cap;
        q->inflight = q->pending;
        q->inflight_cap = q->pending_cap;
        q->inflight_len = q->pending_len;
        q->inflight_off = 0;
        q->pending = b;
        q->pending_cap = cap;
        q->pending_len = 0;
        q->pending_msgs = 0;
    }
}

static int sendq_set_iov(struct spstream_sendq *q, nng_aio *aio)
{
    nng_iov iov = {.iov_buf = q->inflight + q->inflight_off,
                   .iov_len = q->inflight_len - q->inflight_off};
    return nng_aio_set_iov(aio, 1, &iov);
}

enum spstream_write spstream_sendq_start(struct spstream_sendq *q, nng_stream *s, nng_aio *quick,
                                         nng_aio *aio)
{
    spstream_sendq_take(q);
    if (sendq_set_iov(q, quick) != 0)
        return SPSTREAM_WRITE_FAILED;
    nng_stream_send(s, quick);
    /* Done already, unless the socket was full: then the write waits for
     * the poller, and is taken back (a no-op if it has just completed). */
    nng_aio_cancel(quick);
    nng_aio_wait(quick);
    int rv = nng_aio_result(quick);
    if (rv == 0) {
        spstream_sendq_wrote(q, nng_aio_count(quick));
        return SPSTREAM_WRITE_DONE;
    }
    if (rv != NNG_ECANCELED) {
        spstream_sendq_wrote(q, 0);
        return SPSTREAM_WRITE_FAILED;
    }
    q->inflight_off += nng_aio_count(quick); /* 0: a cancelled TCP write wrote nothing */
    if (sendq_set_iov(q, aio) != 0)
        return SPSTREAM_WRITE_FAILED;
    q->sending = true;
    q->writes_waited++;
    nng_stream_send(s, aio);
    return SPSTREAM_WRITE_PENDING;
}

void spstream_sendq_wrote(struct spstream_sendq *q, size_t n)
{
    q->sending = false;
    q->inflight_off += n;
    if (q->inflight_off >= q->inflight_len) {
        q->inflight_len = 0;
        q->inflight_off = 0;
    }
}

void spstream_sendq_drop_inflight(struct spstream_sendq *q)
{
    q->sending = false;
    q->inflight_len = 0;
    q->inflight_off = 0;
}

void spstream_sendq_requeue_unsent(struct spstream_sendq *q)
{
    /* Our own frames: each is its u64 length and that many bytes. */
    size_t off = 0, msgs = 0, start = q->inflight_len;
    while (off + SPFRAME_HEADER <= q->inflight_len) {
        uint64_t len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | q->inflight[off + (size_t)i];
        if (off >= q->inflight_off) { /* not begun: the first such starts the rest */
            if (msgs++ == 0)
                start = off;
        }
        off += SPFRAME_HEADER + (size_t)len;
    }
    size_t unsent = q->inflight_len - start;
    if (unsent > 0 && grow(&q->pending, &q->pending_cap, q->pending_len + unsent) == 0) {
        memmove(q->pending + unsent, q->pending, q->pending_len);
        memcpy(q->pending, q->inflight + start, unsent);
        q->pending_len += unsent;
        q->pending_msgs += msgs;
    }
    spstream_sendq_drop_inflight(q);
}

void spstream_sendq_free(struct spstream_sendq *q)
{
    free(q->pending);
    free(q->inflight);
    memset(q, 0, sizeof(*q));
}

/* ---- receive buffer ------------------------------------------------------------- */

int spstream_rbuf_init(struct spstream_rbuf *r)
{
    memset(r, 0, sizeof(*r));
    if ((r->buf = malloc(SPSTREAM_RECV_CHUNK)) == NULL)
        return -1;
    r->cap = SPSTREAM_RECV_CHUNK;
    return 0;
}

void spstream_rbuf_free(struct spstream_rbuf *r)
{
    free(r->buf);
    memset(r, 0, sizeof(*r));
}

int spstream_rbuf_arm(struct spstream_rbuf *r, nng_aio *aio)
{
    nng_aio_set_timeout(aio, r->got_hs ? NNG_DURATION_INFINITE : SPSTREAM_HANDSHAKE_MS);
    nng_iov iov = {.iov_buf = r->buf + r->have, .iov_len = r->cap - r->have};
    return nng_aio_set_iov(aio, 1, &iov) == 0 ? 0 : -1;
}

/* Forget the first off bytes of the buffer (delivered frames, the handshake). */
static void rbuf_drop(struct spstream_rbuf *r, size_t off)
{
    memmove(r->buf, r->buf + off, r->have - off);
    r->have -= off;
}

enum spstream_deliver spstream_rbuf_deliver(struct spstream_rbuf *r, size_t n,
                                            enum spframe_proto peer, size_t max_body,
                                            spstream_frame_fn fn, void *ctx)
{
    bool pair1 = peer == SPFRAME_PAIR1;
    size_t off = 0, want = 0; /* want: what the frame being read needs */
    r->have += n;
    if (!r->got_hs) {
        if (r->have < SPFRAME_HANDSHAKE)
            return SPSTREAM_OK;
        if (!spframe_handshake_ok(r->buf, peer))
            return SPSTREAM_BAD;
        r->got_hs = true;
        off = SPFRAME_HANDSHAKE;
    }
    for (;;) {
        struct spframe_next f;
        enum spframe_status st = spframe_parse(r->buf + off, r->have - off, max_body, pair1, &f);
        if (st == SPFRAME_BAD)
            return SPSTREAM_BAD;
        if (st == SPFRAME_NEED) {
            want = f.need;
            if (f.need > r->cap) { /* grow for this one frame (its length is bounded) */
                rbuf_drop(r, off);
                off = 0;
                uint8_t *p = realloc(r->buf, f.need);
                if (p == NULL)
                    return SPSTREAM_REJECTED;
                r->buf = p;
                r->cap = f.need;
            }
            break;
        }
        if (st == SPFRAME_SKIP)
            return SPSTREAM_BAD;
        enum spstream_take take = fn(ctx, f.body, f.len);
        if (take == SPSTREAM_REFUSED)
            return SPSTREAM_REJECTED;
        if (take == SPSTREAM_LATER) { /* keep this frame at the front */
            rbuf_drop(r, off);
            return SPSTREAM_PAUSED;
        }
        off += f.consumed;
    }
    if (off > 0)
        rbuf_drop(r, off);
    if (want <= SPSTREAM_RECV_CHUNK && r->cap > 4 * SPSTREAM_RECV_CHUNK) {
        /* give back a big frame's room (have <= want: it fits) */
        uint8_t *p = realloc(r->buf, SPSTREAM_RECV_CHUNK);
        if (p != NULL) {
            r->buf = p;
            r->cap = SPSTREAM_RECV_CHUNK;
        }
    }
    return SPSTREAM_OK;
}

enum spstream_deliver spstream_rbuf_read_now(struct spstream_rbuf *r, nng_stream *s, nng_aio *quick,
                                             bool hangup, enum spframe_proto peer, size_t max_body,
                                             spstream_frame_fn fn, void *ctx)
{
    for (unsigned reads = 1;; reads++) {
        size_t asked = r->cap - r->have, got = 0;
        int rv = spstream_rbuf_arm(r, quick) == 0 ? rxpoll_read_now(s, quick, &got) : NNG_ENOMEM;
        if (rv == NNG_ECANCELED && !hangup)
            return SPSTREAM_OK; /* nothing after all */
        if (rv != 0)
            return SPSTREAM_REJECTED; /* gone (nothing to read from a hung-up socket) */
        enum spstream_deliver d = spstream_rbuf_deliver(r, got, peer, max_body, fn, ctx);
        if (d != SPSTREAM_OK || got < asked || reads == SPSTREAM_READS_PER_WAKE)
            return d;
    }
}

/* ---- outbound link -------------------------------------------------------------- */

struct spstream_link {
    struct spstream_link_opts o;
    nng_stream_dialer *dialer;
    nng_aio *dial_aio, *sleep_aio, *send_aio, *recv_aio;
    nng_aio *quick_aio; /* send_aio's first try, without a callback (spstream_sendq_start) */
    nng_aio *rx_aio;    /* reads on an rxpoll thread, without a callback */
    pthread_mutex_t mtx;
    pthread_cond_t idle; /* a watched read ended (spstream_link_stop waits for it) */
    bool mtx_ok;
    /* Under mtx: */
    nng_stream *stream;    /* NULL while down */
    struct rxpoll_watch w; /* the stream's socket (w.fd -1: NNG reads it) */
    bool reading, closing, stopping;
    bool watched;     /* the read in flight is w's (reading is set too) */
    bool inflight_hs; /* the write in flight is our handshake */
    struct spstream_sendq q;
    nng_duration backoff;
    /* Owned by the read callback (reset under mtx while no read is posted): */
    struct spstream_rbuf r;
    atomic_bool connected;
};

static void link_schedule_redial(struct spstream_link *l)
{
    if (l->stopping)
        return;
    nng_sleep_aio(l->backoff, l->sleep_aio);
    l->backoff *= 2;
    if (l->backoff > SPSTREAM_RECONN_MAX_MS)
        l->backoff = SPSTREAM_RECONN_MAX_MS;
}

/* Once nothing is in flight on a failed stream, free it and dial again. */
static void link_reap_if_idle(struct spstream_link *l)
{
    if (!l->closing || l->q.sending || l->reading)
        return;
    if (l->o.rx != NULL)
        rxpoll_forget(l->o.rx, &l->w); /* before the descriptor closes */
    nng_stream_free(l->stream);
    l->stream = NULL;
    l->closing = false;
    if (l->inflight_hs)
        spstream_sendq_drop_inflight(&l->q);
    else
        spstream_sendq_requeue_unsent(&l->q); /* for the next connection */
    l->inflight_hs = false;
    link_schedule_redial(l);
}

static void link_fail(struct spstream_link *l)
{
    if (l->stream == NULL || l->closing)
        return;
    l->closing = true;
    if (atomic_exchange(&l->connected, false) && l->o.on_state != NULL)
        l->o.on_state(l->o.ctx, false);
    nng_stream_close(l->stream); /* completes the write and the read with errors */
    link_reap_if_idle(l);
}

/* Write what is due: the rest of a write in flight, and queued frames only
 * once the other side's handshake is in (if it never answers, or closes, the
 * frames stay queued for the next connection). Writes the socket takes at
 * once follow each other here; one it cannot take is finished by
 * link_send_cb. */
static void link_send_due(struct spstream_link *l)
{
    while (l->stream != NULL && !l->closing && !l->stopping && !l->q.sending) {
        if (l->q.inflight_len == 0) {
            l->inflight_hs = false;
            if (l->q.pending_len == 0 || !atomic_load(&l->connected))
                return;
        }
        enum spstream_write w = spstream_sendq_start(&l->q, l->stream, l->quick_aio, l->send_aio);
        if (w == SPSTREAM_WRITE_FAILED)
            link_fail(l);
        if (w != SPSTREAM_WRITE_DONE)
            return;
    }
}

static void link_send_cb(void *arg)
{
    struct spstream_link *l = arg;
    pthread_mutex_lock(&l->mtx);
    int rv = nng_aio_result(l->send_aio);
    spstream_sendq_wrote(&l->q, rv == 0 ? nng_aio_count(l->send_aio) : 0);
    if (rv != 0 || l->closing)
        link_fail(l);
    else
        link_send_due(l);
    link_reap_if_idle(l);
    pthread_mutex_unlock(&l->mtx);
}

/* Under mtx: read what comes next, on an rxpoll thread once the handshake
 * is in and the socket was found, else with NNG's callback. */
static void link_read(struct spstream_link *l)
{
    if (l->r.got_hs && l->w.fd >= 0) {
        if (rxpoll_arm(l->o.rx, &l->w) != 0) {
            link_fail(l);
            return;
        }
        l->reading = l->watched = true;
        return;
    }
    if (spstream_rbuf_arm(&l->r, l->recv_aio) != 0) {
        link_fail(l);
        return;
    }
    l->reading = true;
    nng_stream_recv(l->stream, l->recv_aio);
}

/* Frames toward a link that must receive none (pull0) are refused. */
static enum spstream_take refuse_frame(void *ctx, const uint8_t *body, size_t len)
{
    (void)ctx;
    (void)body;
    (void)len;
    return SPSTREAM_REFUSED;
}

/* Where a link's received frames go. */
static spstream_frame_fn link_frame_fn(const struct spstream_link *l)
{
    return l->o.on_frame != NULL ? l->o.on_frame : refuse_frame;
}

static void link_after_read(struct spstream_link *l, enum spstream_deliver d, bool was_up);

static void link_recv_cb(void *arg)
{
    struct spstream_link *l = arg;
    int rv = nng_aio_result(l->recv_aio);
    enum spstream_deliver d = SPSTREAM_BAD;
    bool was_up = atomic_load(&l->connected);
    if (rv == 0) /* the buffer is ours alone while no read is posted */
        d = spstream_rbuf_deliver(&l->r, nng_aio_count(l->recv_aio), l->o.peer, l->o.max_body,
                                  link_frame_fn(l), l->o.ctx);
    link_after_read(l, d, was_up);
}

/* On an rxpoll thread: the socket is readable (or hung up). The stream
 * stays while a read is in flight (link_reap_if_idle). */
static void link_rx_ready(void *ctx, bool hangup)
{
    struct spstream_link *l = ctx;
    pthread_mutex_lock(&l->mtx);
    bool gone = l->closing || l->stopping;
    nng_stream *s = l->stream;
    pthread_mutex_unlock(&l->mtx);
    enum spstream_deliver d = SPSTREAM_REJECTED;
    if (!gone)
        d = spstream_rbuf_read_now(&l->r, s, l->rx_aio, hangup, l->o.peer, l->o.max_body,
                                   link_frame_fn(l), l->o.ctx);
    link_after_read(l, d, true);
}

/* After a read's frames went on: read on, or fail the stream. */
static void link_after_read(struct spstream_link *l, enum spstream_deliver d, bool was_up)
{
    pthread_mutex_lock(&l->mtx);
    l->reading = false;
    if (l->watched) {
        l->watched = false;
        pthread_cond_broadcast(&l->idle);
    }
    if (d != SPSTREAM_OK || l->closing || l->stopping) {
        link_fail(l);
        link_reap_if_idle(l);
        pthread_mutex_unlock(&l->mtx);
        return;
    }
    if (!was_up && l->r.got_hs) {
        l->backoff = SPSTREAM_RECONN_MIN_MS;
        atomic_store(&l->connected, true);
        if (l->o.on_state != NULL)
            l->o.on_state(l->o.ctx, true);
        link_send_due(l);
    }
    if (l->closing)
        link_reap_if_idle(l);
    else if (l->stream != NULL) /* (link_send_due may have failed and reaped it) */
        link_read(l);
    pthread_mutex_unlock(&l->mtx);
}

static void link_dial_cb(void *arg)
{
    struct spstream_link *l = arg;
    pthread_mutex_lock(&l->mtx);
    if (nng_aio_result(l->dial_aio) != 0) {
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
    l->r.have = 0;
    l->r.got_hs = false;
    l->w = (struct rxpoll_watch){
        .fd = l->o.rx != NULL ? rxpoll_stream_fd(s) : -1, .ready = link_rx_ready, .ctx = l};
    /* Our handshake first (as a write of its own), then what was queued
     * while the link was down. */
    spstream_sendq_drop_inflight(&l->q);
    uint8_t hs[SPFRAME_HANDSHAKE];
    spframe_handshake(hs, l->o.self);
    if (grow(&l->q.inflight, &l->q.inflight_cap, sizeof(hs)) != 0) {
        link_fail(l);
        pthread_mutex_unlock(&l->mtx);
        return;
    }
    memcpy(l->q.inflight, hs, sizeof(hs));
    l->q.inflight_len = sizeof(hs);
    l->inflight_hs = true;
    link_send_due(l);
    if (l->stream != NULL && !l->closing)
        link_read(l);
    pthread_mutex_unlock(&l->mtx);
}

static void link_sleep_cb(void *arg)
{
    struct spstream_link *l = arg;
    pthread_mutex_lock(&l->mtx);
    if (!l->stopping && nng_aio_result(l->sleep_aio) == 0)
        nng_stream_dialer_dial(l->dialer, l->dial_aio);
    pthread_mutex_unlock(&l->mtx);
}

int spstream_link_start(const struct spstream_link_opts *o, struct spstream_link **out,
                        struct tally_err *err)
{
    int rv, rc;
    struct spstream_link *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return tally_errf(err, TALLY_ENOMEM, "out of memory");
    l->o = *o;
    l->backoff = SPSTREAM_RECONN_MIN_MS;
    atomic_init(&l->connected, false);
    if (pthread_mutex_init(&l->mtx, NULL) != 0) {
        rc = tally_errf(err, TALLY_EIO, "%s: no mutex", o->url);
        goto fail;
    }
    if (pthread_cond_init(&l->idle, NULL) != 0) {
        pthread_mutex_destroy(&l->mtx);
        rc = tally_errf(err, TALLY_EIO, "%s: no condition variable", o->url);
        goto fail;
    }
    l->mtx_ok = true;
    l->w.fd = -1;
    if (spstream_rbuf_init(&l->r) != 0) {
        rc = tally_errf(err, TALLY_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rv = nng_aio_alloc(&l->dial_aio, link_dial_cb, l)) != 0 ||
        (rv = nng_aio_alloc(&l->sleep_aio, link_sleep_cb, l)) != 0 ||
        (rv = nng_aio_alloc(&l->send_aio, link_send_cb, l)) != 0 ||
        (rv = nng_aio_alloc(&l->quick_aio, NULL, NULL)) != 0 ||
        (rv = nng_aio_alloc(&l->rx_aio, NULL, NULL)) != 0 ||
        (rv = nng_aio_alloc(&l->recv_aio, link_recv_cb, l)) != 0 ||
        (rv = nng_stream_dialer_alloc(&l->dialer, o->url)) != 0) {
        rc = tally_errf(err, TALLY_EIO, "%s: %s", o->url, nng_strerror(rv));
        goto fail;
    }
    (void)nng_stream_dialer_set_bool(l->dialer, NNG_OPT_TCP_NODELAY, true);
    nng_stream_dialer_dial(l->dialer, l->dial_aio); /* retried in the background */
    *out = l;
    return TALLY_OK;
fail:
    spstream_link_stop(l);
    return rc;
}

void spstream_link_stop(struct spstream_link *l)
{
    if (l == NULL)
        return;
    if (l->mtx_ok) {
        pthread_mutex_lock(&l->mtx);
        l->stopping = true;
        if (l->stream != NULL)
            nng_stream_close(l->stream); /* a watched socket fires: its read ends */
        while (l->watched)
            pthread_cond_wait(&l->idle, &l->mtx);
        pthread_mutex_unlock(&l->mtx);
    }
    if (l->dialer != NULL)
        nng_stream_dialer_close(l->dialer);
    nng_aio *aios[] = {l->sleep_aio, l->dial_aio,  l->send_aio,
                       l->recv_aio,  l->quick_aio, l->rx_aio};
    for (size_t i = 0; i < sizeof(aios) / sizeof(aios[0]); i++)
        if (aios[i] != NULL)
            nng_aio_stop(aios[i]); /* waits for a running callback */
    for (size_t i = 0; i < sizeof(aios) / sizeof(aios[0]); i++)
        if (aios[i] != NULL)
            nng_aio_free(aios[i]);
    if (l->stream != NULL) {
        if (l->o.rx != NULL)
            rxpoll_forget(l->o.rx, &l->w);
        nng_stream_free(l->stream);
    }
    if (l->dialer != NULL)
        nng_stream_dialer_free(l->dialer);
    spstream_sendq_free(&l->q);
    spstream_rbuf_free(&l->r);
    if (l->mtx_ok) {
        pthread_mutex_destroy(&l->mtx);
        pthread_cond_destroy(&l->idle);
    }
    free(l);
}

bool spstream_link_send(struct spstream_link *l, const uint8_t *body, size_t len)
{
    uint8_t hdr[SPFRAME_MAX_HEADER];
    size_t hlen = spframe_header(hdr, len, l->o.self == SPFRAME_PAIR1);
    pthread_mutex_lock(&l->mtx);
    bool queued = !l->stopping && spstream_sendq_push(&l->q, hdr, hlen, body, len);
    if (queued)
        link_send_due(l);
    pthread_mutex_unlock(&l->mtx);
    return queued;
}

uint64_t spstream_link_writes_waited(const struct spstream_link *l)
{
    struct spstream_link *m = (struct spstream_link *)l;
    pthread_mutex_lock(&m->mtx);
    uint64_t n = m->q.writes_waited;
    pthread_mutex_unlock(&m->mtx);
    return n;
}

bool spstream_link_connected(const struct spstream_link *l)
{
    return atomic_load(&((struct spstream_link *)l)->connected);
}
