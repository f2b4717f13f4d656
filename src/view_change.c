/* View changes (Castro & Liskov, OSDI '99, §4.4; TOCS '02 §4.5).
 *
 * "The view-change protocol provides liveness by allowing the system to make
 *  progress when the primary fails. View changes are triggered by timeouts
 *  that prevent backups from waiting indefinitely for requests to execute."
 *
 * Triggers (backups of an active view): work pending (queued requests or
 * accepted pre-prepares not executed) that made no progress for the timeout;
 * no message at all from the primary for the timeout (it broadcasts
 * STATUS-ACTIVE every retransmit interval: a heartbeat, so a primary that goes
 * silent with nothing pending is detected too); proof of misbehaviour (two
 * different pre-prepares for one seq). These make a replica *suspect* the
 * primary: it says so in its STATUS-ACTIVE (signed, repeated every interval,
 * withdrawn on progress) and keeps working in the view. Once f+1 replicas
 * (at least one correct) suspect it, each of them starts the view change; so
 * does any replica that sees f+1 VIEW-CHANGEs for higher views ("a replica
 * joins a view change once f+1 replicas ask for a higher view", thesis
 * §4.5.2). A replica alone (cut off, or slow itself) never leaves a working
 * view. An invalid NEW-VIEW moves replicas already in the view change on at
 * once. A replica in a view change
 * for v moves on to v+1 when no valid NEW-VIEW arrived within the timeout
 * after it held 2f+1 VIEW-CHANGEs for v (so one replica alone never runs off
 * through the views); the timeout doubles with every consecutive view change
 * and is reset by execution progress.
 *
 * "<VIEW-CHANGE, v+1, n, C, P, i>": our last stable checkpoint n with its
 * certificate C, and P: for every seq above n that prepared here, its
 * prepared certificate — the batch, its digest, the view, and 2f PREPARE
 * signatures from distinct backups of that view. (The PRE-PREPARE's own
 * signature is not needed: two certificates for different digests at one
 * (view, seq) would need 2f prepares each from 3f backups, so f backups in
 * both, at least one correct while the primary is faulty.)
 *
 * The new primary collects 2f+1 valid VIEW-CHANGEs for v+1 (its own
 * included) and sends "<NEW-VIEW, v+1, V, O>": V the VIEW-CHANGE messages
 * themselves, O one signed PRE-PREPARE for each seq in (min-s, max-s]:
 * min-s the highest stable checkpoint in V, max-s the highest prepared seq;
 * for each seq the batch of the certificate with the highest view, or a null
 * (empty) batch where none prepared. Backups check every VIEW-CHANGE in V
 * (envelope, certificate, every prepare signature, every batch digest), then
 * recompute O from V themselves and accept the NEW-VIEW only if it matches
 * exactly, and every PRE-PREPARE signature in it verifies. One forged
 * VIEW-CHANGE cannot hide a valid certificate: the highest view wins among
 * VALID certificates only, and an invalid VIEW-CHANGE spoils nothing but
 * itself (it is not counted).
 *
 * Entering the view: transactions of pre-prepares that O does not keep go
 * back to the request queue (de-duplication at execution keeps them from
 * running twice), O is installed as pre-prepares of the new view (persisted,
 * then PREPAREs sent, also for seqs we executed: others may need our votes),
 * and the stable checkpoint advances to min-s when we hold that state, else
 * state transfer fetches it. Watermarks never move backwards. */
#include <stdlib.h>
#include <string.h>

#include "src/pbft_internal.h"

/* --- helpers ----------------------------------------------------------------- */

uint64_t pbft_vc_timeout(const struct pbft *p)
{
    uint32_t k = p->vc_attempts < 10 ? p->vc_attempts : 10;
    return p->cfg.request_timeout_ms << k;
}

int pbft_verify(struct pbft *p, uint32_t replica, const uint8_t *bytes, size_t len,
                const tc_sig *sig)
{
    if (replica >= p->cfg.n)
        return TALLY_EBADSIG;
    const tc_pubkey *pk = &p->cfg.replica_keys[replica];
    if (p->io.verify != NULL)
        return p->io.verify(p->io.ctx, pk, bytes, len, sig);
    return tc_verify(pk, bytes, len, sig);
}

struct pbft_slot *pbft_slot_for_view(struct pbft *p, uint64_t seq, uint64_t view)
{
    struct pbft_slot *s = pbft_slot_acquire(p, seq);
    if (s == NULL || s->view >= view)
        return s;
    /* A new view's entry: the votes of the old view no longer count. */
    if (s->has_pre_prepare && !s->executed)
        for (uint32_t i = 0; i < s->count; i++)
            pbft_txset_remove(p, &s->hashes[i]);
    s->view = view;
    s->has_pre_prepare = false;
    s->sent_prepare = s->sent_commit = false;
    s->prepared = s->committed = false;
    s->warned_conflict = false;
    s->prepare_from = s->commit_from = 0;
    s->since_ms = p->now_ms;
    return s;
}

