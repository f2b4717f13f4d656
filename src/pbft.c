/* The PBFT core: replica state, the log and its watermarks, quorums, sending,
 * in-order execution and the event entry points (Castro & Liskov, OSDI '99,
 * §4.2-§4.3; the handlers for each message live in recv_*.c).
 *
 * The log is a ring of 2 * window slots. Sequence numbers in (h, h + L] are
 * accepted (L = window, h = low watermark); slots in (h - L, h] are retained
 * so that a lagging replica can still be sent what it lacks. h is the last
 * stable checkpoint (§4.3: "the low-water mark h is equal to the sequence
 * number of the last stable checkpoint"; checkpoint.c), and never moves
 * backwards. Entries at or below h - L are discarded (reused). */
#include <stdlib.h>
#include <string.h>

#include "src/pbft_internal.h"

/* --- configuration -------------------------------------------------------- */

static bool config_ok(const struct pbft_config *c)
{
    if (c->n == 0 || c->n > PBFT_MAX_REPLICAS || c->n != 3 * c->f + 1 || c->id >= c->n)
        return false;
    if (c->checkpoint_interval == 0 || c->window == 0 || c->window % c->checkpoint_interval)
        return false;
    if (c->window > (1u << 20)) /* the ring holds 2 * window slots */
        return false;
    if (c->batch_max_txs == 0 || c->batch_max_txs > MSG_MAX_BATCH)
        return false;
    if (c->max_inflight == 0 || c->max_inflight > c->window)
        return false;
    return true;
}

