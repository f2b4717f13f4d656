/* PRE-PREPARE at a backup (Castro & Liskov, OSDI '99, §4.2).
 *
 * "A backup accepts a pre-prepare message provided:
 *   - the signatures in the request and the pre-prepare message are correct
 *     and d is the digest for m;               (the shell verified; the decoder computed d)
 *   - it is in view v;
 *   - it has not accepted a pre-prepare message for view v and sequence
 *     number n containing a different digest;
 *   - the sequence number in the pre-prepare message is between a low water
 *     mark, h, and a high water mark, H."
 * "If backup i accepts the <<PRE-PREPARE, v, n, d>, m> message, it enters
 *  the prepare phase by multicasting a <PREPARE, v, n, d, i> message to all
 *  other replicas and adds both messages to its log." Both are persisted
 * before the PREPARE leaves: written, and synced only with a new HORIZON
 * record or under a floor (pbft_persist.deferrable, pbft_horizon_cover). */
#include <string.h>

#include "src/pbft_internal.h"

void pbft_recv_pre_prepare(struct pbft *p, const struct msg *m, uint64_t now_ms)
{
    uint64_t view = m->u.pre_prepare.view, seq = m->u.pre_prepare.seq;
    if (view != p->view) {
        pbft_drop(p, "pre-prepare for another view", m);
        return;
    }
    if (m->sender != pbft_primary_of(p, view)) {
        pbft_drop(p, "pre-prepare not from the primary", m);
        return;
    }
    if (pbft_is_primary(p)) {
        pbft_drop(p, "pre-prepare at the primary", m);
        return;
    }
    if (m->u.pre_prepare.batch.count > p->cfg.batch_max_txs) {
        /* Our limit, not the paper's: the log's memory is bounded by
         * 2 * window * batch_max_txs transactions. */
        pbft_drop(p, "pre-prepare batch larger than batch_max_txs", m);
        return;
    }
    struct pbft_slot *s = pbft_slot_for_view(p, seq, view);
    if (s == NULL) {
        pbft_drop(p, "pre-prepare outside the watermarks", m);
        return;
    }
    if (s->has_pre_prepare) {
        if (memcmp(s->digest.b, m->u.pre_prepare.digest.b, TC_HASH_BYTES) == 0) {
            pbft_drop(p, "duplicate pre-prepare", m);
        } else {
            p->dropped++;
            if (s->warned_conflict)
                return;
            s->warned_conflict = true;
            LOG_WARN("L2120",
                     "r%u v%llu n%llu primary %u sent a second, different "
                     "pre-prepare: dropped",
                     p->cfg.id, (unsigned long long)view, (unsigned long long)seq, m->sender);
            /* Proof of misbehaviour: both are signed by the primary. */
            pbft_suspect(p, "the primary sent two different pre-prepares for one seq");
        }
        return;
    }
    /* Restarted after a reboot: our PREPARE up to the floor may be lost, and
     * a second one could name another batch. We keep the pre-prepare and
     * count the others' PREPAREs, but send none of ours there. */
    bool may_prepare = seq > pbft_floor(p);
    bool deferrable = false;
    if (may_prepare && !pbft_horizon_cover(p, seq, &deferrable))
        return;
    if (pbft_slot_store_batch(p, s, &m->u.pre_prepare.batch) != TALLY_OK) {
        pbft_drop(p, "no memory for the batch", m);
        return;
    }
    struct pbft_persist pp = {.kind = PBFT_PERSIST_PREPREPARE,
                              .view = view,
                              .seq = seq,
                              .digest = m->u.pre_prepare.digest,
                              .batch = &m->u.pre_prepare.batch,
                              .sig = m->sig,
                              .deferrable = deferrable};
    if (!pbft_persist_rec(p, &pp))
        return;
    s->view = view;
    s->digest = m->u.pre_prepare.digest;
    s->pp_sig = m->sig;
    s->has_pre_prepare = true;
    if (seq > p->max_pp_seq)
        p->max_pp_seq = seq;
    pbft_txset_mark_slot_inflight(p, s);
    if (!may_prepare) {
        LOG_DEBUG("L2121", "r%u v%llu n%llu at or below the floor: no prepare", p->cfg.id,
                  (unsigned long long)view, (unsigned long long)seq);
        pbft_slot_progress(p, s, now_ms);
        return;
    }

    struct pbft_persist pr = {.kind = PBFT_PERSIST_PREPARE,
                              .view = view,
                              .seq = seq,
                              .digest = s->digest,
                              .deferrable = deferrable};
    if (!pbft_persist_rec(p, &pr))
        return;
    s->sent_prepare = true;
    s->prepare_from |= 1u << p->cfg.id;
    s->prepare_digest[p->cfg.id] = s->digest;
    pbft_send_phase(p, PBFT_BROADCAST, MSG_PREPARE, s);
    pbft_slot_progress(p, s, now_ms); /* prepares may have arrived first */
}