static uint32_t popcount(uint32_t x)
{
    return (uint32_t)__builtin_popcount(x);
}

/* Rate limit on full validations, per sender (VIEW-CHANGE: 0..n-1,
 * NEW-VIEW: PBFT_MAX_REPLICAS + sender). */
static bool vc_check_allowed(struct pbft *p, uint32_t who)
{
    uint64_t gap = pbft_retransmit_interval(p) / 2;
    if (p->vc_checked_ms[who] != 0 && p->now_ms - p->vc_checked_ms[who] < gap)
        return false;
    p->vc_checked_ms[who] = p->now_ms ? p->now_ms : 1;
    return true;
}

/* --- validating a VIEW-CHANGE ------------------------------------------------ */

/* Everything a VIEW-CHANGE claims, checked (its envelope was verified by
 * whoever handed it over: the shell, or us for those inside a NEW-VIEW). */
static bool vc_valid(struct pbft *p, const struct msg *m, const char **why)
{
    const typeof(m->u.view_change) *v = &m->u.view_change;
    if (v->stable % p->cfg.checkpoint_interval != 0) {
        *why = "stable checkpoint not a multiple of K";
        return false;
    }
    if (v->stable > 0) {
        struct ledger_cert c;
        struct tally_err err = {0};
        if (ledger_cert_decode(v->cert, v->cert_len, &c, &err) != TALLY_OK ||
            c.ck.height != v->stable ||
            ledger_cert_verify(&c, &p->cfg.chain_id, p->cfg.replica_keys, p->cfg.n,
                               2 * p->cfg.f + 1, &err) != TALLY_OK) {
            LOG_DEBUG("L2165", "r%u checkpoint certificate %llu in a view-change: %s", p->cfg.id,
                      (unsigned long long)v->stable, tally_err_text(&err));
            *why = "its checkpoint certificate does not verify";
            return false;
        }
    }
    struct msg_iter it;
    struct msg_vc_entry e;
    uint64_t last = v->stable;
    msg_vc_iter(m, &it);
    while (msg_vc_next(&it, &e)) {
        if (e.seq <= last || e.seq > v->stable + p->cfg.window) {
            *why = "prepared entries out of order or outside its window";
            return false;
        }
        last = e.seq;
        if (e.view >= v->new_view) {
            *why = "a prepared certificate from a view not below the new one";
            return false;
        }
        tc_hash d;
        msg_batch_digest(&e.batch, &d);
        if (memcmp(d.b, e.digest.b, TC_HASH_BYTES) != 0) {
            *why = "a batch that does not match its digest";
            return false;
        }
        uint32_t primary = pbft_primary_of(p, e.view), seen = 0;
        for (uint32_t k = 0; k < e.nprepares; k++) {
            const uint8_t *pr = e.prepares + (size_t)k * MSG_VC_PREPARE_BYTES;
            uint32_t who = (uint32_t)pr[0] | ((uint32_t)pr[1] << 8);
            if (who >= p->cfg.n || who == primary || (seen & (1u << who))) {
                *why = "a prepare from the primary, a stranger or twice from one replica";
                return false;
            }
            tc_sig sig;
            memcpy(sig.b, pr + 2, TC_SIG_BYTES);
            if (msg_signed_phase(&p->scratch, MSG_PREPARE, who, e.view, e.seq, &e.digest) !=
                    TALLY_OK ||
                pbft_verify(p, who, p->scratch.data, p->scratch.len, &sig) != TALLY_OK) {
                *why = "a prepare signature that does not verify";
                return false;
            }
            seen |= 1u << who;
        }
        if (popcount(seen) < p->quorum_prepare) {
            *why = "a prepared certificate with fewer than 2f prepares";
            return false;
        }
    }
    return true;
}

/* --- the re-proposals O, a function of V alone -------------------------------- */

struct vc_choice {
    uint64_t view; /* of the certificate; 0 with has = false: a null batch */
    bool has;
    tc_hash digest;
    struct msg_batch batch;
};

struct vc_selection {
    uint64_t min_s, max_s;
    uint32_t cert_from;       /* the VIEW-CHANGE whose certificate is min-s's */
    struct vc_choice *choice; /* max_s - min_s entries, seq = min_s + 1 + i */
};

/* vcs: decoded, valid VIEW-CHANGEs (distinct senders). The batches borrow
 * from their bytes. Returns false when out of memory or O would exceed one
 * window (cannot happen with valid view-changes). */
