/* Client library: see client.h. */
#include "tools/lib/client.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>

#include "src/msg.h"
#include "src/mono.h"
#include "src/spstream.h"

#define CLIENT_INBOX_MSGS 4096 /* replies held per replica until taken */
#define CLIENT_QUERY_RETRY_MS 250

/* Messages from one replica, filled by its link's read callback (on an NNG
 * thread) and taken by the client's thread. */
struct inbox {
    struct client *c;
    nng_msg *msgs[CLIENT_INBOX_MSGS]; /* a ring */
    size_t head, count;
};

struct client {
    const struct tally_config *cfg;
    uint32_t n;
    struct spstream_link *links[CONFIG_MAX_REPLICAS];
    struct rxpoll *rx; /* reads the replies (src/rxpoll.h) */
    size_t max_body;
    uint64_t next_request_id;
    struct msg_buf buf;
    pthread_mutex_t mtx; /* the inboxes */
    pthread_cond_t cond; /* something arrived (CLOCK_MONOTONIC) */
    bool sync_ok;
    struct inbox inbox[CONFIG_MAX_REPLICAS];
};

/* A frame from a replica (on a reading thread): into its inbox, or dropped
 * when the inbox is full (the client re-sends what stays unanswered). */
static enum spstream_take on_frame(void *ctx, const uint8_t *body, size_t len)
{
    struct inbox *ib = ctx;
    struct client *c = ib->c;
    nng_msg *msg = NULL;
    if (nng_msg_alloc(&msg, len) != 0)
        return SPSTREAM_TAKEN; /* dropped: the client re-sends what stays unanswered */
    memcpy(nng_msg_body(msg), body, len);
    pthread_mutex_lock(&c->mtx);
    if (ib->count < CLIENT_INBOX_MSGS) {
        ib->msgs[(ib->head + ib->count) % CLIENT_INBOX_MSGS] = msg;
        ib->count++;
        msg = NULL;
        pthread_cond_signal(&c->cond);
    }
    pthread_mutex_unlock(&c->mtx);
    if (msg != NULL)
        nng_msg_free(msg);
    return SPSTREAM_TAKEN;
}

int client_open(const struct tally_config *cfg, struct client **out, struct tally_err *err)
{
    int rc = 0;
    struct client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return tally_errf(err, TALLY_ENOMEM, "out of memory");
    c->cfg = cfg;
    c->n = cfg->n;
    c->max_body = cfg->max_message_bytes - MSG_HEADER_BYTES - TC_SIG_BYTES;
    c->next_request_id = mono_now_us() ^ ((uint64_t)getpid() << 40);
    msg_buf_init(&c->buf);
    if (pthread_mutex_init(&c->mtx, NULL) != 0) {
        free(c);
        return tally_errf(err, TALLY_EIO, "no mutex");
    }
    if (mono_cond_init(&c->cond) != 0) {
        pthread_mutex_destroy(&c->mtx);
        free(c);
        return tally_errf(err, TALLY_EIO, "no condition variable");
    }
    c->sync_ok = true;
    /* One thread reads every replica's replies: taking a frame is a copy. */
    if ((rc = rxpoll_start(1, "tally-rx", &c->rx, err)) != 0)
        goto fail;
    for (uint32_t i = 0; i < c->n; i++) {
        c->inbox[i].c = c;
        struct spstream_link_opts lo = {.url = cfg->replicas[i].client_address,
                                        .self = SPFRAME_PAIR1,
                                        .peer = SPFRAME_PAIR1,
                                        .on_frame = on_frame,
                                        .max_body = (size_t)cfg->max_message_bytes,
                                        .ctx = &c->inbox[i],
                                        .rx = c->rx};
        if ((rc = spstream_link_start(&lo, &c->links[i], err)) != 0) {
            tally_err_wrap(err, "replica %u: ", i);
            goto fail;
        }
    }
    *out = c;
    return 0;
fail:
    client_close(c);
    return rc;
}

void client_close(struct client *c)
{
    if (c == NULL)
        return;
    for (uint32_t i = 0; i < c->n; i++)
        spstream_link_stop(c->links[i]); /* no callback runs after this */
    rxpoll_stop(c->rx);
    rxpoll_free(c->rx);
    for (uint32_t i = 0; i < c->n; i++)
        for (size_t k = 0; k < c->inbox[i].count; k++)
            nng_msg_free(c->inbox[i].msgs[(c->inbox[i].head + k) % CLIENT_INBOX_MSGS]);
    if (c->sync_ok) {
        pthread_mutex_destroy(&c->mtx);
        pthread_cond_destroy(&c->cond);
    }
    msg_buf_free(&c->buf);
    free(c);
}

