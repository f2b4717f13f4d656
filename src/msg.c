/* Protocol message codec (src/msg.h): a bounds-checked cursor for decoding,
 * a growable buffer for encoding. Decoding never allocates and never reads
 * past `len`; every count is checked against its limit before it is used in
 * arithmetic. Peer bytes are never asserted on. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ledger/cert.h"
#include "src/msg.h"

#define MSG_SIG_BYTES TC_SIG_BYTES
#define MSG_PHASE_BODY (8 + 8 + TC_HASH_BYTES)
#define MSG_REPLY_ENTRY_BYTES (TC_HASH_BYTES + 1)
#define MSG_QUERY_BODY (1 + 8 + 32)
#define MSG_QUERY_REPLY_BODY (1 + 8 + 32 + 1 + 8 + 8 + 8 + 1)
#define MSG_STATUS_ACTIVE_BODY (8 + 8 + 8 + 8 + 8)
#define MSG_CHECKPOINT_BODY (8 + TC_HASH_BYTES + TC_HASH_BYTES + TC_SIG_BYTES)
#define MSG_STATE_REQ_BODY (8 + 8)

/* --- little-endian helpers ------------------------------------------------ */

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) | ((uint64_t)get_u32(p + 4) << 32);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* --- decoding ------------------------------------------------------------- */

/* A read cursor over [p, p + len). Every take fails once the data runs out. */
struct msg_cursor {
    const uint8_t *p;
    size_t len, off;
};

static bool cur_take(struct msg_cursor *c, size_t n, const uint8_t **out)
{
    if (n > c->len - c->off)
        return false;
    *out = c->p + c->off;
    c->off += n;
    return true;
}

static bool cur_u8(struct msg_cursor *c, uint8_t *v)
{
    const uint8_t *b;
    if (!cur_take(c, 1, &b))
        return false;
    *v = b[0];
    return true;
}

static bool cur_u32(struct msg_cursor *c, uint32_t *v)
{
    const uint8_t *b;
    if (!cur_take(c, 4, &b))
        return false;
    *v = get_u32(b);
    return true;
}

static bool cur_u64(struct msg_cursor *c, uint64_t *v)
{
    const uint8_t *b;
    if (!cur_take(c, 8, &b))
        return false;
    *v = get_u64(b);
    return true;
}

static bool cur_copy(struct msg_cursor *c, void *dst, size_t n)
{
    const uint8_t *b;
    if (!cur_take(c, n, &b))
        return false;
    memcpy(dst, b, n);
    return true;
}

static const char *type_name(enum msg_type t)
{
    switch (t) {
    case MSG_REQUEST:
        return "REQUEST";
    case MSG_PRE_PREPARE:
        return "PRE-PREPARE";
    case MSG_PREPARE:
        return "PREPARE";
    case MSG_COMMIT:
        return "COMMIT";
    case MSG_REPLY:
        return "REPLY";
    case MSG_QUERY:
        return "QUERY";
    case MSG_QUERY_REPLY:
        return "QUERY-REPLY";
    case MSG_STATUS_REQ:
        return "STATUS-REQ";
    case MSG_STATUS_REPLY:
        return "STATUS-REPLY";
    case MSG_STATUS_ACTIVE:
        return "STATUS-ACTIVE";
    case MSG_CHECKPOINT:
        return "CHECKPOINT";
    case MSG_STATE_REQ:
        return "STATE-REQ";
    case MSG_STATE_RESP:
        return "STATE-RESP";
    case MSG_VIEW_CHANGE:
        return "VIEW-CHANGE";
    case MSG_NEW_VIEW:
        return "NEW-VIEW";
    default:
        return "?";
    }
}

int msg_type_is_client(enum msg_type type)
{
    return type == MSG_REQUEST || type == MSG_QUERY || type == MSG_STATUS_REQ;
}

/* A count-prefixed array of `item` byte records: 0 < min..max, exact fit.
 * The count is checked against its limit before it is multiplied. */
static int take_array(struct msg_cursor *c, uint32_t min, uint32_t max, size_t item,
                      uint32_t *count, const uint8_t **items, const char *what,
                      struct tally_err *err)
{
    if (!cur_u32(c, count))
        return tally_errf(err, TALLY_ETRUNC, "%s count truncated", what);
    if (*count > max)
        return tally_errf(err, TALLY_ETOOBIG, "%s count %u exceeds %u", what, *count, max);
    if (*count < min)
        return tally_errf(err, TALLY_EFORMAT, "%s count %u below %u", what, *count, min);
    if (!cur_take(c, (size_t)*count * item, items))
        return tally_errf(err, TALLY_ETRUNC, "%s: %u entries truncated", what, *count);
    return TALLY_OK;
}