static bool vc_select(struct pbft *p, const struct msg *vcs, uint32_t n, struct vc_selection *out)
{
    memset(out, 0, sizeof(*out));
    for (uint32_t i = 0; i < n; i++)
        if (vcs[i].u.view_change.stable > out->min_s) {
            out->min_s = vcs[i].u.view_change.stable;
            out->cert_from = i;
        }
    out->max_s = out->min_s;
    struct msg_iter it;
    struct msg_vc_entry e;
    for (uint32_t i = 0; i < n; i++) {
        msg_vc_iter(&vcs[i], &it);
        while (msg_vc_next(&it, &e))
            if (e.seq > out->max_s)
                out->max_s = e.seq;
    }
    uint64_t span = out->max_s - out->min_s;
    if (span > p->cfg.window)
        return false;
    out->choice = calloc(span ? span : 1, sizeof(*out->choice));
    if (out->choice == NULL)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        msg_vc_iter(&vcs[i], &it);
        while (msg_vc_next(&it, &e)) {
            if (e.seq <= out->min_s)
                continue;
            struct vc_choice *c = &out->choice[e.seq - out->min_s - 1];
            /* "the pre-prepare ... with the highest view number" */
            if (!c->has || e.view > c->view) {
                c->has = true;
                c->view = e.view;
                c->digest = e.digest;
                c->batch = e.batch;
            }
        }
    }
    return true;
}

/* --- sending our VIEW-CHANGE -------------------------------------------------- */

static bool build_vc(struct pbft *p, struct msg_buf *b)
{
    msg_buf_reset(b);
    bool ok = msg_put_u64(b, p->view) && msg_put_u64(b, p->stable);
    if (p->stable > 0 && p->stable_cert.count > 0) {
        uint8_t cb[LEDGER_CERT_MAX_BYTES];
        size_t clen = ledger_cert_encode(&p->stable_cert, cb);
        ok = ok && msg_put_u32(b, (uint32_t)clen) && msg_put(b, cb, clen);
    } else {
        ok = ok && msg_put_u32(b, 0);
    }
    /* Count first, then the entries. */
    uint32_t count = 0;
    /* A certificate is only worth its batch: a slot that took another
     * view's different batch since no longer holds it (and that certificate
     * never committed: the new view's O would have kept it). */
    for (uint64_t seq = p->stable + 1; seq <= p->stable + p->cfg.window; seq++) {
        struct pbft_slot *s = pbft_slot_find(p, seq);
        if (s != NULL && s->has_cert && memcmp(s->digest.b, s->cert_digest.b, TC_HASH_BYTES) != 0)
            s->has_cert = false;
        if (s != NULL && s->has_cert)
            count++;
    }
    ok = ok && msg_put_u32(b, count);
    for (uint64_t seq = p->stable + 1; seq <= p->stable + p->cfg.window && ok; seq++) {
        struct pbft_slot *s = pbft_slot_find(p, seq);
        if (s == NULL || !s->has_cert)
            continue;
        ok = msg_put_u64(b, s->cert_view) && msg_put_u64(b, seq) &&
             msg_put(b, s->cert_digest.b, TC_HASH_BYTES) && msg_put_u32(b, s->count) &&
             msg_put(b, s->txs, (size_t)s->count * LEDGER_TX_BYTES) &&
             msg_put_u32(b, popcount(s->cert_from));
        for (uint32_t i = 0; i < p->cfg.n && ok; i++)
            if (s->cert_from & (1u << i))
                ok = msg_put_u16(b, (uint16_t)i) && msg_put(b, s->cert_sig[i].b, TC_SIG_BYTES);
    }
    return ok;
}

static void store_vc(struct pbft *p, uint32_t from, uint64_t view, const uint8_t *bytes, size_t len)
{
    struct pbft_vc_store *st = &p->vcs[from];
    uint8_t *copy = malloc(len);
    if (copy == NULL)
        return;
    memcpy(copy, bytes, len);
    free(st->bytes);
    st->bytes = copy;
    st->len = len;
    st->view = view;
}

static void send_own_vc(struct pbft *p, int to)
{
    struct pbft_vc_store *own = &p->vcs[p->cfg.id];
    if (own->view == p->view && own->bytes != NULL)
        p->io.send(p->io.ctx, to, own->bytes, own->len);
}

static void try_new_view(struct pbft *p);
static void check_quorum(struct pbft *p);

