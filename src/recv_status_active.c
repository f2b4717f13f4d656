/* STATUS-ACTIVE: retransmission (Castro's thesis, "Practical Byzantine Fault
 * Tolerance", MIT 2001, §5.2; TOCS '02 §5.2 "retransmission").
 *
 * The paper's normal case assumes messages eventually arrive; over a lossy
 * network "replicas retransmit messages... A replica i multicasts a status
 * message periodically... with its view and the sequence number of the last
 * request it executed. A replica j that receives it retransmits the messages
 * that i is missing." Ours is the simple form: for every sequence number in
 * (last executed by i, our high watermark] still in our log, we send i the
 * primary's PRE-PREPARE (its signed bytes, re-encoded with its signature),
 * our PREPARE and our COMMIT (for an entry still in progress here, only
 * once it is older than the retransmission interval). Duplicates at i are dropped and counted. A
 * replica more than one window behind needs state transfer (a later issue). */
#include "src/pbft_internal.h"

void pbft_recv_status_active(struct pbft *p, const struct msg *m)
{
    uint64_t view = m->u.status_active.view, le = m->u.status_active.last_executed;
    /* What it suspects (its latest word counts: it withdraws on progress). */
    p->suspect_of[m->sender] = m->u.status_active.suspect;
    pbft_suspect_check(p);
    /* A replica behind in views gets the NEW-VIEW (or our VIEW-CHANGE). */
    bool its_active = (m->u.status_active.flags & MSG_STATUS_VIEW_ACTIVE) != 0;
    if (view < p->view || !p->view_active || !its_active)
        pbft_vc_sync(p, m->sender, view, its_active);
    if (view != p->view || !p->view_active) {
        pbft_drop(p, "status for another view", m);
        return;
    }
    /* Answer each peer at most twice per interval: a faulty one must not turn
     * small STATUS messages into a flood of retransmissions. */
    uint32_t bit = 1u << m->sender;
    if ((p->status_answered & bit) &&
        p->now_ms - p->status_answered_ms[m->sender] < pbft_retransmit_interval(p) / 2) {
        pbft_drop(p, "status too soon", m);
        return;
    }
    p->status_answered |= bit;
    p->status_answered_ms[m->sender] = p->now_ms;
    /* Our checkpoint votes above its stable checkpoint: it may have missed
     * them (it cannot advance its window without 2f+1 of them). */
    if (m->u.status_active.stable < p->last_executed)
        pbft_checkpoint_resend(p, (int)m->sender, m->u.status_active.stable);
    uint64_t high = p->low + p->cfg.window;
    if (le > p->last_executed) {
        /* It is ahead of us. Where we are stuck it may still miss our own
         * votes (sent while it was busy changing view, say), and its votes
         * are what we lack: push ours again, for the few seqs right after
         * ours that have been stuck for an interval. */
        uint64_t stop = p->last_executed + p->cfg.max_inflight;
        for (uint64_t seq = p->last_executed + 1; seq <= stop && seq <= high; seq++) {
            struct pbft_slot *s = pbft_slot_find(p, seq);
            if (s == NULL || s->committed || s->view != p->view ||
                p->now_ms - s->since_ms < pbft_retransmit_interval(p))
                continue;
            if (s->sent_prepare)
                pbft_send_phase(p, (int)m->sender, MSG_PREPARE, s);
            if (s->sent_commit)
                pbft_send_phase(p, (int)m->sender, MSG_COMMIT, s);
        }
        return; /* our own status will catch us up */
    }
    if (le >= high)
        return;
    uint64_t first = le + 1;
    if (p->low > p->cfg.window && first <= p->low - p->cfg.window) {
        LOG_DEBUG("L2130", "r%u v%llu replica %u at n%llu is behind our log", p->cfg.id,
                  (unsigned long long)p->view, m->sender, (unsigned long long)le);
        first = p->low - p->cfg.window + 1;
    }
    int to = (int)m->sender;
    for (uint64_t seq = first; seq <= high; seq++) {
        struct pbft_slot *s = pbft_slot_find(p, seq);
        if (s == NULL)
            continue;
        /* What we executed, it lacks for sure; what is still in progress we
         * resend only once it has been in progress for an interval (the
         * normal case is probably still delivering it). */
        if (seq > p->last_executed && p->now_ms - s->since_ms < pbft_retransmit_interval(p))
            continue;
        if (s->has_pre_prepare)
            pbft_send_pre_prepare(p, to, s);
        if (s->sent_prepare)
            pbft_send_phase(p, to, MSG_PREPARE, s);
        if (s->sent_commit)
            pbft_send_phase(p, to, MSG_COMMIT, s);
    }
}