/* One prepared entry of a VIEW_CHANGE: structure only. */
static int skip_vc_entry(struct msg_cursor *c, uint32_t i, struct tally_err *err)
{
    const uint8_t *x;
    uint32_t count, nprep;
    if (!cur_take(c, 8 + 8 + TC_HASH_BYTES, &x) || !cur_u32(c, &count))
        return tally_errf(err, TALLY_ETRUNC, "view-change entry %u truncated", i);
    if (count > MSG_MAX_BATCH)
        return tally_errf(err, TALLY_ETOOBIG, "view-change entry %u batch of %u", i, count);
    if (!cur_take(c, (size_t)count * LEDGER_TX_BYTES, &x) || !cur_u32(c, &nprep))
        return tally_errf(err, TALLY_ETRUNC, "view-change entry %u truncated", i);
    if (nprep > MSG_MAX_VC_PREPARES)
        return tally_errf(err, TALLY_ETOOBIG, "view-change entry %u has %u prepares", i, nprep);
    if (!cur_take(c, (size_t)nprep * MSG_VC_PREPARE_BYTES, &x))
        return tally_errf(err, TALLY_ETRUNC, "view-change entry %u prepares truncated", i);
    return TALLY_OK;
}

static int decode_view_change(struct msg_cursor *c, struct msg *m, struct tally_err *err)
{
    typeof(m->u.view_change) *v = &m->u.view_change;
    if (!cur_u64(c, &v->new_view) || !cur_u64(c, &v->stable) || !cur_u32(c, &v->cert_len))
        return tally_errf(err, TALLY_ETRUNC, "view-change header truncated");
    if (v->new_view == 0)
        return tally_errf(err, TALLY_EFORMAT, "view-change to view 0");
    if ((v->stable == 0) != (v->cert_len == 0) || v->cert_len > LEDGER_CERT_MAX_BYTES)
        return tally_errf(err, TALLY_EFORMAT, "view-change certificate of %u bytes for seq %llu",
                          v->cert_len, (unsigned long long)v->stable);
    if (!cur_take(c, v->cert_len, &v->cert) || !cur_u32(c, &v->nentries))
        return tally_errf(err, TALLY_ETRUNC, "view-change certificate truncated");
    if (v->nentries > MSG_MAX_VC_ENTRIES)
        return tally_errf(err, TALLY_ETOOBIG, "view-change with %u entries", v->nentries);
    size_t start = c->off;
    for (uint32_t i = 0; i < v->nentries; i++) {
        int rc = skip_vc_entry(c, i, err);
        if (rc != TALLY_OK)
            return rc;
    }
    v->entries = c->p + start;
    v->entries_len = c->off - start;
    return TALLY_OK;
}

static int decode_new_view(struct msg_cursor *c, struct msg *m, struct tally_err *err)
{
    typeof(m->u.new_view) *v = &m->u.new_view;
    if (!cur_u64(c, &v->view) || !cur_u32(c, &v->nvc))
        return tally_errf(err, TALLY_ETRUNC, "new-view header truncated");
    if (v->view == 0 || v->nvc == 0 || v->nvc > MSG_MAX_VC_PREPARES)
        return tally_errf(err, TALLY_EFORMAT, "new-view for view %llu with %u view-changes",
                          (unsigned long long)v->view, v->nvc);
    size_t start = c->off;
    for (uint32_t i = 0; i < v->nvc; i++) {
        uint32_t len;
        const uint8_t *bytes;
        if (!cur_u32(c, &len) || !cur_take(c, len, &bytes))
            return tally_errf(err, TALLY_ETRUNC, "new-view: view-change %u truncated", i);
        struct msg inner;
        struct tally_err e2 = {0};
        if (msg_decode(bytes, len, len, &inner, &e2) != TALLY_OK || inner.type != MSG_VIEW_CHANGE)
            return tally_errf(err, TALLY_EFORMAT, "new-view: view-change %u does not decode: %s", i,
                              e2.msg[0] ? e2.msg : "not a VIEW-CHANGE");
    }
    v->vcs = c->p + start;
    v->vcs_len = c->off - start;
    if (!cur_u64(c, &v->min_seq) || !cur_u32(c, &v->nprops))
        return tally_errf(err, TALLY_ETRUNC, "new-view re-proposals truncated");
    if (v->nprops > MSG_MAX_VC_ENTRIES)
        return tally_errf(err, TALLY_ETOOBIG, "new-view with %u re-proposals", v->nprops);
    start = c->off;
    for (uint32_t i = 0; i < v->nprops; i++) {
        const uint8_t *x;
        uint32_t count;
        if (!cur_take(c, 8, &x) || !cur_u32(c, &count))
            return tally_errf(err, TALLY_ETRUNC, "new-view re-proposal %u truncated", i);
        if (count > MSG_MAX_BATCH)
            return tally_errf(err, TALLY_ETOOBIG, "new-view re-proposal %u of %u txs", i, count);
        if (!cur_take(c, (size_t)count * LEDGER_TX_BYTES + TC_SIG_BYTES, &x))
            return tally_errf(err, TALLY_ETRUNC, "new-view re-proposal %u truncated", i);
    }
    v->props = c->p + start;
    v->props_len = c->off - start;
    return TALLY_OK;
}