void pbft_vc_start(struct pbft *p, uint64_t new_view, const char *why)
{
    if (p->failed || new_view <= p->view)
        return;
    LOG_INFO("L2160", "r%u v%llu -> view %llu: %s", p->cfg.id, (unsigned long long)p->view,
             (unsigned long long)new_view, why);
    /* "a backup ... stops accepting messages (other than checkpoint,
     * view-change, and new-view messages)" of the old view. Persist the
     * promise before the VIEW-CHANGE leaves. */
    struct pbft_persist rec = {.kind = PBFT_PERSIST_VIEW, .view = new_view, .view_changing = true};
    if (!pbft_persist_rec(p, &rec))
        return;
    p->view = new_view;
    p->view_active = false;
    p->vc_attempts++;
    p->vc_quorum_ms = 0;
    p->work_deadline_ms = 0;
    p->vc_resend = false;
    if (!build_vc(p, &p->vc_body))
        return;
    struct msg_signer signer = {.ctx = p->io.ctx, .sign = p->io.sign};
    msg_buf_reset(&p->out);
    if (msg_encode_body(&p->out, MSG_VIEW_CHANGE, p->cfg.id, p->vc_body.data, p->vc_body.len,
                        &signer) != TALLY_OK)
        return;
    store_vc(p, p->cfg.id, new_view, p->out.data, p->out.len);
    p->io.send(p->io.ctx, PBFT_BROADCAST, p->out.data, p->out.len);
    check_quorum(p);
}

/* --- receiving VIEW-CHANGEs --------------------------------------------------- */

/* 2f+1 VIEW-CHANGEs for our view: the escalation timer starts; the new
 * primary sends NEW-VIEW. */
static void check_quorum(struct pbft *p)
{
    if (p->view_active)
        return;
    uint32_t have = 0;
    for (uint32_t i = 0; i < p->cfg.n; i++)
        if (p->vcs[i].view == p->view)
            have++;
    if (have < p->quorum_commit)
        return;
    if (p->vc_quorum_ms == 0)
        p->vc_quorum_ms = p->now_ms ? p->now_ms : 1;
    if (pbft_primary_of(p, p->view) == p->cfg.id)
        try_new_view(p);
}

void pbft_recv_view_change(struct pbft *p, const struct msg *m)
{
    uint64_t w = m->u.view_change.new_view;
    if (w < p->view || (w == p->view && p->view_active)) {
        pbft_drop(p, "view-change for an old view", m);
        if (p->view_active && w <= p->view)
            pbft_vc_sync(p, m->sender, w, false); /* it is behind: show it the new view */
        return;
    }
    if (p->vcs[m->sender].view >= w) {
        pbft_drop(p, "duplicate view-change", m);
        return;
    }
    if (!vc_check_allowed(p, m->sender)) {
        /* Bounded work per faulty sender: a full validation costs up to
         * 2f x window signature checks; at most one per sender per half
         * retransmit interval (a correct sender sends a new view-change once
         * per view-change timeout; repeats are duplicates above). */
        pbft_drop(p, "view-change too soon after the last one checked", m);
        return;
    }
    const char *why = "";
    if (p->vc_rejected[m->sender] >= w) {
        pbft_drop(p, "view-change from a replica whose view-change for it was invalid", m);
        return;
    }
    if (!vc_valid(p, m, &why)) {
        p->dropped++;
        p->vc_rejected[m->sender] = w; /* once per (replica, view): no re-checking floods */
        LOG_WARN("L2161", "r%u v%llu view-change from r%u for view %llu rejected: %s", p->cfg.id,
                 (unsigned long long)p->view, m->sender, (unsigned long long)w, why);
        return;
    }
    store_vc(p, m->sender, w, m->signed_bytes, m->signed_len + TC_SIG_BYTES);
    /* f+1 replicas ask for views above ours: join the smallest of them. */
    uint64_t smallest = UINT64_MAX;
    uint32_t above = 0;
    for (uint32_t i = 0; i < p->cfg.n; i++) {
        uint64_t v = p->vcs[i].view;
        if (i != p->cfg.id && v > p->view) {
            above++;
            if (v < smallest)
                smallest = v;
        }
    }
    if (above >= p->cfg.f + 1 && smallest != UINT64_MAX)
        pbft_vc_start(p, smallest, "f+1 replicas ask for a higher view");
    else
        check_quorum(p);
}

/* --- NEW-VIEW ---------------------------------------------------------------- */

void pbft_requeue_older(struct pbft *p, uint64_t view, uint64_t above)
{
    for (uint64_t i = 0; i < p->nslots; i++) {
        struct pbft_slot *s = &p->slots[i];
        if (s->seq > above && !s->executed && s->has_pre_prepare && s->view < view)
            for (uint32_t k = 0; k < s->count; k++)
                pbft_txset_remove(p, &s->hashes[k]);
    }
    /* Highest seq first, each batch backwards: the queue's front ends up in
     * the order they were proposed. */
    for (uint64_t seq = p->low + p->cfg.window; seq > above && seq > p->low; seq--) {
        struct pbft_slot *s = pbft_slot_find(p, seq);
        if (s == NULL || s->executed || !s->has_pre_prepare || s->view >= view)
            continue;
        for (uint32_t k = s->count; k-- > 0;)
            pbft_requeue_front(p, s->txs + (size_t)k * LEDGER_TX_BYTES, &s->hashes[k], p->now_ms);
        s->has_pre_prepare = false;
    }
}