static void send_to(struct client *c, uint32_t i, const uint8_t *bytes, size_t len)
{
    /* Held while the replica is not connected; dropped when even that queue
     * is full (a retry sends it again). */
    (void)spstream_link_send(c->links[i], bytes, len);
}

static void send_all(struct client *c, const uint8_t *bytes, size_t len)
{
    for (uint32_t i = 0; i < c->n; i++)
        send_to(c, i, bytes, len);
}

static bool inbox_any(const struct client *c)
{
    for (uint32_t i = 0; i < c->n; i++)
        if (c->inbox[i].count > 0)
            return true;
    return false;
}

/* Wait until a message has arrived or timeout_us passes. */
static void wait_readable(struct client *c, uint64_t timeout_us)
{
    struct timespec ts = mono_deadline_us(timeout_us);
    pthread_mutex_lock(&c->mtx);
    while (!inbox_any(c))
        if (pthread_cond_timedwait(&c->cond, &c->mtx, &ts) != 0)
            break;
    pthread_mutex_unlock(&c->mtx);
}

/* Take the next message from replica i's inbox, or NULL. */
static nng_msg *inbox_take(struct client *c, uint32_t i)
{
    struct inbox *ib = &c->inbox[i];
    nng_msg *msg = NULL;
    pthread_mutex_lock(&c->mtx);
    if (ib->count > 0) {
        msg = ib->msgs[ib->head];
        ib->head = (ib->head + 1) % CLIENT_INBOX_MSGS;
        ib->count--;
    }
    pthread_mutex_unlock(&c->mtx);
    return msg;
}

/* Take one message from replica i (non-blocking) and decode it, naming a
 * replica of the config as its sender; its signature is not checked yet.
 * 0 when *m decoded (msg owned by the caller: nng_msg_free), nonzero when
 * there is nothing (more) or it was bad. */
static int recv_decoded(struct client *c, uint32_t i, nng_msg **msgp, struct msg *m, bool *more)
{
    *more = false;
    nng_msg *msg = inbox_take(c, i);
    if (msg == NULL)
        return -1;
    *more = true;
    if (msg_decode(nng_msg_body(msg), nng_msg_len(msg), c->max_body, m, NULL) != 0 ||
        m->sender >= c->n) {
        nng_msg_free(msg);
        return -1;
    }
    *msgp = msg;
    return 0;
}

/* The same, and verified as coming from that replica. */
static int recv_verified(struct client *c, uint32_t i, nng_msg **msgp, struct msg *m, bool *more)
{
    if (recv_decoded(c, i, msgp, m, more) != 0)
        return -1;
    if (msg_verify(m, &c->cfg->replicas[m->sender].pk) != 0) {
        nng_msg_free(*msgp);
        *msgp = NULL;
        return -1;
    }
    return 0;
}

/* ---- submit ---------------------------------------------------------- */

struct vote {
    bool has;
    uint64_t height;
    tc_hash block_hash;
    uint8_t result;
};

struct pend {
    enum { P_NEW, P_SENT, P_DONE } state;
    uint64_t sent_us, first_us;
    struct vote votes[CONFIG_MAX_REPLICAS];
};

struct submit_state {
    size_t n, mask;
    size_t *table; /* open addressing: index + 1, 0 empty */
    struct pend *p;
    struct client_receipt *out;
};

static size_t slot_of(const tc_hash *h, size_t mask)
{
    uint64_t x;
    memcpy(&x, h->b, sizeof(x));
    return (size_t)x & mask;
}

static long find_tx(const struct submit_state *s, const tc_hash *h)
{
    for (size_t j = slot_of(h, s->mask);; j = (j + 1) & s->mask) {
        size_t v = s->table[j];
        if (v == 0)
            return -1;
        if (memcmp(s->out[v - 1].tx_hash.b, h->b, TC_HASH_BYTES) == 0)
            return (long)(v - 1);
    }
}

static void on_reply(struct client *c, struct submit_state *s, const struct msg *m, size_t *done,
                     uint64_t now, uint64_t *ewma_us)
{
    uint32_t q = config_reply_quorum(c->cfg);
    for (uint32_t e = 0; e < m->u.reply.count; e++) {
        struct msg_reply_entry ent;
        msg_reply_entry_get(m, e, &ent);
        long k = find_tx(s, &ent.tx_hash);
        if (k < 0 || s->p[k].state == P_DONE)
            continue;
        struct pend *p = &s->p[k];
        struct vote v = {.has = true,
                         .height = m->u.reply.height,
                         .block_hash = m->u.reply.block_hash,
                         .result = ent.result};
        p->votes[m->sender] = v;
        uint32_t match = 0;
        for (uint32_t r = 0; r < c->n; r++)
            if (p->votes[r].has && p->votes[r].height == v.height &&
                p->votes[r].result == v.result &&
                memcmp(p->votes[r].block_hash.b, v.block_hash.b, TC_HASH_BYTES) == 0)
                match++;
        if (match >= q) {
            p->state = P_DONE;
            struct client_receipt *o = &s->out[k];
            o->done = true;
            o->height = v.height;
            o->block_hash = v.block_hash;
            o->result = v.result;
            o->latency_us = now - p->first_us;
            uint64_t lat = now - p->first_us;
            *ewma_us = *ewma_us == 0 ? lat : (*ewma_us * 7 + lat) / 8;
            (*done)++;
        }
    }
}