void msg_vc_iter(const struct msg *m, struct msg_iter *it)
{
    *it = (struct msg_iter){.p = m->u.view_change.entries,
                            .len = m->u.view_change.entries_len,
                            .left = m->u.view_change.nentries};
}

bool msg_vc_next(struct msg_iter *it, struct msg_vc_entry *out)
{
    if (it->left == 0)
        return false;
    struct msg_cursor c = {.p = it->p, .len = it->len, .off = it->off};
    const uint8_t *d;
    if (!cur_u64(&c, &out->view) || !cur_u64(&c, &out->seq) || !cur_take(&c, TC_HASH_BYTES, &d) ||
        !cur_u32(&c, &out->batch.count) ||
        !cur_take(&c, (size_t)out->batch.count * LEDGER_TX_BYTES, &out->batch.tx_bytes) ||
        !cur_u32(&c, &out->nprepares) ||
        !cur_take(&c, (size_t)out->nprepares * MSG_VC_PREPARE_BYTES, &out->prepares))
        return false;
    memcpy(out->digest.b, d, TC_HASH_BYTES);
    it->off = c.off;
    it->left--;
    return true;
}

void msg_nv_vc_iter(const struct msg *m, struct msg_iter *it)
{
    *it = (struct msg_iter){
        .p = m->u.new_view.vcs, .len = m->u.new_view.vcs_len, .left = m->u.new_view.nvc};
}

bool msg_nv_vc_next(struct msg_iter *it, const uint8_t **bytes, size_t *len)
{
    if (it->left == 0)
        return false;
    struct msg_cursor c = {.p = it->p, .len = it->len, .off = it->off};
    uint32_t n;
    if (!cur_u32(&c, &n) || !cur_take(&c, n, bytes))
        return false;
    *len = n;
    it->off = c.off;
    it->left--;
    return true;
}

void msg_nv_prop_iter(const struct msg *m, struct msg_iter *it)
{
    *it = (struct msg_iter){
        .p = m->u.new_view.props, .len = m->u.new_view.props_len, .left = m->u.new_view.nprops};
}

bool msg_nv_prop_next(struct msg_iter *it, struct msg_nv_prop *out)
{
    if (it->left == 0)
        return false;
    struct msg_cursor c = {.p = it->p, .len = it->len, .off = it->off};
    if (!cur_u64(&c, &out->seq) || !cur_u32(&c, &out->batch.count) ||
        !cur_take(&c, (size_t)out->batch.count * LEDGER_TX_BYTES, &out->batch.tx_bytes) ||
        !cur_copy(&c, out->pp_sig.b, TC_SIG_BYTES))
        return false;
    it->off = c.off;
    it->left--;
    return true;
}