/* Install O as the new view's pre-prepares (both at the new primary and at
 * backups) and enter the view. */
static void enter_view(struct pbft *p, uint64_t w, const struct msg *vcs,
                       const struct vc_selection *sel, const struct msg *nv)
{
    struct pbft_persist rec = {.kind = PBFT_PERSIST_VIEW, .view = w, .view_changing = false};
    if (!pbft_persist_rec(p, &rec))
        return;
    p->view = w;
    p->view_active = true;
    p->vc_quorum_ms = 0;
    p->work_deadline_ms = 0;
    p->primary_heard_ms = p->now_ms;
    p->views_changed++;
    p->max_pp_seq = 0;
    p->suspect = 0;

    /* The stable checkpoint of V: ours when we hold that state. */
    const typeof(vcs[0].u.view_change) *cv = &vcs[sel->cert_from].u.view_change;
    struct ledger_cert cert;
    struct tally_err err = {0};
    bool have_cert =
        sel->min_s > 0 && ledger_cert_decode(cv->cert, cv->cert_len, &cert, &err) == TALLY_OK;
    if (have_cert && sel->min_s > p->stable) {
        if (sel->min_s <= p->last_executed) {
            struct pbft_persist cr = {
                .kind = PBFT_PERSIST_CHECKPOINT, .view = w, .seq = sel->min_s, .cert = &cert};
            if (pbft_persist_rec(p, &cr))
                pbft_checkpoint_stabilize(p, &cert);
        } else {
            uint32_t vouchers = 0;
            for (uint32_t i = 0; i < cert.count; i++) {
                int id = -1;
                for (uint32_t k = 0; k < p->cfg.n; k++)
                    if (memcmp(cert.sigs[i].signer.b, p->cfg.replica_keys[k].b, TC_PUBKEY_BYTES) ==
                        0)
                        id = (int)k;
                if (id >= 0)
                    vouchers |= 1u << id;
            }
            pbft_state_target(p, sel->min_s, vouchers);
        }
    }

    /* Pre-prepares of old views that O does not keep: their transactions go
     * back to the queue (the new primary proposes them again; a transaction
     * that also runs elsewhere is de-duplicated at execution). */
    pbft_requeue_older(p, w, 0);

    bool primary = pbft_primary_of(p, w) == p->cfg.id;
    struct msg_iter it;
    struct msg_nv_prop prop;
    msg_nv_prop_iter(nv, &it);
    while (msg_nv_prop_next(&it, &prop)) {
        struct pbft_slot *s = pbft_slot_for_view(p, prop.seq, w);
        if (s == NULL)
            continue; /* beyond our window: retransmission or state transfer brings it */
        tc_hash d;
        msg_batch_digest(&prop.batch, &d);
        if (s->has_cert && memcmp(s->cert_digest.b, d.b, TC_HASH_BYTES) != 0)
            s->has_cert = false; /* O chose another batch: ours never committed */
        if (!s->executed) {
            if (pbft_slot_store_batch(p, s, &prop.batch) != TALLY_OK)
                continue;
            pbft_txset_mark_slot_inflight(p, s);
        } else if (s->count != prop.batch.count) {
            /* Executed here already: keep what we executed for retransmission
             * only when it is the same batch (it must be: O keeps committed
             * batches). */
            if (pbft_slot_store_batch(p, s, &prop.batch) != TALLY_OK)
                continue;
        }
        s->digest = d;
        s->pp_sig = prop.pp_sig;
        s->has_pre_prepare = true;
        if (prop.seq > p->max_pp_seq)
            p->max_pp_seq = prop.seq;
        struct msg_batch b = {.count = prop.batch.count, .tx_bytes = prop.batch.tx_bytes};
        struct pbft_persist pp = {.kind = PBFT_PERSIST_PREPREPARE,
                                  .view = w,
                                  .seq = prop.seq,
                                  .digest = d,
                                  .batch = &b,
                                  .sig = prop.pp_sig};
        if (!pbft_persist_rec(p, &pp))
            return;
        if (!primary) {
            struct pbft_persist pr = {
                .kind = PBFT_PERSIST_PREPARE, .view = w, .seq = prop.seq, .digest = d};
            if (!pbft_persist_rec(p, &pr))
                return;
            s->sent_prepare = true;
            s->prepare_from |= 1u << p->cfg.id;
            s->prepare_digest[p->cfg.id] = d;
            pbft_send_phase(p, PBFT_BROADCAST, MSG_PREPARE, s);
        }
    }
    /* Entries of older views above max-s are void in the new view. */
    for (uint64_t i = 0; i < p->nslots; i++) {
        struct pbft_slot *s = &p->slots[i];
        if (s->seq > sel->max_s && s->view < w && !s->executed)
            (void)pbft_slot_for_view(p, s->seq, w);
    }
    if (p->next_seq < sel->max_s)
        p->next_seq = sel->max_s;
    if (p->next_seq < p->last_executed)
        p->next_seq = p->last_executed;
    if (primary) {
        p->next_seq = sel->max_s > p->last_executed ? sel->max_s : p->last_executed;
        /* Re-proposals beyond our window got no record above: remember how
         * far they went, or a restart would number some of those seqs
         * again, with other batches. */
        struct pbft_persist as = {.kind = PBFT_PERSIST_ASSIGNED, .view = w, .seq = p->next_seq};
        if (!pbft_persist_rec(p, &as))
            return;
    }
    free(p->nv_bytes);
    p->nv_len = 0;
    p->nv_bytes = malloc(nv->signed_len + TC_SIG_BYTES);
    if (p->nv_bytes != NULL) {
        memcpy(p->nv_bytes, nv->signed_bytes, nv->signed_len + TC_SIG_BYTES);
        p->nv_len = nv->signed_len + TC_SIG_BYTES;
    }
    LOG_INFO("L2164", "r%u view %llu installed: primary r%u, %llu re-proposals (%llu..%llu]",
             p->cfg.id, (unsigned long long)w, pbft_primary_of(p, w),
             (unsigned long long)(sel->max_s - sel->min_s), (unsigned long long)sel->min_s,
             (unsigned long long)sel->max_s);
    /* Votes that arrived for the new view before it was installed count now. */
    for (uint64_t i = 0; i < p->nslots; i++)
        if (p->slots[i].seq != 0 && p->slots[i].view == w)
            pbft_slot_progress(p, &p->slots[i], p->now_ms);
    pbft_try_propose(p, p->now_ms);
}