/* Send the txs in idx[0..cnt) as one REQUEST to every replica. */
static void send_request(struct client *c, const struct ledger_tx *txs, const size_t *idx,
                         size_t cnt, uint8_t *scratch)
{
    for (size_t i = 0; i < cnt; i++)
        ledger_tx_encode(&txs[idx[i]], scratch + i * LEDGER_TX_BYTES);
    struct msg_batch b = {.count = (uint32_t)cnt, .tx_bytes = scratch};
    msg_buf_reset(&c->buf);
    if (msg_encode_request(&c->buf, &b) == 0)
        send_all(c, c->buf.data, c->buf.len);
}

int client_submit(struct client *c, const struct ledger_tx *txs, size_t n,
                  const struct client_submit_opts *opts, struct client_receipt *out,
                  struct tally_err *err)
{
    struct client_submit_opts o = {.timeout_ms = 10000};
    if (opts != NULL)
        o = *opts;
    if (o.retry_ms == 0)
        o.retry_ms = 1000;
    if (o.max_outstanding == 0)
        o.max_outstanding = 1024;
    if (o.request_txs == 0)
        o.request_txs = 256;
    if (o.request_txs > MSG_MAX_BATCH)
        o.request_txs = MSG_MAX_BATCH;
    if (o.request_txs * LEDGER_TX_BYTES + 1024 > c->cfg->max_message_bytes)
        o.request_txs = (c->cfg->max_message_bytes - 1024) / LEDGER_TX_BYTES;
    if (n == 0)
        return 0;

    int rc = 0;
    struct submit_state s = {.n = n, .out = out};
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    s.mask = cap - 1;
    s.table = calloc(cap, sizeof(*s.table));
    s.p = calloc(n, sizeof(*s.p));
    size_t *idx = malloc(o.request_txs * sizeof(*idx));
    uint8_t *scratch = malloc(o.request_txs * LEDGER_TX_BYTES);
    if (s.table == NULL || s.p == NULL || idx == NULL || scratch == NULL) {
        rc = tally_errf(err, TALLY_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof(out[i]));
        ledger_tx_hash(&txs[i], &out[i].tx_hash);
        size_t j = slot_of(&out[i].tx_hash, s.mask);
        while (s.table[j] != 0)
            j = (j + 1) & s.mask;
        s.table[j] = i + 1;
    }

    uint64_t start = mono_now_us();
    uint64_t deadline = start + o.timeout_ms * 1000u;
    size_t done = 0, next_new = 0, outstanding = 0, retry_scan = 0;
    uint64_t ewma_us = 0; /* smoothed receipt latency */
    bool heard = false;
    while (done < n) {
        uint64_t now = mono_now_us();
        if (now >= deadline)
            break;
        /* New txs, up to the window, in REQUEST-sized groups. */
        while (next_new < n && outstanding < o.max_outstanding) {
            size_t cnt = 0;
            while (next_new < n && cnt < o.request_txs && outstanding < o.max_outstanding) {
                s.p[next_new].state = P_SENT;
                s.p[next_new].sent_us = s.p[next_new].first_us = now;
                idx[cnt++] = next_new++;
                outstanding++;
            }
            send_request(c, txs, idx, cnt, scratch);
        }
        /* Re-send the overdue ones to all replicas. Under load, receipts take
         * longer than the retry interval: wait for a few typical latencies. */
        uint64_t retry_us = o.retry_ms * 1000u;
        if (3 * ewma_us > retry_us)
            retry_us = 3 * ewma_us;
        size_t cnt = 0;
        for (size_t scanned = 0; scanned < next_new; scanned++) {
            size_t i = (retry_scan + scanned) % next_new;
            struct pend *p = &s.p[i];
            if (p->state != P_SENT || now - p->sent_us < retry_us)
                continue;
            p->sent_us = now;
            idx[cnt++] = i;
            if (cnt == o.request_txs) {
                send_request(c, txs, idx, cnt, scratch);
                cnt = 0;
            }
        }
        if (cnt > 0)
            send_request(c, txs, idx, cnt, scratch);
        retry_scan = 0;

        uint64_t wait = deadline - now;
        if (wait > 50000)
            wait = 50000;
        wait_readable(c, wait);
        now = mono_now_us();
        for (uint32_t r = 0; r < c->n; r++) {
            bool more = true;
            while (more) {
                nng_msg *msg = NULL;
                struct msg m;
                if (recv_verified(c, r, &msg, &m, &more) != 0)
                    continue;
                heard = true;
                if (m.type == MSG_REPLY) {
                    size_t before = done;
                    on_reply(c, &s, &m, &done, now, &ewma_us);
                    outstanding -= done - before;
                }
                nng_msg_free(msg);
            }
        }
    }
    if (done < n) {
        if (!heard)
            rc = tally_errf(err, TALLY_EUNAVAIL,
                            "no replica answered within %llu ms (is the cluster running?)",
                            (unsigned long long)o.timeout_ms);
        else
            rc = tally_errf(err, TALLY_ETIMEOUT,
                            "%zu of %zu transactions got no f+1 matching replies within %llu ms",
                            n - done, n, (unsigned long long)o.timeout_ms);
    }
out:
    free(s.table);
    free(s.p);
    free(idx);
    free(scratch);
    return rc;
}