static int decode_body(struct msg_cursor *c, struct msg *m, struct tally_err *err)
{
    int rc;
    switch (m->type) {
    case MSG_REQUEST:
        rc = take_array(c, 1, MSG_MAX_BATCH, LEDGER_TX_BYTES, &m->u.request.count,
                        &m->u.request.tx_bytes, "request", err);
        return rc;
    case MSG_PRE_PREPARE:
        if (!cur_u64(c, &m->u.pre_prepare.view) || !cur_u64(c, &m->u.pre_prepare.seq))
            return tally_errf(err, TALLY_ETRUNC, "pre-prepare header truncated");
        rc = take_array(c, 0, MSG_MAX_BATCH, LEDGER_TX_BYTES, &m->u.pre_prepare.batch.count,
                        &m->u.pre_prepare.batch.tx_bytes, "pre-prepare batch", err);
        if (rc != TALLY_OK)
            return rc;
        msg_batch_digest(&m->u.pre_prepare.batch, &m->u.pre_prepare.digest);
        return TALLY_OK;
    case MSG_PREPARE:
    case MSG_COMMIT:
        if (!cur_u64(c, &m->u.phase.view) || !cur_u64(c, &m->u.phase.seq) ||
            !cur_copy(c, m->u.phase.digest.b, TC_HASH_BYTES))
            return tally_errf(err, TALLY_ETRUNC, "%s body truncated", type_name(m->type));
        return TALLY_OK;
    case MSG_REPLY:
        if (!cur_u64(c, &m->u.reply.view) || !cur_u64(c, &m->u.reply.height) ||
            !cur_copy(c, m->u.reply.block_hash.b, TC_HASH_BYTES))
            return tally_errf(err, TALLY_ETRUNC, "reply header truncated");
        return take_array(c, 1, MSG_MAX_BATCH, MSG_REPLY_ENTRY_BYTES, &m->u.reply.count,
                          &m->u.reply.entries, "reply", err);
    case MSG_QUERY:
        if (!cur_u8(c, &m->u.query.kind) || !cur_u64(c, &m->u.query.request_id) ||
            !cur_copy(c, m->u.query.key, 32))
            return tally_errf(err, TALLY_ETRUNC, "query truncated");
        if (m->u.query.kind != MSG_QUERY_BALANCE && m->u.query.kind != MSG_QUERY_TX)
            return tally_errf(err, TALLY_EFORMAT, "query kind %u unknown", m->u.query.kind);
        return TALLY_OK;
    case MSG_QUERY_REPLY: {
        typeof(m->u.query_reply) *q = &m->u.query_reply;
        if (!cur_u8(c, &q->kind) || !cur_u64(c, &q->request_id) || !cur_copy(c, q->key, 32) ||
            !cur_u8(c, &q->found) || !cur_u64(c, &q->height) || !cur_u64(c, &q->a) ||
            !cur_u64(c, &q->b) || !cur_u8(c, &q->c))
            return tally_errf(err, TALLY_ETRUNC, "query reply truncated");
        if (q->kind != MSG_QUERY_BALANCE && q->kind != MSG_QUERY_TX)
            return tally_errf(err, TALLY_EFORMAT, "query reply kind %u unknown", q->kind);
        if (q->found > 1)
            return tally_errf(err, TALLY_EFORMAT, "query reply found flag %u", q->found);
        return TALLY_OK;
    }
    case MSG_STATUS_REQ:
        return TALLY_OK;
    case MSG_STATUS_REPLY: {
        const uint8_t *json;
        uint32_t n;
        rc = take_array(c, 0, MSG_MAX_STATUS_JSON, 1, &n, &json, "status json", err);
        m->u.status.len = n;
        m->u.status.json = (const char *)json;
        return rc;
    }
    case MSG_STATUS_ACTIVE:
        if (!cur_u64(c, &m->u.status_active.view) ||
            !cur_u64(c, &m->u.status_active.last_executed) ||
            !cur_u64(c, &m->u.status_active.stable) || !cur_u64(c, &m->u.status_active.suspect) ||
            !cur_u64(c, &m->u.status_active.flags))
            return tally_errf(err, TALLY_ETRUNC, "status-active truncated");
        return TALLY_OK;
    case MSG_CHECKPOINT:
        if (!cur_u64(c, &m->u.checkpoint.seq) ||
            !cur_copy(c, m->u.checkpoint.block_hash.b, TC_HASH_BYTES) ||
            !cur_copy(c, m->u.checkpoint.state_digest.b, TC_HASH_BYTES) ||
            !cur_copy(c, m->u.checkpoint.statement_sig.b, TC_SIG_BYTES))
            return tally_errf(err, TALLY_ETRUNC, "checkpoint truncated");
        if (m->u.checkpoint.seq == 0)
            return tally_errf(err, TALLY_EFORMAT, "checkpoint at seq 0");
        return TALLY_OK;
    case MSG_STATE_REQ:
        if (!cur_u64(c, &m->u.state_req.from) || !cur_u64(c, &m->u.state_req.to))
            return tally_errf(err, TALLY_ETRUNC, "state request truncated");
        if (m->u.state_req.from == 0 || m->u.state_req.to < m->u.state_req.from)
            return tally_errf(err, TALLY_EFORMAT, "state request range %llu..%llu",
                              (unsigned long long)m->u.state_req.from,
                              (unsigned long long)m->u.state_req.to);
        return TALLY_OK;
    case MSG_STATE_RESP: {
        if (!cur_u64(c, &m->u.state_resp.from))
            return tally_errf(err, TALLY_ETRUNC, "state response truncated");
        if (m->u.state_resp.from == 0)
            return tally_errf(err, TALLY_EFORMAT, "state response from height 0");
        rc = take_array(c, 1, MSG_MAX_STATE_CHUNK, 1, &m->u.state_resp.len, &m->u.state_resp.chunk,
                        "state chunk", err);
        return rc;
    }
    case MSG_VIEW_CHANGE:
        return decode_view_change(c, m, err);
    case MSG_NEW_VIEW:
        return decode_new_view(c, m, err);
    default:
        return tally_errf(err, TALLY_EFORMAT, "message type %d unknown", (int)m->type);
    }
}