/* The new primary: 2f+1 valid VIEW-CHANGEs for `view` -> NEW-VIEW. */
static void try_new_view(struct pbft *p)
{
    uint64_t w = p->view;
    struct msg vcs[PBFT_MAX_REPLICAS];
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->cfg.n && n < p->quorum_commit; i++) {
        struct pbft_vc_store *st = &p->vcs[i];
        struct tally_err err = {0};
        if (st->view == w && msg_decode(st->bytes, st->len, st->len, &vcs[n], &err) == TALLY_OK)
            n++;
    }
    if (n < p->quorum_commit)
        return;
    struct vc_selection sel;
    if (!vc_select(p, vcs, n, &sel)) {
        free(sel.choice);
        return;
    }
    struct msg_buf *b = &p->vc_body;
    msg_buf_reset(b);
    bool ok = msg_put_u64(b, w) && msg_put_u32(b, n);
    for (uint32_t i = 0; i < n && ok; i++) {
        size_t len = vcs[i].signed_len + TC_SIG_BYTES;
        ok = msg_put_u32(b, (uint32_t)len) && msg_put(b, vcs[i].signed_bytes, len);
    }
    ok = ok && msg_put_u64(b, sel.min_s) && msg_put_u32(b, (uint32_t)(sel.max_s - sel.min_s));
    struct msg_signer signer = {.ctx = p->io.ctx, .sign = p->io.sign};
    for (uint64_t seq = sel.min_s + 1; seq <= sel.max_s && ok; seq++) {
        const struct vc_choice *c = &sel.choice[seq - sel.min_s - 1];
        struct msg_batch empty = {.count = 0, .tx_bytes = NULL};
        const struct msg_batch *batch = c->has ? &c->batch : &empty;
        msg_buf_reset(&p->scratch);
        if (msg_encode_pre_prepare(&p->scratch, p->cfg.id, w, seq, batch, &signer) != TALLY_OK) {
            ok = false;
            break;
        }
        ok = msg_put_u64(b, seq) && msg_put_u32(b, batch->count) &&
             msg_put(b, batch->tx_bytes, (size_t)batch->count * LEDGER_TX_BYTES) &&
             msg_put(b, p->scratch.data + p->scratch.len - TC_SIG_BYTES, TC_SIG_BYTES);
    }
    if (ok) {
        msg_buf_reset(&p->out);
        ok =
            msg_encode_body(&p->out, MSG_NEW_VIEW, p->cfg.id, b->data, b->len, &signer) == TALLY_OK;
    }
    if (ok) {
        struct msg nv;
        struct tally_err err = {0};
        /* Keep our own encoding (p->out is reused by what follows). */
        uint8_t *copy = malloc(p->out.len);
        if (copy != NULL) {
            memcpy(copy, p->out.data, p->out.len);
            size_t len = p->out.len;
            p->io.send(p->io.ctx, PBFT_BROADCAST, copy, len);
            if (msg_decode(copy, len, len, &nv, &err) == TALLY_OK)
                enter_view(p, w, vcs, &sel, &nv);
            free(copy);
        }
    }
    free(sel.choice);
}