/* ---- queries ------------------------------------------------------------- */

struct qvote {
    bool has;
    uint8_t found, c;
    uint64_t a, b, height;
};

static int query(struct client *c, uint8_t kind, const uint8_t key[32], uint64_t timeout_ms,
                 struct qvote *res, struct tally_err *err)
{
    struct qvote votes[CONFIG_MAX_REPLICAS] = {0};
    uint64_t id = c->next_request_id++;
    uint32_t q = config_reply_quorum(c->cfg);
    uint64_t start = mono_now_us(), deadline = start + timeout_ms * 1000u, last_send = 0;
    bool heard = false;
    for (;;) {
        uint64_t now = mono_now_us();
        if (now >= deadline)
            break;
        if (last_send == 0 || now - last_send >= CLIENT_QUERY_RETRY_MS * 1000u) {
            msg_buf_reset(&c->buf);
            if (msg_encode_query(&c->buf, kind, id, key) != 0)
                return tally_errf(err, TALLY_ENOMEM, "out of memory");
            send_all(c, c->buf.data, c->buf.len);
            last_send = now;
        }
        uint64_t wait = deadline - now;
        if (wait > 50000)
            wait = 50000;
        wait_readable(c, wait);
        for (uint32_t r = 0; r < c->n; r++) {
            bool more = true;
            while (more) {
                nng_msg *msg = NULL;
                struct msg m;
                if (recv_verified(c, r, &msg, &m, &more) != 0)
                    continue;
                heard = true;
                if (m.type == MSG_QUERY_REPLY && m.u.query_reply.kind == kind &&
                    m.u.query_reply.request_id == id && memcmp(m.u.query_reply.key, key, 32) == 0)
                    votes[m.sender] = (struct qvote){.has = true,
                                                     .found = m.u.query_reply.found,
                                                     .a = m.u.query_reply.a,
                                                     .b = m.u.query_reply.b,
                                                     .c = m.u.query_reply.c,
                                                     .height = m.u.query_reply.height};
                nng_msg_free(msg);
            }
        }
        for (uint32_t r = 0; r < c->n; r++) {
            if (!votes[r].has)
                continue;
            uint32_t match = 0;
            uint64_t height = 0;
            for (uint32_t t = 0; t < c->n; t++)
                if (votes[t].has && votes[t].found == votes[r].found && votes[t].a == votes[r].a &&
                    votes[t].b == votes[r].b && votes[t].c == votes[r].c) {
                    match++;
                    if (votes[t].height > height)
                        height = votes[t].height;
                }
            if (match >= q) {
                *res = votes[r];
                res->height = height;
                return 0;
            }
        }
    }
    if (!heard)
        return tally_errf(err, TALLY_EUNAVAIL,
                          "no replica answered within %llu ms (is the cluster running?)",
                          (unsigned long long)timeout_ms);
    return tally_errf(err, TALLY_ETIMEOUT, "no f+1 matching answers within %llu ms",
                      (unsigned long long)timeout_ms);
}

int client_get_account(struct client *c, const tc_pubkey *pk, uint64_t timeout_ms,
                       struct client_account *out, struct tally_err *err)
{
    struct qvote v;
    int rc = query(c, MSG_QUERY_BALANCE, pk->b, timeout_ms, &v, err);
    if (rc != 0)
        return rc;
    *out = (struct client_account){
        .found = v.found != 0, .balance = v.a, .nonce = v.b, .height = v.height};
    return 0;
}