int msg_decode(const uint8_t *buf, size_t len, size_t max_body, struct msg *out,
               struct tally_err *err)
{
    memset(out, 0, sizeof(*out));
    if (buf == NULL || len < MSG_HEADER_BYTES)
        return tally_errf(err, TALLY_ETRUNC, "message header truncated (%zu bytes)", len);
    if (memcmp(buf, MSG_MAGIC, 4) != 0)
        return tally_errf(err, TALLY_EFORMAT, "bad magic");
    uint8_t type = buf[4];
    if (type < MSG_REQUEST || type >= MSG_TYPE_MAX)
        return tally_errf(err, TALLY_EFORMAT, "message type %u unknown", type);
    if (buf[5] != 0)
        return tally_errf(err, TALLY_EFORMAT, "reserved byte is %u, not 0", buf[5]);
    out->type = (enum msg_type)type;
    out->sender = get_u16(buf + 6);
    bool client = msg_type_is_client(out->type);
    if (client != (out->sender == MSG_SENDER_CLIENT))
        return tally_errf(err, TALLY_EFORMAT, "%s with sender %u", type_name(out->type),
                          out->sender);
    uint32_t body = get_u32(buf + 8);
    if (body > max_body)
        return tally_errf(err, TALLY_ETOOBIG, "%s body of %u bytes exceeds %zu",
                          type_name(out->type), body, max_body);
    size_t rest = len - MSG_HEADER_BYTES;
    if (body > rest || rest - body < MSG_SIG_BYTES)
        return tally_errf(err, TALLY_ETRUNC, "%s truncated: %zu bytes of %zu", type_name(out->type),
                          len, (size_t)MSG_HEADER_BYTES + body + MSG_SIG_BYTES);
    if (rest - body > MSG_SIG_BYTES)
        return tally_errf(err, TALLY_EFORMAT, "%s followed by %zu trailing bytes",
                          type_name(out->type), rest - body - MSG_SIG_BYTES);

    struct msg_cursor c = {.p = buf + MSG_HEADER_BYTES, .len = body, .off = 0};
    int rc = decode_body(&c, out, err);
    if (rc == TALLY_OK && c.off != c.len)
        rc = tally_errf(err, TALLY_EFORMAT, "%s body has %zu trailing bytes", type_name(out->type),
                        c.len - c.off);
    if (rc != TALLY_OK) {
        enum msg_type t = out->type;
        memset(out, 0, sizeof(*out));
        out->type = t;
        return rc;
    }
    memcpy(out->sig.b, buf + MSG_HEADER_BYTES + body, MSG_SIG_BYTES);
    if (client) {
        static const uint8_t zero[MSG_SIG_BYTES];
        if (memcmp(out->sig.b, zero, MSG_SIG_BYTES) != 0) {
            memset(out, 0, sizeof(*out));
            return tally_errf(err, TALLY_EFORMAT, "client message with a nonzero signature");
        }
    }
    out->signed_bytes = buf;
    out->signed_len = MSG_HEADER_BYTES + body;
    return TALLY_OK;
}

int msg_verify(const struct msg *m, const tc_pubkey *key)
{
    if (m == NULL || key == NULL || m->signed_bytes == NULL)
        return TALLY_EINVAL;
    return tc_verify(key, m->signed_bytes, m->signed_len, &m->sig);
}

void msg_batch_digest(const struct msg_batch *b, tc_hash *out)
{
    uint8_t prefix[sizeof(MSG_BATCH_TAG) + 4];
    memcpy(prefix, MSG_BATCH_TAG, sizeof(MSG_BATCH_TAG)); /* with its NUL */
    put_u32(prefix + sizeof(MSG_BATCH_TAG), b->count);
    tc_sha256_2(prefix, sizeof(prefix), b->tx_bytes, (size_t)b->count * LEDGER_TX_BYTES, out);
}

void msg_reply_entry_get(const struct msg *m, uint32_t i, struct msg_reply_entry *out)
{
    memset(out, 0, sizeof(*out));
    if (m->type != MSG_REPLY || i >= m->u.reply.count)
        return;
    const uint8_t *e = m->u.reply.entries + (size_t)i * MSG_REPLY_ENTRY_BYTES;
    memcpy(out->tx_hash.b, e, TC_HASH_BYTES);
    out->result = e[TC_HASH_BYTES];
}

/* --- encoding ------------------------------------------------------------- */