static uint64_t pow2_at_least(uint64_t v)
{
    uint64_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

struct pbft *pbft_create(const struct pbft_config *cfg, const struct pbft_io *io,
                         uint64_t last_executed)
{
    if (cfg == NULL || io == NULL || !config_ok(cfg) || io->sign == NULL || io->persist == NULL ||
        io->send == NULL || io->execute == NULL)
        return NULL;
    struct pbft *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->cfg = *cfg;
    p->io = *io;
    if (cfg->test_quorum_override != 0) {
        p->quorum_commit = cfg->test_quorum_override;
        p->quorum_prepare = cfg->test_quorum_override - 1;
    } else {
        p->quorum_prepare = 2 * cfg->f;    /* "2f prepares from different backups" */
        p->quorum_commit = 2 * cfg->f + 1; /* "2f+1 matching commits" */
    }
    p->last_executed = last_executed;
    p->view_active = true;
    /* h is the last stable checkpoint and nothing else: 0 until a certificate
     * is restored (pbft_restore, PBFT_PERSIST_CHECKPOINT) or formed. It used
     * to start at the last multiple of K at or below last_executed, which a
     * replica restarted past an uncertified checkpoint put above its stable
     * checkpoint: it then refused a new view's re-proposals of seqs in
     * (stable, h] and accepted seqs up to h + L that its VIEW-CHANGE (built
     * from stable) cannot carry. */
    p->low = 0;
    p->next_seq = last_executed;
    p->nslots = 2 * cfg->window;
    p->slots = calloc(p->nslots, sizeof(*p->slots));
    p->nckpts = cfg->window / cfg->checkpoint_interval + 2;
    p->ckpts = calloc(p->nckpts, sizeof(*p->ckpts));
    uint64_t want = 4ull * cfg->batch_max_txs * cfg->max_inflight;
    p->qcap = pow2_at_least(want < 1024 ? 1024 : want > (1u << 20) ? (1u << 20) : want);
    p->queue = calloc(p->qcap, sizeof(*p->queue));
    /* Positions are absolute counters; start high so that requests can be
     * put back at the front (pbft_requeue_front) without wrapping. */
    p->qhead = p->qtail = 1ull << 40;
    p->setcap = 2 * p->qcap;
    p->set = calloc(p->setcap, sizeof(*p->set));
    msg_buf_init(&p->out);
    msg_buf_init(&p->chunk);
    msg_buf_init(&p->vc_body);
    msg_buf_init(&p->scratch);
    if (p->slots == NULL || p->queue == NULL || p->set == NULL || p->ckpts == NULL) {
        pbft_destroy(p);
        return NULL;
    }
    return p;
}

void pbft_destroy(struct pbft *p)
{
    if (p == NULL)
        return;
    if (p->slots != NULL) {
        for (uint64_t i = 0; i < p->nslots; i++) {
            free(p->slots[i].txs);
            free(p->slots[i].hashes);
        }
    }
    free(p->slots);
    free(p->queue);
    free(p->set);
    free(p->ckpts);
    for (uint32_t i = 0; i < PBFT_MAX_REPLICAS; i++)
        free(p->vcs[i].bytes);
    free(p->nv_bytes);
    msg_buf_free(&p->out);
    msg_buf_free(&p->chunk);
    msg_buf_free(&p->vc_body);
    msg_buf_free(&p->scratch);
    free(p);
}

uint32_t pbft_primary_of(const struct pbft *p, uint64_t view)
{
    /* §4.1: "The primary of a view is replica p such that p = v mod |R|." */
    return (uint32_t)(view % p->cfg.n);
}

bool pbft_is_primary(const struct pbft *p)
{
    return pbft_primary_of(p, p->view) == p->cfg.id;
}

uint64_t pbft_view(const struct pbft *p)
{
    return p->view;
}

void pbft_get_status(const struct pbft *p, struct pbft_status *out)
{
    memset(out, 0, sizeof(*out));
    out->view = p->view;
    out->primary = pbft_primary_of(p, p->view);
    out->last_executed = p->last_executed;
    out->last_stable_checkpoint = p->stable;
    out->low_watermark = p->low;
    out->high_watermark = p->low + p->cfg.window;
    out->queued_requests = p->qlive;
    out->dropped_messages = p->dropped;
    out->state_transfer = p->st.active;
    out->state_target = p->st.target;
    out->state_chunks = p->st.chunks;
    out->state_bad_chunks = p->st.bad_chunks;
    out->checkpoints_stable = p->checkpoints_stable;
    for (uint64_t i = 0; i < p->nslots; i++)
        if (p->slots[i].seq != 0)
            out->log_slots_used++;
    out->checkpoint_votes = pbft_checkpoint_votes(p);
    out->view_active = p->view_active;
    out->views_changed = p->views_changed;
    out->view_timeout_ms = pbft_vc_timeout(p);
}

/* --- the log -------------------------------------------------------------- */

bool pbft_in_window(const struct pbft *p, uint64_t seq)
{
    /* §4.2: accept only if "the sequence number n is between a low water mark,
     * h, and a high water mark, H" (h < n <= H = h + L). */
    return seq > p->low && seq - p->low <= p->cfg.window;
}

static void slot_reset(struct pbft_slot *s, uint64_t seq, uint64_t now_ms)
{
    uint8_t *txs = s->txs;
    tc_hash *hashes = s->hashes;
    uint32_t cap = s->cap;
    memset(s, 0, sizeof(*s));
    s->txs = txs;
    s->hashes = hashes;
    s->cap = cap;
    s->seq = seq;
    s->since_ms = now_ms;
}

void pbft_slot_progress_reset(struct pbft *p, struct pbft_slot *s, uint64_t seq)
{
    slot_reset(s, seq, p->now_ms);
}

struct pbft_slot *pbft_slot_find(struct pbft *p, uint64_t seq)
{
    if (seq == 0)
        return NULL;
    struct pbft_slot *s = &p->slots[seq % p->nslots];
    return s->seq == seq ? s : NULL;
}

struct pbft_slot *pbft_slot_acquire(struct pbft *p, uint64_t seq)
{
    if (!pbft_in_window(p, seq))
        return NULL;
    struct pbft_slot *s = &p->slots[seq % p->nslots];
    if (s->seq != seq) {
        /* What lived here is at or below h - L: discarded (see the top). */
        slot_reset(s, seq, p->now_ms);
    }
    return s;
}

int pbft_slot_store_batch(struct pbft *p, struct pbft_slot *s, const struct msg_batch *b)
{
    (void)p;
    if (b->count > s->cap) {
        uint8_t *txs = realloc(s->txs, (size_t)b->count * LEDGER_TX_BYTES);
        if (txs == NULL)
            return TALLY_ENOMEM;
        s->txs = txs;
        tc_hash *hashes = realloc(s->hashes, (size_t)b->count * sizeof(tc_hash));
        if (hashes == NULL)
            return TALLY_ENOMEM;
        s->hashes = hashes;
        s->cap = b->count;
    }
    s->count = b->count;
    if (b->count > 0)
        memcpy(s->txs, b->tx_bytes, (size_t)b->count * LEDGER_TX_BYTES);
    for (uint32_t i = 0; i < b->count; i++)
        ledger_tx_hash_bytes(s->txs + (size_t)i * LEDGER_TX_BYTES, &s->hashes[i]);
    return TALLY_OK;
}

void pbft_drop(struct pbft *p, const char *why, const struct msg *m)
{
    p->dropped++;
    LOG_DEBUG("L2100", "r%u v%llu dropped type %d from %u: %s", p->cfg.id,
              (unsigned long long)p->view, m ? (int)m->type : 0, m ? m->sender : 0, why);
}

bool pbft_persist_rec(struct pbft *p, const struct pbft_persist *rec)
{
    if (p->failed)
        return false;
    int rc = p->io.persist(p->io.ctx, rec);
    if (rc != TALLY_OK) {
        p->failed = true;
        LOG_ERROR("L2101", "r%u v%llu n%llu persist failed (%s): no more promises", p->cfg.id,
                  (unsigned long long)rec->view, (unsigned long long)rec->seq, tally_strerror(rc));
        return false;
    }
    return true;
}

/* How far a HORIZON record reaches beyond the seq that needed it, unless
 * pbft_config.horizon_ahead says otherwise. */
#define PBFT_HORIZON_AHEAD 256

uint64_t pbft_floor(const struct pbft *p)
{
    uint64_t floor = pbft_mark_in(&p->floor, p->view);
    return floor > p->low ? floor : 0;
}

bool pbft_horizon_cover(struct pbft *p, uint64_t seq, bool *deferrable)
{
    *deferrable = false;
    if (pbft_floor(p) != 0)
        return true; /* a new HORIZON record would replace the floor's */
    if (seq <= pbft_mark_in(&p->horizon, p->view)) {
        *deferrable = true;
        return true;
    }
    uint64_t ahead = p->cfg.horizon_ahead != 0 ? p->cfg.horizon_ahead : PBFT_HORIZON_AHEAD;
    struct pbft_persist hz = {.kind = PBFT_PERSIST_HORIZON, .view = p->view, .seq = seq + ahead};
    if (!pbft_persist_rec(p, &hz))
        return false;
    p->horizon = (struct pbft_mark){.view = hz.view, .seq = hz.seq};
    return true;
}

void pbft_release_horizon(struct pbft *p)
{
    /* Restarted after a reboot in this view: what we sent up to the floor is
     * not known, and that stays so. */
    if (p->failed || pbft_mark_in(&p->horizon, p->view) == 0 || pbft_floor(p) != 0)
        return;
    struct pbft_persist hz = {.kind = PBFT_PERSIST_HORIZON, .view = p->view, .seq = 0};
    if (pbft_persist_rec(p, &hz))
        p->horizon = (struct pbft_mark){0};
}

/* --- sending -------------------------------------------------------------- */

static void copy_sig(void *ctx, const uint8_t *bytes, size_t len, tc_sig *out)
{
    (void)bytes;
    (void)len;
    *out = *(const tc_sig *)ctx;
}

void pbft_send_pre_prepare(struct pbft *p, int to, const struct pbft_slot *s)
{
    /* The encoding is canonical, so re-encoding with the primary's stored
     * signature reproduces exactly the bytes it signed. */
    struct msg_signer signer = {.ctx = (void *)&s->pp_sig, .sign = copy_sig};
    struct msg_batch b = {.count = s->count, .tx_bytes = s->txs};
    msg_buf_reset(&p->out);
    if (msg_encode_pre_prepare(&p->out, pbft_primary_of(p, s->view), s->view, s->seq, &b,
                               &signer) != TALLY_OK)
        return;
    p->io.send(p->io.ctx, to, p->out.data, p->out.len);
}

void pbft_send_phase(struct pbft *p, int to, enum msg_type type, const struct pbft_slot *s)
{
    struct msg_signer signer = {.ctx = p->io.ctx, .sign = p->io.sign};
    const tc_hash *d =
        type == MSG_PREPARE ? &s->prepare_digest[p->cfg.id] : &s->commit_digest[p->cfg.id];
    msg_buf_reset(&p->out);
    if (msg_encode_phase(&p->out, type, p->cfg.id, s->view, s->seq, d, &signer) != TALLY_OK)
        return;
    if (type == MSG_PREPARE) /* our own prepare is part of our prepared certificates */
        memcpy(((struct pbft_slot *)s)->prepare_sig[p->cfg.id].b,
               p->out.data + p->out.len - TC_SIG_BYTES, TC_SIG_BYTES);
    p->io.send(p->io.ctx, to, p->out.data, p->out.len);
}

/* --- predicates and execution --------------------------------------------- */

static uint32_t count_matching(uint32_t from, const tc_hash *digests, const tc_hash *d)
{
    uint32_t c = 0;
    for (uint32_t i = 0; i < PBFT_MAX_REPLICAS; i++)
        if ((from & (1u << i)) && memcmp(digests[i].b, d->b, TC_HASH_BYTES) == 0)
            c++;
    return c;
}

/* §4.3: "Replica i executes the operation requested by m after committed-local
 * (m, v, n, i) is true and i's state reflects the sequential execution of all
 * requests with lower sequence numbers." */
void pbft_execute_ready(struct pbft *p)
{
    for (;;) {
        struct pbft_slot *s = pbft_slot_find(p, p->last_executed + 1);
        if (s == NULL || !s->committed || s->executed || p->failed)
            return;
        struct msg_batch b = {.count = s->count, .tx_bytes = s->txs};
        struct pbft_exec_result res;
        memset(&res, 0, sizeof(res));
        p->io.execute(p->io.ctx, s->view, s->seq, &b, s->hashes, &res);
        s->executed = true;
        p->last_executed = s->seq;
        p->last_progress_ms = p->now_ms;
        if (p->view_active) {
            p->vc_attempts = 0; /* progress: the next view change starts from the base timeout */
            p->work_deadline_ms = 0;
            p->suspect = 0; /* the primary delivers after all */
        }
        for (uint32_t i = 0; i < s->count; i++)
            pbft_txset_remove(p, &s->hashes[i]);
        LOG_DEBUG("L2102", "r%u v%llu n%llu executed %u txs", p->cfg.id,
                  (unsigned long long)s->view, (unsigned long long)s->seq, s->count);
        if (s->seq % p->cfg.checkpoint_interval == 0)
            pbft_checkpoint_own(p, s->seq, &res);
    }
}

void pbft_slot_progress(struct pbft *p, struct pbft_slot *s, uint64_t now_ms)
{
    (void)now_ms;
    if (!s->has_pre_prepare || p->failed)
        return;
    uint32_t me = 1u << p->cfg.id;
    if (!s->prepared) {
        /* §4.2: prepared(m, v, n, i) is true iff i has the pre-prepare and 2f
         * prepares from different backups that match it. The primary sends
         * no PREPARE, so its bit never counts. */
        uint32_t backups = s->prepare_from & ~(1u << pbft_primary_of(p, s->view));
        if (count_matching(backups, s->prepare_digest, &s->digest) < p->quorum_prepare)
            return;
        s->prepared = true;
        /* Keep the proof (§4.4, the P of a VIEW-CHANGE): the matching prepares
         * from backups, with their signatures. */
        s->has_cert = true;
        s->cert_view = s->view;
        s->cert_digest = s->digest;
        s->cert_from = 0;
        for (uint32_t i = 0; i < p->cfg.n; i++)
            if ((backups & (1u << i)) &&
                memcmp(s->prepare_digest[i].b, s->digest.b, TC_HASH_BYTES) == 0) {
                s->cert_from |= 1u << i;
                s->cert_sig[i] = s->prepare_sig[i];
            }
        if (!s->sent_commit) {
            /* §4.3: "Replica i multicasts a <COMMIT, v, n, D(m), i> to the other
             * replicas when prepared(m, v, n, i) becomes true." */
            struct pbft_persist rec = {.kind = PBFT_PERSIST_COMMIT,
                                       .view = s->view,
                                       .seq = s->seq,
                                       .digest = s->digest,
                                       .prepare_from = s->cert_from,
                                       .prepare_sigs = s->cert_sig};
            if (!pbft_persist_rec(p, &rec))
                return;
            s->sent_commit = true;
            s->commit_from |= me;
            s->commit_digest[p->cfg.id] = s->digest;
            pbft_send_phase(p, PBFT_BROADCAST, MSG_COMMIT, s);
        }
    }
    if (!s->committed &&
        count_matching(s->commit_from, s->commit_digest, &s->digest) >= p->quorum_commit) {
        /* committed-local(m, v, n, i): prepared and 2f+1 matching commits
         * (possibly including its own) from different replicas. */
        s->committed = true;
        pbft_execute_ready(p);
    }
}

/* --- restart ---------------------------------------------------------------- */

int pbft_restore(struct pbft *p, const struct pbft_persist *rec)
{
    if (p == NULL || rec == NULL)
        return TALLY_EINVAL;
    uint32_t me = p->cfg.id;
    struct pbft_slot *s = NULL;
    if (rec->kind == PBFT_PERSIST_VIEW) {
        if (rec->view >= p->view) {
            p->view = rec->view;
            p->view_active = !rec->view_changing;
            p->vc_resend = rec->view_changing && rec->view > 0;
        }
        return TALLY_OK;
    }
    if (rec->kind == PBFT_PERSIST_DISCARD_LOG)
        return TALLY_OK;
    if (rec->kind == PBFT_PERSIST_ASSIGNED) {
        p->assigned = (struct pbft_mark){.view = rec->view, .seq = rec->seq};
        return TALLY_OK;
    }
    if (rec->kind == PBFT_PERSIST_HORIZON) {
        p->horizon = (struct pbft_mark){.view = rec->view, .seq = rec->seq};
        if (!rec->same_boot)
            p->floor = p->horizon;
        return TALLY_OK;
    }
    if (rec->kind == PBFT_PERSIST_CHECKPOINT) {
        if (rec->cert == NULL || rec->seq != rec->cert->ck.height || rec->seq > p->last_executed)
            return TALLY_EINVAL;
        pbft_checkpoint_stabilize(p, rec->cert);
        return TALLY_OK;
    }
    /* Executed entries above the stable checkpoint are restored too (marked
     * executed): their batches and prepared certificates must still appear
     * in our VIEW-CHANGEs, or a batch committed before a restart of f+1
     * correct replicas could be given up by the next view. */
    bool executed = rec->seq <= p->last_executed;
    if (executed && rec->seq <= p->stable)
        return TALLY_OK; /* covered by the stable checkpoint */
    if (rec->seq == 0 || rec->seq > p->low + p->cfg.window || rec->seq + p->cfg.window <= p->low)
        return TALLY_OK; /* outside what the ring holds */
    s = &p->slots[rec->seq % p->nslots];
    if (s->seq != rec->seq) {
        pbft_slot_progress_reset(p, s, rec->seq);
    }
    /* One record per (kind, seq) survives: they may come from different views
     * (a PRE-PREPARE of a new view over a COMMIT of an old one). The newest
     * view wins; an older COMMIT keeps its certificate only for the same batch. */
    if (rec->view < s->view && rec->kind != PBFT_PERSIST_COMMIT)
        return TALLY_OK;
    if (executed)
        s->executed = s->committed = true;
    switch (rec->kind) {
    case PBFT_PERSIST_PREPREPARE: {
        if (rec->batch == NULL || rec->batch->count > MSG_MAX_BATCH)
            return TALLY_EINVAL;
        int rc = pbft_slot_store_batch(p, s, rec->batch);
        if (rc != TALLY_OK)
            return rc;
        msg_batch_digest(rec->batch, &s->digest);
        if (rec->view > s->view) {
            s->prepare_from = s->commit_from = 0;
            s->sent_prepare = s->sent_commit = false;
        }
        s->view = rec->view;
        s->pp_sig = rec->sig;
        s->has_pre_prepare = true;
        if (s->has_cert && memcmp(s->cert_digest.b, s->digest.b, TC_HASH_BYTES) != 0)
            s->has_cert = false;
        pbft_txset_mark_slot_inflight(p, s);
        /* Our own proposals in our view: number on after them. An older
         * view's (we led it too) above our NEW-VIEW's max-s are void in
         * this one (propose_one reuses their seqs, as enter_view does). */
        if (pbft_primary_of(p, rec->view) == me && rec->view == p->view && rec->seq > p->next_seq)
            p->next_seq = rec->seq;
        if (rec->view < p->view)
            p->restored_older = true;
        /* Pending work in our view: unless it executes in time, we suspect
         * the primary (pbft_vc_tick), also when nothing new arrives. */
        if (rec->view == p->view && rec->seq > p->max_pp_seq)
            p->max_pp_seq = rec->seq;
        return TALLY_OK;
    }
    case PBFT_PERSIST_PREPARE: {
        s->view = rec->view;
        s->sent_prepare = true;
        s->prepare_from |= 1u << me;
        s->prepare_digest[me] = rec->digest;
        /* Our PREPARE's signature goes into the prepared certificate should
         * the slot become prepared now (and from there into our COMMIT record
         * and VIEW-CHANGEs): sign it again. Ed25519 is deterministic, so it is
         * the signature of the PREPARE we sent. */
        int rc = msg_signed_phase(&p->scratch, MSG_PREPARE, me, rec->view, rec->seq, &rec->digest);
        if (rc != TALLY_OK)
            return rc;
        p->io.sign(p->io.ctx, p->scratch.data, p->scratch.len, &s->prepare_sig[me]);
        return TALLY_OK;
    }
    case PBFT_PERSIST_COMMIT: {
        bool same_batch =
            !s->has_pre_prepare || memcmp(s->digest.b, rec->digest.b, TC_HASH_BYTES) == 0;
        if (rec->view >= s->view) {
            s->view = rec->view;
            s->sent_commit = true;
            s->commit_from |= 1u << me;
            s->commit_digest[me] = rec->digest;
        }
        if (same_batch && rec->prepare_sigs != NULL && rec->prepare_from != 0 &&
            (!s->has_cert || rec->view >= s->cert_view)) {
            s->has_cert = true;
            s->cert_view = rec->view;
            s->cert_digest = rec->digest;
            s->cert_from = rec->prepare_from & ((1u << p->cfg.n) - 1);
            for (uint32_t i = 0; i < p->cfg.n; i++)
                if (s->cert_from & (1u << i))
                    s->cert_sig[i] = rec->prepare_sigs[i];
            /* The same PREPAREs count again in the slot: the backups that
             * sent them may not send them again (under a floor, or having
             * lost them unsynced), so without them the slot could never be
             * prepared again here, nor execute. */
            if (s->has_pre_prepare && rec->view == s->view && same_batch)
                for (uint32_t i = 0; i < p->cfg.n; i++)
                    if (s->cert_from & (1u << i)) {
                        s->prepare_from |= 1u << i;
                        s->prepare_digest[i] = rec->digest;
                        s->prepare_sig[i] = s->cert_sig[i];
                    }
        }
        return TALLY_OK;
    }
    default:
        return TALLY_EINVAL;
    }
}

/* --- events ----------------------------------------------------------------- */

void pbft_on_request(struct pbft *p, const struct ledger_tx *tx, const tc_hash *tx_hash,
                     uint64_t now_ms)
{
    p->now_ms = now_ms;
    uint8_t bytes[LEDGER_TX_BYTES];
    ledger_tx_encode(tx, bytes);
    pbft_recv_request(p, bytes, tx_hash, now_ms);
    pbft_try_propose(p, now_ms);
}

void pbft_on_message(struct pbft *p, const struct msg *m, uint64_t now_ms)
{
    p->now_ms = now_ms;
    if (p->failed)
        return;
    if (m->type == MSG_REQUEST) {
        for (uint32_t i = 0; i < m->u.request.count; i++) {
            const uint8_t *tx = m->u.request.tx_bytes + (size_t)i * LEDGER_TX_BYTES;
            tc_hash h;
            ledger_tx_hash_bytes(tx, &h);
            pbft_recv_request(p, tx, &h, now_ms);
        }
        pbft_try_propose(p, now_ms);
        return;
    }
    if (m->sender >= p->cfg.n) {
        pbft_drop(p, "unknown sender", m);
        return;
    }
    if (m->sender == p->cfg.id) {
        pbft_drop(p, "from myself", m);
        return;
    }
    if (p->view_active && m->sender == pbft_primary_of(p, p->view))
        p->primary_heard_ms = now_ms; /* any message from it: a heartbeat */
    if (!p->view_active &&
        (m->type == MSG_PRE_PREPARE || m->type == MSG_PREPARE || m->type == MSG_COMMIT)) {
        /* §4.4: during a view change only checkpoint, view-change and
         * new-view messages are accepted. */
        pbft_drop(p, "normal-case message during a view change", m);
        return;
    }
    switch (m->type) {
    case MSG_PRE_PREPARE:
        pbft_recv_pre_prepare(p, m, now_ms);
        break;
    case MSG_PREPARE:
        pbft_recv_prepare(p, m, now_ms);
        break;
    case MSG_COMMIT:
        pbft_recv_commit(p, m, now_ms);
        break;
    case MSG_STATUS_ACTIVE:
        pbft_recv_status_active(p, m);
        break;
    case MSG_CHECKPOINT:
        pbft_recv_checkpoint(p, m);
        break;
    case MSG_STATE_REQ:
        pbft_recv_state_req(p, m);
        break;
    case MSG_STATE_RESP:
        pbft_recv_state_resp(p, m, now_ms);
        break;
    case MSG_VIEW_CHANGE:
        pbft_recv_view_change(p, m);
        break;
    case MSG_NEW_VIEW:
        pbft_recv_new_view(p, m);
        break;
    default:
        pbft_drop(p, "not a protocol message", m);
        return;
    }
    pbft_try_propose(p, now_ms); /* execution may have freed the pipeline */
}

uint64_t pbft_retransmit_interval(const struct pbft *p)
{
    if (p->cfg.retransmit_ms != 0)
        return p->cfg.retransmit_ms;
    if (p->cfg.request_timeout_ms >= 4)
        return p->cfg.request_timeout_ms / 4;
    return 100;
}

void pbft_on_tick(struct pbft *p, uint64_t now_ms)
{
    p->now_ms = now_ms;
    if (p->failed)
        return;
    pbft_try_propose(p, now_ms);
    pbft_state_tick(p);
    pbft_vc_tick(p);
    if (!p->status_sent || now_ms - p->last_status_ms >= pbft_retransmit_interval(p)) {
        /* Castro's thesis §5.2: replicas periodically multicast a status
         * message; peers retransmit what it shows the sender is missing. */
        p->status_sent = true;
        p->last_status_ms = now_ms;
        struct msg_signer signer = {.ctx = p->io.ctx, .sign = p->io.sign};
        msg_buf_reset(&p->out);
        if (msg_encode_status_active(&p->out, p->cfg.id, p->view, p->last_executed, p->stable,
                                     p->view_active ? p->suspect : 0,
                                     p->view_active ? MSG_STATUS_VIEW_ACTIVE : 0,
                                     &signer) == TALLY_OK)
            p->io.send(p->io.ctx, PBFT_BROADCAST, p->out.data, p->out.len);
    }
}
