/* COMMIT (Castro & Liskov, OSDI '99, §4.3).
 *
 * "Replicas accept commit messages and insert them in their log provided they
 *  are properly signed, the view number in the message is equal to the
 *  replica's current view, and the sequence number is between h and H."
 * "We define the committed-local(m, v, n, i) predicate to be true if and only
 *  if prepared(m, v, n, i) is true and i has accepted 2f+1 commits (possibly
 *  including its own) from different replicas that match the pre-prepare for
 *  m; a commit matches a pre-prepare if they have the same view, sequence
 *  number, and digest." Execution follows in pbft.c (execute_ready). */
#include <string.h>

#include "src/pbft_internal.h"

void pbft_recv_commit(struct pbft *p, const struct msg *m, uint64_t now_ms)
{
    uint64_t view = m->u.phase.view, seq = m->u.phase.seq;
    if (view != p->view) {
        pbft_drop(p, "commit for another view", m);
        return;
    }
    struct pbft_slot *s = pbft_slot_for_view(p, seq, view);
    if (s == NULL) {
        pbft_drop(p, "commit outside the watermarks", m);
        return;
    }
    uint32_t bit = 1u << m->sender;
    if (s->commit_from & bit) {
        pbft_drop(p, "duplicate commit", m);
        return;
    }
    if (s->has_pre_prepare && memcmp(s->digest.b, m->u.phase.digest.b, TC_HASH_BYTES) != 0) {
        pbft_drop(p, "commit digest does not match the pre-prepare", m);
        return;
    }
    s->commit_from |= bit;
    s->commit_digest[m->sender] = m->u.phase.digest;
    pbft_slot_progress(p, s, now_ms);
}