void msg_buf_init(struct msg_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void msg_buf_free(struct msg_buf *b)
{
    free(b->data);
    msg_buf_init(b);
}

void msg_buf_reset(struct msg_buf *b)
{
    b->len = 0;
}

/* Room for n more bytes; returns a pointer to them (len advanced) or NULL. */
static uint8_t *buf_grow(struct msg_buf *b, size_t n)
{
    if (n > SIZE_MAX - b->len)
        return NULL;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
        uint8_t *d = realloc(b->data, cap);
        if (d == NULL)
            return NULL;
        b->data = d;
        b->cap = cap;
    }
    uint8_t *p = b->data + b->len;
    b->len += n;
    return p;
}

static void sign_keypair(void *ctx, const uint8_t *bytes, size_t len, tc_sig *out)
{
    tc_sign((const tc_keypair *)ctx, bytes, len, out);
}

struct msg_signer msg_signer_keypair(const tc_keypair *kp)
{
    struct msg_signer s = {.ctx = (void *)kp, .sign = sign_keypair};
    return s;
}

/* An envelope in progress: `start` is where it begins in out. */
struct msg_env {
    struct msg_buf *out;
    size_t start;
};

static int env_begin(struct msg_env *e, struct msg_buf *out, enum msg_type type, uint32_t sender,
                     size_t body)
{
    if (body > UINT32_MAX || sender > 0xFFFFu)
        return TALLY_ETOOBIG;
    e->out = out;
    e->start = out->len;
    uint8_t *h = buf_grow(out, MSG_HEADER_BYTES + body + MSG_SIG_BYTES);
    if (h == NULL)
        return TALLY_ENOMEM;
    out->len = e->start + MSG_HEADER_BYTES; /* the body is appended next */
    memcpy(h, MSG_MAGIC, 4);
    h[4] = (uint8_t)type;
    h[5] = 0;
    h[6] = (uint8_t)sender;
    h[7] = (uint8_t)(sender >> 8);
    put_u32(h + 8, (uint32_t)body);
    return TALLY_OK;
}

/* Space was reserved by env_begin, so appends cannot fail. */
static void env_put(struct msg_env *e, const void *bytes, size_t n)
{
    if (n == 0)
        return;
    memcpy(e->out->data + e->out->len, bytes, n);
    e->out->len += n;
}

static void env_u8(struct msg_env *e, uint8_t v)
{
    env_put(e, &v, 1);
}

static void env_u32(struct msg_env *e, uint32_t v)
{
    uint8_t b[4];
    put_u32(b, v);
    env_put(e, b, 4);
}

static void env_u64(struct msg_env *e, uint64_t v)
{
    uint8_t b[8];
    put_u64(b, v);
    env_put(e, b, 8);
}

static int env_end(struct msg_env *e, const struct msg_signer *signer)
{
    uint8_t *env = e->out->data + e->start;
    size_t signed_len = e->out->len - e->start;
    tc_sig sig;
    memset(&sig, 0, sizeof(sig));
    if (signer != NULL)
        signer->sign(signer->ctx, env, signed_len, &sig);
    env_put(e, sig.b, MSG_SIG_BYTES);
    return TALLY_OK;
}

static int check_batch(const struct msg_batch *b, uint32_t min)
{
    if (b == NULL || b->count > MSG_MAX_BATCH)
        return TALLY_ETOOBIG;
    if (b->count < min || (b->count > 0 && b->tx_bytes == NULL))
        return TALLY_EINVAL;
    return TALLY_OK;
}

int msg_encode_request(struct msg_buf *out, const struct msg_batch *txs)
{
    int rc = check_batch(txs, 1);
    if (rc != TALLY_OK)
        return rc;
    size_t tx_len = (size_t)txs->count * LEDGER_TX_BYTES;
    struct msg_env e;
    rc = env_begin(&e, out, MSG_REQUEST, MSG_SENDER_CLIENT, 4 + tx_len);
    if (rc != TALLY_OK)
        return rc;
    env_u32(&e, txs->count);
    env_put(&e, txs->tx_bytes, tx_len);
    return env_end(&e, NULL);
}

int msg_encode_pre_prepare(struct msg_buf *out, uint32_t sender, uint64_t view, uint64_t seq,
                           const struct msg_batch *batch, const struct msg_signer *signer)
{
    int rc = check_batch(batch, 0);
    if (rc != TALLY_OK)
        return rc;
    if (sender >= MSG_SENDER_CLIENT)
        return TALLY_EINVAL;
    size_t tx_len = (size_t)batch->count * LEDGER_TX_BYTES;
    struct msg_env e;
    rc = env_begin(&e, out, MSG_PRE_PREPARE, sender, 8 + 8 + 4 + tx_len);
    if (rc != TALLY_OK)
        return rc;
    env_u64(&e, view);
    env_u64(&e, seq);
    env_u32(&e, batch->count);
    env_put(&e, batch->tx_bytes, tx_len);
    return env_end(&e, signer);
}