/* A backup checks a NEW-VIEW completely before it believes any of it. */
static bool nv_valid(struct pbft *p, const struct msg *m, struct msg *vcs, uint32_t *nvc,
                     struct vc_selection *sel, const char **why)
{
    uint64_t w = m->u.new_view.view;
    struct msg_iter it;
    const uint8_t *bytes;
    size_t len;
    uint32_t n = 0, seen = 0;
    msg_nv_vc_iter(m, &it);
    while (msg_nv_vc_next(&it, &bytes, &len)) {
        struct msg *v = &vcs[n];
        struct tally_err err = {0};
        if (n == PBFT_MAX_REPLICAS || msg_decode(bytes, len, len, v, &err) != TALLY_OK ||
            v->type != MSG_VIEW_CHANGE || v->u.view_change.new_view != w || v->sender >= p->cfg.n ||
            (seen & (1u << v->sender))) {
            *why = "a view-change that is malformed, for another view or repeated";
            return false;
        }
        /* The same bytes as a view-change we validated ourselves? */
        const struct pbft_vc_store *st = &p->vcs[v->sender];
        bool known = st->view == w && st->len == len && memcmp(st->bytes, bytes, len) == 0;
        if (!known) {
            if (pbft_verify(p, v->sender, v->signed_bytes, v->signed_len, &v->sig) != TALLY_OK) {
                *why = "a view-change whose signature does not verify";
                return false;
            }
            if (!vc_valid(p, v, why))
                return false;
        }
        seen |= 1u << v->sender;
        n++;
    }
    if (n < p->quorum_commit) {
        *why = "fewer than 2f+1 view-changes";
        return false;
    }
    *nvc = n;
    if (!vc_select(p, vcs, n, sel)) {
        *why = "re-proposals beyond one window";
        return false;
    }
    /* O must be exactly what V implies, and signed by the new primary. */
    if (!p->cfg.test_skip_new_view_check &&
        (m->u.new_view.min_seq != sel->min_s || m->u.new_view.nprops != sel->max_s - sel->min_s)) {
        *why = "re-proposals that do not match its view-changes";
        return false;
    }
    struct msg_nv_prop prop;
    uint64_t expect = m->u.new_view.min_seq + 1;
    msg_nv_prop_iter(m, &it);
    while (msg_nv_prop_next(&it, &prop)) {
        if (prop.seq != expect++) {
            *why = "re-proposals out of order";
            return false;
        }
        if (!p->cfg.test_skip_new_view_check) {
            const struct vc_choice *c = &sel->choice[prop.seq - sel->min_s - 1];
            tc_hash d;
            msg_batch_digest(&prop.batch, &d);
            bool match =
                c->has ? memcmp(d.b, c->digest.b, TC_HASH_BYTES) == 0 : prop.batch.count == 0;
            if (!match) {
                *why = "a re-proposal that is not the batch its view-changes prove";
                return false;
            }
        }
        if (msg_signed_pre_prepare(&p->scratch, m->sender, w, prop.seq, &prop.batch) != TALLY_OK ||
            pbft_verify(p, m->sender, p->scratch.data, p->scratch.len, &prop.pp_sig) != TALLY_OK) {
            *why = "a re-proposal whose pre-prepare signature does not verify";
            return false;
        }
    }
    if (p->cfg.test_skip_new_view_check) {
        /* Trust the primary's O: take its min-s and span as given. */
        sel->min_s = m->u.new_view.min_seq;
        sel->max_s = m->u.new_view.min_seq + m->u.new_view.nprops;
        if (sel->cert_from >= n)
            sel->cert_from = 0;
    }
    return true;
}