int client_get_tx(struct client *c, const tc_hash *h, uint64_t timeout_ms,
                  struct client_tx_info *out, struct tally_err *err)
{
    struct qvote v;
    int rc = query(c, MSG_QUERY_TX, h->b, timeout_ms, &v, err);
    if (rc != 0)
        return rc;
    *out = (struct client_tx_info){.found = v.found != 0,
                                   .height = v.a,
                                   .index = (uint32_t)v.b,
                                   .result = v.c,
                                   .ledger_height = v.height};
    return 0;
}

/* ---- status ------------------------------------------------------------ */

uint32_t client_status_all(struct client *c, uint64_t timeout_ms, char **json)
{
    uint32_t answered = 0;
    for (uint32_t i = 0; i < c->n; i++)
        json[i] = NULL;
    msg_buf_reset(&c->buf);
    if (msg_encode_status_req(&c->buf) != 0)
        return 0;
    uint64_t start = mono_now_us(), deadline = start + timeout_ms * 1000u, last_send = 0;
    while (answered < c->n) {
        uint64_t now = mono_now_us();
        if (now >= deadline)
            break;
        if (last_send == 0 || now - last_send >= 200000u) {
            /* Re-ask (a connection may have come up since). */
            msg_buf_reset(&c->buf);
            if (msg_encode_status_req(&c->buf) != 0)
                break;
            for (uint32_t i = 0; i < c->n; i++)
                if (json[i] == NULL)
                    send_to(c, i, c->buf.data, c->buf.len);
            last_send = now;
        }
        uint64_t wait = deadline - now;
        if (wait > 20000)
            wait = 20000;
        wait_readable(c, wait);
        for (uint32_t r = 0; r < c->n; r++) {
            bool more = true;
            while (more) {
                nng_msg *msg = NULL;
                struct msg m;
                if (recv_verified(c, r, &msg, &m, &more) != 0)
                    continue;
                if (m.type == MSG_STATUS_REPLY && json[m.sender] == NULL) {
                    char *t = malloc(m.u.status.len + 1);
                    if (t != NULL) {
                        memcpy(t, m.u.status.json, m.u.status.len);
                        t[m.u.status.len] = '\0';
                        json[m.sender] = t;
                        answered++;
                    }
                }
                nng_msg_free(msg);
            }
        }
    }
    return answered;
}

/* ---- streaming submission ------------------------------------------------ */

#define STREAM_NONE UINT32_MAX

/* One transaction in flight: its votes and its place in the FIFO of
 * outstanding transactions, oldest (re)send first. */
struct stream_slot {
    size_t tx;
    uint64_t sent_us, first_us;
    uint32_t prev, next;
    struct vote votes[CONFIG_MAX_REPLICAS];
};

struct client_stream {
    struct client *c;
    const struct ledger_tx *txs;
    struct client_receipt *out;
    size_t n, next, outstanding;
    struct client_submit_opts o;
    size_t mask;
    size_t *table;     /* open addressing over all n: index + 1, 0 empty */
    uint32_t *slot_of; /* per tx: its slot, STREAM_NONE when not in flight */
    struct stream_slot *slots;
    uint32_t *free_slots; /* stack */
    size_t nfree;
    uint32_t head, tail;
    uint64_t ewma_us;
    bool heard;
    size_t *idx;
    uint8_t *scratch;
};

static long stream_find(const struct client_stream *s, const tc_hash *h)
{
    for (size_t j = slot_of(h, s->mask);; j = (j + 1) & s->mask) {
        size_t v = s->table[j];
        if (v == 0)
            return -1;
        if (memcmp(s->out[v - 1].tx_hash.b, h->b, TC_HASH_BYTES) == 0)
            return (long)(v - 1);
    }
}

static void fifo_unlink(struct client_stream *s, uint32_t k)
{
    struct stream_slot *sl = &s->slots[k];
    if (sl->prev != STREAM_NONE)
        s->slots[sl->prev].next = sl->next;
    else
        s->head = sl->next;
    if (sl->next != STREAM_NONE)
        s->slots[sl->next].prev = sl->prev;
    else
        s->tail = sl->prev;
    sl->prev = sl->next = STREAM_NONE;
}

static void fifo_push(struct client_stream *s, uint32_t k)
{
    struct stream_slot *sl = &s->slots[k];
    sl->next = STREAM_NONE;
    sl->prev = s->tail;
    if (s->tail != STREAM_NONE)
        s->slots[s->tail].next = k;
    else
        s->head = k;
    s->tail = k;
}

