/* PREPARE (Castro & Liskov, OSDI '99, §4.2).
 *
 * "A replica (including the primary) accepts prepare messages and adds them
 *  to its log provided their signatures are correct, their view number equals
 *  the replica's current view, and their sequence number is between h and H."
 * "We define the predicate prepared(m, v, n, i) to be true if and only if
 *  replica i has inserted in its log: the request m, a pre-prepare for m in
 *  view v with sequence number n, and 2f prepares from different backups that
 *  match the pre-prepare." A PREPARE from the primary is not one of those. */
#include <string.h>

#include "src/pbft_internal.h"

void pbft_recv_prepare(struct pbft *p, const struct msg *m, uint64_t now_ms)
{
    uint64_t view = m->u.phase.view, seq = m->u.phase.seq;
    if (view != p->view) {
        pbft_drop(p, "prepare for another view", m);
        return;
    }
    if (m->sender == pbft_primary_of(p, view)) {
        pbft_drop(p, "prepare from the primary", m);
        return;
    }
    struct pbft_slot *s = pbft_slot_for_view(p, seq, view);
    if (s == NULL) {
        pbft_drop(p, "prepare outside the watermarks", m);
        return;
    }
    uint32_t bit = 1u << m->sender;
    if (s->prepare_from & bit) {
        pbft_drop(p, "duplicate prepare", m);
        return;
    }
    if (s->has_pre_prepare && memcmp(s->digest.b, m->u.phase.digest.b, TC_HASH_BYTES) != 0) {
        pbft_drop(p, "prepare digest does not match the pre-prepare", m);
        return;
    }
    /* Before the pre-prepare arrives we keep it and count it only if it
     * matches (one per sender: a second one is a duplicate). */
    s->prepare_from |= bit;
    s->prepare_digest[m->sender] = m->u.phase.digest;
    s->prepare_sig[m->sender] = m->sig; /* proof for a later VIEW-CHANGE */
    pbft_slot_progress(p, s, now_ms);
}