void pbft_recv_new_view(struct pbft *p, const struct msg *m)
{
    uint64_t w = m->u.new_view.view;
    if (w < p->view || (w == p->view && p->view_active)) {
        pbft_drop(p, "new-view for an old view", m);
        return;
    }
    if (m->sender != pbft_primary_of(p, w)) {
        pbft_drop(p, "new-view not from the view's primary", m);
        return;
    }
    if (!vc_check_allowed(p, PBFT_MAX_REPLICAS + m->sender)) {
        pbft_drop(p, "new-view too soon after the last one checked", m);
        return;
    }
    struct msg vcs[PBFT_MAX_REPLICAS];
    uint32_t n = 0;
    struct vc_selection sel;
    memset(&sel, 0, sizeof(sel));
    const char *why = "";
    if (!nv_valid(p, m, vcs, &n, &sel, &why)) {
        free(sel.choice);
        p->dropped++;
        LOG_WARN("L2163", "r%u v%llu NEW-VIEW from r%u for view %llu rejected: %s", p->cfg.id,
                 (unsigned long long)p->view, m->sender, (unsigned long long)w, why);
        /* Proof that the primary of w misbehaves, but it only moves replicas
         * already changing to w: anyone else would let one faulty replica
         * push everybody out of a working view (or to any view number). */
        if (w == p->view && !p->view_active)
            pbft_vc_start(p, w + 1, "the new primary sent an invalid NEW-VIEW");
        return;
    }
    if (w > p->view) {
        /* We skipped the view change itself: persist the view first. */
        p->view = w;
    }
    enter_view(p, w, vcs, &sel, m);
    free(sel.choice);
}

/* --- suspicion --------------------------------------------------------------- */

void pbft_suspect(struct pbft *p, const char *why)
{
    if (!p->view_active || p->suspect > p->view)
        return;
    p->suspect = p->view + 1;
    LOG_INFO("L2166", "r%u v%llu suspects primary r%u: %s", p->cfg.id, (unsigned long long)p->view,
             pbft_primary_of(p, p->view), why);
    /* Say it now rather than at the next status. */
    struct msg_signer signer = {.ctx = p->io.ctx, .sign = p->io.sign};
    msg_buf_reset(&p->out);
    if (msg_encode_status_active(&p->out, p->cfg.id, p->view, p->last_executed, p->stable,
                                 p->suspect, MSG_STATUS_VIEW_ACTIVE, &signer) == TALLY_OK)
        p->io.send(p->io.ctx, PBFT_BROADCAST, p->out.data, p->out.len);
    pbft_suspect_check(p);
}

void pbft_suspect_check(struct pbft *p)
{
    if (!p->view_active)
        return;
    /* A replica counts when it suspects the primary of our view, or already
     * sent a VIEW-CHANGE for a higher view. */
    uint32_t count = p->suspect > p->view ? 1 : 0;
    for (uint32_t i = 0; i < p->cfg.n; i++)
        if (i != p->cfg.id && (p->suspect_of[i] > p->view || p->vcs[i].view > p->view))
            count++;
    if (count >= p->cfg.f + 1)
        pbft_vc_start(p, p->view + 1, "f+1 replicas suspect the primary");
}

/* --- timers and retransmission ----------------------------------------------- */

void pbft_vc_sync(struct pbft *p, uint32_t to, uint64_t its_view, bool its_active)
{
    if (to >= p->cfg.n || to == p->cfg.id)
        return;
    if (p->view_active) {
        /* Behind in views, or still changing to ours: our NEW-VIEW. */
        if ((its_view < p->view || (its_view == p->view && !its_active)) && p->nv_bytes != NULL)
            p->io.send(p->io.ctx, (int)to, p->nv_bytes, p->nv_len);
    } else if (its_view <= p->view) {
        send_own_vc(p, (int)to);
    }
}

void pbft_vc_tick(struct pbft *p)
{
    if (p->failed)
        return;
    uint64_t now = p->now_ms, timeout = pbft_vc_timeout(p);
    if (p->vc_resend) {
        /* Restored in the middle of a view change: say it again. */
        uint64_t v = p->view;
        p->view_active = true;
        p->view = v - 1;
        p->vc_attempts = p->vc_attempts ? p->vc_attempts - 1 : 0;
        pbft_vc_start(p, v, "resuming the view change in progress before the restart");
        return;
    }
    if (!p->view_active) {
        if (p->vc_quorum_ms != 0 && now - p->vc_quorum_ms >= timeout)
            pbft_vc_start(p, p->view + 1, "no valid NEW-VIEW in time");
        return;
    }
    if (pbft_is_primary(p))
        return;
    if (p->primary_heard_ms == 0)
        p->primary_heard_ms = now;
    if (now - p->primary_heard_ms >= timeout) {
        pbft_suspect(p, "nothing heard from it");
        return;
    }
    if (p->st.active)
        return; /* behind: our lack of progress is ours, not the primary's */
    bool pending = p->qlive > 0 || p->max_pp_seq > p->last_executed;
    if (!pending) {
        p->work_deadline_ms = 0;
        return;
    }
    if (p->work_deadline_ms == 0) {
        p->work_deadline_ms = now + timeout;
        return;
    }
    if (now >= p->work_deadline_ms)
        pbft_suspect(p, "requests not executed in time");
}