int client_stream_open(struct client *c, const struct ledger_tx *txs, size_t n,
                       const struct client_submit_opts *opts, struct client_receipt *out,
                       struct client_stream **sp, struct tally_err *err)
{
    struct client_stream *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return tally_errf(err, TALLY_ENOMEM, "out of memory");
    s->c = c;
    s->txs = txs;
    s->out = out;
    s->n = n;
    if (opts != NULL)
        s->o = *opts;
    if (s->o.retry_ms == 0)
        s->o.retry_ms = 1000;
    if (s->o.max_outstanding == 0)
        s->o.max_outstanding = 1024;
    if (s->o.max_outstanding > STREAM_NONE - 1)
        s->o.max_outstanding = STREAM_NONE - 1;
    if (s->o.request_txs == 0)
        s->o.request_txs = 256;
    if (s->o.request_txs > MSG_MAX_BATCH)
        s->o.request_txs = MSG_MAX_BATCH;
    if (s->o.request_txs * LEDGER_TX_BYTES + 1024 > c->cfg->max_message_bytes)
        s->o.request_txs = (c->cfg->max_message_bytes - 1024) / LEDGER_TX_BYTES;
    s->head = s->tail = STREAM_NONE;
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    s->mask = cap - 1;
    size_t m = s->o.max_outstanding;
    s->table = calloc(cap, sizeof(*s->table));
    s->slot_of = malloc((n > 0 ? n : 1) * sizeof(*s->slot_of));
    s->slots = calloc(m, sizeof(*s->slots));
    s->free_slots = malloc(m * sizeof(*s->free_slots));
    s->idx = malloc(s->o.request_txs * sizeof(*s->idx));
    s->scratch = malloc(s->o.request_txs * LEDGER_TX_BYTES);
    if (s->table == NULL || s->slot_of == NULL || s->slots == NULL || s->free_slots == NULL ||
        s->idx == NULL || s->scratch == NULL) {
        client_stream_close(s);
        return tally_errf(err, TALLY_ENOMEM, "out of memory (%zu transactions)", n);
    }
    for (size_t k = 0; k < m; k++)
        s->free_slots[k] = (uint32_t)(m - 1 - k);
    s->nfree = m;
    for (size_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof(out[i]));
        ledger_tx_hash(&txs[i], &out[i].tx_hash);
        s->slot_of[i] = STREAM_NONE;
        size_t j = slot_of(&out[i].tx_hash, s->mask);
        while (s->table[j] != 0)
            j = (j + 1) & s->mask;
        s->table[j] = i + 1;
    }
    *sp = s;
    return 0;
}

void client_stream_close(struct client_stream *s)
{
    if (s == NULL)
        return;
    free(s->table);
    free(s->slot_of);
    free(s->slots);
    free(s->free_slots);
    free(s->idx);
    free(s->scratch);
    free(s);
}

size_t client_stream_send(struct client_stream *s, size_t want)
{
    size_t sent = 0;
    uint64_t now = mono_now_us();
    while (sent < want && s->next < s->n && s->nfree > 0) {
        size_t cnt = 0;
        while (cnt < s->o.request_txs && sent < want && s->next < s->n && s->nfree > 0) {
            uint32_t k = s->free_slots[--s->nfree];
            struct stream_slot *sl = &s->slots[k];
            memset(sl->votes, 0, sizeof(sl->votes));
            sl->tx = s->next;
            sl->sent_us = sl->first_us = now;
            fifo_push(s, k);
            s->slot_of[s->next] = k;
            s->idx[cnt++] = s->next++;
            s->outstanding++;
            sent++;
        }
        send_request(s->c, s->txs, s->idx, cnt, s->scratch);
    }
    return sent;
}

/* Whether a REPLY names a transaction still waiting for its receipt. */
static bool stream_reply_wanted(const struct client_stream *s, const struct msg *m)
{
    for (uint32_t e = 0; e < m->u.reply.count; e++) {
        struct msg_reply_entry ent;
        msg_reply_entry_get(m, e, &ent);
        long i = stream_find(s, &ent.tx_hash);
        if (i >= 0 && s->slot_of[i] != STREAM_NONE)
            return true;
    }
    return false;
}