int msg_encode_phase(struct msg_buf *out, enum msg_type type, uint32_t sender, uint64_t view,
                     uint64_t seq, const tc_hash *digest, const struct msg_signer *signer)
{
    if ((type != MSG_PREPARE && type != MSG_COMMIT) || sender >= MSG_SENDER_CLIENT)
        return TALLY_EINVAL;
    struct msg_env e;
    int rc = env_begin(&e, out, type, sender, MSG_PHASE_BODY);
    if (rc != TALLY_OK)
        return rc;
    env_u64(&e, view);
    env_u64(&e, seq);
    env_put(&e, digest->b, TC_HASH_BYTES);
    return env_end(&e, signer);
}

int msg_encode_reply(struct msg_buf *out, uint32_t sender, uint64_t view, uint64_t height,
                     const tc_hash *block_hash, const struct msg_reply_entry *entries,
                     uint32_t count, const struct msg_signer *signer)
{
    if (count > MSG_MAX_BATCH)
        return TALLY_ETOOBIG;
    if (count == 0 || entries == NULL || sender >= MSG_SENDER_CLIENT)
        return TALLY_EINVAL;
    struct msg_env e;
    int rc = env_begin(&e, out, MSG_REPLY, sender,
                       8 + 8 + TC_HASH_BYTES + 4 + (size_t)count * MSG_REPLY_ENTRY_BYTES);
    if (rc != TALLY_OK)
        return rc;
    env_u64(&e, view);
    env_u64(&e, height);
    env_put(&e, block_hash->b, TC_HASH_BYTES);
    env_u32(&e, count);
    for (uint32_t i = 0; i < count; i++) {
        env_put(&e, entries[i].tx_hash.b, TC_HASH_BYTES);
        env_u8(&e, entries[i].result);
    }
    return env_end(&e, signer);
}

int msg_encode_query(struct msg_buf *out, uint8_t kind, uint64_t request_id, const uint8_t key[32])
{
    if (kind != MSG_QUERY_BALANCE && kind != MSG_QUERY_TX)
        return TALLY_EINVAL;
    struct msg_env e;
    int rc = env_begin(&e, out, MSG_QUERY, MSG_SENDER_CLIENT, MSG_QUERY_BODY);
    if (rc != TALLY_OK)
        return rc;
    env_u8(&e, kind);
    env_u64(&e, request_id);
    env_put(&e, key, 32);
    return env_end(&e, NULL);
}

int msg_encode_query_reply(struct msg_buf *out, uint32_t sender, uint8_t kind, uint64_t request_id,
                           const uint8_t key[32], uint8_t found, uint64_t height, uint64_t a,
                           uint64_t b, uint8_t c, const struct msg_signer *signer)
{
    if ((kind != MSG_QUERY_BALANCE && kind != MSG_QUERY_TX) || found > 1 ||
        sender >= MSG_SENDER_CLIENT)
        return TALLY_EINVAL;
    struct msg_env e;
    int rc = env_begin(&e, out, MSG_QUERY_REPLY, sender, MSG_QUERY_REPLY_BODY);
    if (rc != TALLY_OK)
        return rc;
    env_u8(&e, kind);
    env_u64(&e, request_id);
    env_put(&e, key, 32);
    env_u8(&e, found);
    env_u64(&e, height);
    env_u64(&e, a);
    env_u64(&e, b);
    env_u8(&e, c);
    return env_end(&e, signer);
}

int msg_encode_status_req(struct msg_buf *out)
{
    struct msg_env e;
    int rc = env_begin(&e, out, MSG_STATUS_REQ, MSG_SENDER_CLIENT, 0);
    if (rc != TALLY_OK)
        return rc;
    return env_end(&e, NULL);
}

int msg_encode_status_reply(struct msg_buf *out, uint32_t sender, const char *json, size_t len,
                            const struct msg_signer *signer)
{
    if (len > MSG_MAX_STATUS_JSON)
        return TALLY_ETOOBIG;
    if ((len > 0 && json == NULL) || sender >= MSG_SENDER_CLIENT)
        return TALLY_EINVAL;
    struct msg_env e;
    int rc = env_begin(&e, out, MSG_STATUS_REPLY, sender, 4 + len);
    if (rc != TALLY_OK)
        return rc;
    env_u32(&e, (uint32_t)len);
    env_put(&e, json, len);
    return env_end(&e, signer);
}

int msg_encode_status_active(struct msg_buf *out, uint32_t sender, uint64_t view,
                             uint64_t last_executed, uint64_t stable, uint64_t suspect,
                             uint64_t flags, const struct msg_signer *signer)
{
    if (sender >= MSG_SENDER_CLIENT)
        return TALLY_EINVAL;
    struct msg_env e;
    int rc = env_begin(&e, out, MSG_STATUS_ACTIVE, sender, MSG_STATUS_ACTIVE_BODY);
    if (rc != TALLY_OK)
        return rc;
    env_u64(&e, view);
    env_u64(&e, last_executed);
    env_u64(&e, stable);
    env_u64(&e, suspect);
    env_u64(&e, flags);
    return env_end(&e, signer);
}

int msg_encode_checkpoint(struct msg_buf *out, uint32_t sender, uint64_t seq,
                          const tc_hash *block_hash, const tc_hash *state_digest,
                          const tc_sig *statement_sig, const struct msg_signer *signer)
{
    if (sender >= MSG_SENDER_CLIENT || seq == 0)
        return TALLY_EINVAL;
    struct msg_env e;
    int rc = env_begin(&e, out, MSG_CHECKPOINT, sender, MSG_CHECKPOINT_BODY);
    if (rc != TALLY_OK)
        return rc;
    env_u64(&e, seq);
    env_put(&e, block_hash->b, TC_HASH_BYTES);
    env_put(&e, state_digest->b, TC_HASH_BYTES);
    env_put(&e, statement_sig->b, TC_SIG_BYTES);
    return env_end(&e, signer);
}

int msg_encode_state_req(struct msg_buf *out, uint32_t sender, uint64_t from, uint64_t to,
                         const struct msg_signer *signer)
{
    if (sender >= MSG_SENDER_CLIENT || from == 0 || to < from)
        return TALLY_EINVAL;
    struct msg_env e;
    int rc = env_begin(&e, out, MSG_STATE_REQ, sender, MSG_STATE_REQ_BODY);
    if (rc != TALLY_OK)
        return rc;
    env_u64(&e, from);
    env_u64(&e, to);
    return env_end(&e, signer);
}

int msg_encode_state_resp(struct msg_buf *out, uint32_t sender, uint64_t from, const uint8_t *chunk,
                          size_t len, const struct msg_signer *signer)
{
    if (sender >= MSG_SENDER_CLIENT || from == 0 || len == 0 || chunk == NULL)
        return TALLY_EINVAL;
    if (len > MSG_MAX_STATE_CHUNK)
        return TALLY_ETOOBIG;
    struct msg_env e;
    int rc = env_begin(&e, out, MSG_STATE_RESP, sender, 8 + 4 + len);
    if (rc != TALLY_OK)
        return rc;
    env_u64(&e, from);
    env_u32(&e, (uint32_t)len);
    env_put(&e, chunk, len);
    return env_end(&e, signer);
}

int msg_encode_body(struct msg_buf *out, enum msg_type type, uint32_t sender, const uint8_t *body,
                    size_t len, const struct msg_signer *signer)
{
    if (sender >= MSG_SENDER_CLIENT || (len > 0 && body == NULL))
        return TALLY_EINVAL;
    struct msg_env e;
    int rc = env_begin(&e, out, type, sender, len);
    if (rc != TALLY_OK)
        return rc;
    env_put(&e, body, len);
    return env_end(&e, signer);
}

bool msg_put(struct msg_buf *b, const void *p, size_t n)
{
    uint8_t *at = buf_grow(b, n);
    if (at == NULL)
        return false;
    if (n > 0)
        memcpy(at, p, n);
    return true;
}

bool msg_put_u16(struct msg_buf *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    return msg_put(b, x, 2);
}

bool msg_put_u32(struct msg_buf *b, uint32_t v)
{
    uint8_t x[4];
    put_u32(x, v);
    return msg_put(b, x, 4);
}

bool msg_put_u64(struct msg_buf *b, uint64_t v)
{
    uint8_t x[8];
    put_u64(x, v);
    return msg_put(b, x, 8);
}

/* Encode unsigned, then drop the (zero) signature: the bytes it would cover. */
int msg_signed_phase(struct msg_buf *out, enum msg_type type, uint32_t sender, uint64_t view,
                     uint64_t seq, const tc_hash *digest)
{
    msg_buf_reset(out);
    int rc = msg_encode_phase(out, type, sender, view, seq, digest, NULL);
    if (rc == TALLY_OK)
        out->len -= MSG_SIG_BYTES;
    return rc;
}

int msg_signed_pre_prepare(struct msg_buf *out, uint32_t sender, uint64_t view, uint64_t seq,
                           const struct msg_batch *batch)
{
    msg_buf_reset(out);
    int rc = msg_encode_pre_prepare(out, sender, view, seq, batch, NULL);
    if (rc == TALLY_OK)
        out->len -= MSG_SIG_BYTES;
    return rc;
}