/* A REPLY's entries: votes, and receipts for those reaching f+1. */
static size_t stream_on_reply(struct client_stream *s, const struct msg *m, uint64_t now,
                              size_t *done_idx, size_t ndone)
{
    uint32_t q = config_reply_quorum(s->c->cfg);
    for (uint32_t e = 0; e < m->u.reply.count; e++) {
        struct msg_reply_entry ent;
        msg_reply_entry_get(m, e, &ent);
        long i = stream_find(s, &ent.tx_hash);
        if (i < 0 || s->slot_of[i] == STREAM_NONE)
            continue;
        uint32_t k = s->slot_of[i];
        struct stream_slot *sl = &s->slots[k];
        struct vote v = {.has = true,
                         .height = m->u.reply.height,
                         .block_hash = m->u.reply.block_hash,
                         .result = ent.result};
        sl->votes[m->sender] = v;
        uint32_t match = 0;
        for (uint32_t r = 0; r < s->c->n; r++)
            if (sl->votes[r].has && sl->votes[r].height == v.height &&
                sl->votes[r].result == v.result &&
                memcmp(sl->votes[r].block_hash.b, v.block_hash.b, TC_HASH_BYTES) == 0)
                match++;
        if (match < q)
            continue;
        struct client_receipt *o = &s->out[i];
        o->done = true;
        o->height = v.height;
        o->block_hash = v.block_hash;
        o->result = v.result;
        o->latency_us = now - sl->first_us;
        s->ewma_us = s->ewma_us == 0 ? o->latency_us : (s->ewma_us * 7 + o->latency_us) / 8;
        fifo_unlink(s, k);
        s->slot_of[i] = STREAM_NONE;
        s->free_slots[s->nfree++] = k;
        s->outstanding--;
        if (done_idx != NULL)
            done_idx[ndone] = (size_t)i;
        ndone++;
    }
    return ndone;
}

size_t client_stream_poll(struct client_stream *s, uint64_t timeout_us, size_t *done_idx)
{
    uint64_t now = mono_now_us();
    /* Re-send the overdue ones (the FIFO's head is the oldest send). Under
     * load receipts take longer than the retry interval: wait for a few
     * typical latencies. */
    uint64_t retry_us = s->o.retry_ms * 1000u;
    if (3 * s->ewma_us > retry_us)
        retry_us = 3 * s->ewma_us;
    size_t cnt = 0;
    while (s->head != STREAM_NONE && now - s->slots[s->head].sent_us >= retry_us) {
        uint32_t k = s->head;
        fifo_unlink(s, k);
        s->slots[k].sent_us = now;
        fifo_push(s, k);
        s->idx[cnt++] = s->slots[k].tx;
        if (cnt == s->o.request_txs) {
            send_request(s->c, s->txs, s->idx, cnt, s->scratch);
            cnt = 0;
        }
    }
    if (cnt > 0)
        send_request(s->c, s->txs, s->idx, cnt, s->scratch);

    if (timeout_us > 0)
        wait_readable(s->c, timeout_us);
    now = mono_now_us();
    size_t ndone = 0;
    for (uint32_t r = 0; r < s->c->n; r++) {
        bool more = true;
        while (more) {
            nng_msg *msg = NULL;
            struct msg m;
            if (recv_decoded(s->c, r, &msg, &m, &more) != 0)
                continue;
            /* A reply naming only receipted transactions (the replicas
             * after the first f+1) is of no use: dropped unverified, which
             * halves the signatures a load generator checks. */
            if ((m.type != MSG_REPLY || stream_reply_wanted(s, &m)) &&
                msg_verify(&m, &s->c->cfg->replicas[m.sender].pk) == 0) {
                s->heard = true;
                if (m.type == MSG_REPLY)
                    ndone = stream_on_reply(s, &m, now, done_idx, ndone);
            }
            nng_msg_free(msg);
        }
    }
    return ndone;
}

size_t client_stream_sent(const struct client_stream *s)
{
    return s->next;
}

size_t client_stream_outstanding(const struct client_stream *s)
{
    return s->outstanding;
}

size_t client_stream_capacity(const struct client_stream *s)
{
    return s->o.max_outstanding;
}

bool client_stream_heard(const struct client_stream *s)
{
    return s->heard;
}

/* ---- many accounts at once ----------------------------------------------- */

#define ACCOUNTS_WINDOW 64

int client_get_accounts(struct client *c, const tc_pubkey *pks, size_t n, uint64_t timeout_ms,
                        struct client_account *out, struct tally_err *err)
{
    if (n == 0)
        return 0;
    int rc = 0;
    struct qvote *votes = calloc(n * c->n, sizeof(*votes));
    uint64_t *last_send = calloc(n, sizeof(*last_send));
    bool *done = calloc(n, sizeof(*done));
    if (votes == NULL || last_send == NULL || done == NULL) {
        rc = tally_errf(err, TALLY_ENOMEM, "out of memory");
        goto out;
    }
    uint64_t base = c->next_request_id;
    c->next_request_id += n;
    uint32_t q = config_reply_quorum(c->cfg);
    uint64_t deadline = mono_now_us() + timeout_ms * 1000u;
    size_t ndone = 0, first = 0; /* first: no account before it is still open */
    bool heard = false;
    while (ndone < n) {
        uint64_t now = mono_now_us();
        if (now >= deadline)
            break;
        /* Ask (again) for the open ones in the window [first, first+W). */
        while (first < n && done[first])
            first++;
        size_t asked = 0;
        for (size_t i = first; i < n && asked < ACCOUNTS_WINDOW; i++) {
            if (done[i])
                continue;
            asked++;
            if (last_send[i] != 0 && now - last_send[i] < CLIENT_QUERY_RETRY_MS * 1000u)
                continue;
            msg_buf_reset(&c->buf);
            if (msg_encode_query(&c->buf, MSG_QUERY_BALANCE, base + i, pks[i].b) != 0) {
                rc = tally_errf(err, TALLY_ENOMEM, "out of memory");
                goto out;
            }
            send_all(c, c->buf.data, c->buf.len);
            last_send[i] = now;
        }
        uint64_t wait = deadline - now;
        if (wait > 20000)
            wait = 20000;
        wait_readable(c, wait);
        for (uint32_t r = 0; r < c->n; r++) {
            bool more = true;
            while (more) {
                nng_msg *msg = NULL;
                struct msg m;
                if (recv_verified(c, r, &msg, &m, &more) != 0)
                    continue;
                heard = true;
                uint64_t id = m.u.query_reply.request_id;
                if (m.type != MSG_QUERY_REPLY || m.u.query_reply.kind != MSG_QUERY_BALANCE ||
                    id < base || id - base >= n || done[id - base] ||
                    memcmp(m.u.query_reply.key, pks[id - base].b, 32) != 0) {
                    nng_msg_free(msg);
                    continue;
                }
                size_t i = (size_t)(id - base);
                struct qvote *vs = &votes[i * c->n];
                vs[m.sender] = (struct qvote){.has = true,
                                              .found = m.u.query_reply.found,
                                              .a = m.u.query_reply.a,
                                              .b = m.u.query_reply.b,
                                              .c = m.u.query_reply.c,
                                              .height = m.u.query_reply.height};
                nng_msg_free(msg);
                const struct qvote *v = &vs[m.sender];
                uint32_t match = 0;
                uint64_t height = 0;
                for (uint32_t t = 0; t < c->n; t++)
                    if (vs[t].has && vs[t].found == v->found && vs[t].a == v->a &&
                        vs[t].b == v->b && vs[t].c == v->c) {
                        match++;
                        if (vs[t].height > height)
                            height = vs[t].height;
                    }
                if (match >= q) {
                    done[i] = true;
                    ndone++;
                    out[i] = (struct client_account){
                        .found = v->found != 0, .balance = v->a, .nonce = v->b, .height = height};
                }
            }
        }
    }
    if (ndone < n) {
        if (!heard)
            rc = tally_errf(err, TALLY_EUNAVAIL,
                            "no replica answered within %llu ms (is the cluster running?)",
                            (unsigned long long)timeout_ms);
        else
            rc = tally_errf(err, TALLY_ETIMEOUT,
                            "%zu of %zu accounts got no f+1 matching answers within %llu ms",
                            n - ndone, n, (unsigned long long)timeout_ms);
    }
out:
    free(votes);
    free(last_send);
    free(done);
    return rc;
}

/* ---- command-line helpers ------------------------------------------------ */

int client_config_load(const char *path, struct tally_config *cfg, struct tally_err *err)
{
    if (path == NULL) {
        path = "testnet/cluster.json";
        if (access(path, F_OK) != 0)
            return tally_errf(err, TALLY_ENOTFOUND,
                              "no --config CLUSTER given and ./testnet/cluster.json does not "
                              "exist");
    }
    return config_load(path, cfg, err);
}

int client_parse_account(const char *arg, tc_pubkey *pk, struct tally_err *err)
{
    if (arg[0] == '@') {
        tc_keypair kp = {0};
        int rc = tc_keyfile_read(arg + 1, &kp, err);
        if (rc != 0)
            return rc;
        *pk = kp.pk;
        tc_keypair_free(&kp);
        return 0;
    }
    if (strlen(arg) != 2 * TC_PUBKEY_BYTES || tc_pubkey_parse(arg, pk, NULL) != TALLY_OK)
        return tally_errf(err, TALLY_EFORMAT,
                          "'%s': an account is %d hex characters (a public key) or @KEYFILE", arg,
                          2 * TC_PUBKEY_BYTES);
    return 0;
}

int client_parse_hash(const char *arg, tc_hash *h, struct tally_err *err)
{
    if (strlen(arg) != 2 * TC_HASH_BYTES || tc_hex_decode(arg, h->b, TC_HASH_BYTES) != 0)
        return tally_errf(err, TALLY_EFORMAT, "'%s': a transaction hash is 64 hex characters", arg);
    return 0;
}

int client_parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s == '\0')
        return -1;
    uint64_t v = 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int client_parse_seconds(const char *s, uint64_t *ms)
{
    char *end = NULL;
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || v < 0 || v > 86400.0)
        return -1;
    *ms = (uint64_t)(v * 1000.0 + 0.5);
    return 0;
}
