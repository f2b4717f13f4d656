/* State transfer: a replica that fell behind fetches the chain from its peers
 * (Castro & Liskov, OSDI '99, §4.3 "a replica ... may need to fetch
 * state"; TOCS '02 §6.2 and Castro's thesis ch. 5: "state transfer").
 *
 * When do we fetch? f+1 replicas vouch, with signed CHECKPOINT votes that
 * match, for a checkpoint seq beyond what we executed (at least one of them
 * is correct, so that checkpoint is real), and we cannot get there by the
 * normal case: the checkpoint lies beyond our high watermark (the messages we
 * would need are outside our window), or we made no execution progress for
 * `state_transfer_after_ms` (the peers no longer hold the log we lack).
 *
 * How? We ask one of the vouchers for blocks from our next height
 * (STATE-REQ). It answers with a chunk (STATE-RESP) that ends on a checkpoint
 * it holds a 2f+1 certificate for, carrying that certificate; the shell
 * verifies the certificate's signatures and the hash chain from our head to
 * the certified block BEFORE applying anything (io->state_install), so a
 * lying peer can delay us but never make us apply a wrong block. A rejected
 * chunk, or no answer within the retransmission timeout, moves us to the next
 * voucher. Chunks are bounded by the message size; progress is the ledger
 * itself, so a crash in the middle resumes from the ledger's height.
 *
 * The serving side answers from blocks and certificates in its ledger
 * (io->state_read); a repeated request (no progress) at most once per
 * retransmission interval / 8. */
#include <string.h>

#include "src/pbft_internal.h"

static uint64_t st_timeout(const struct pbft *p)
{
    return 4 * pbft_retransmit_interval(p);
}

static uint64_t st_after(const struct pbft *p)
{
    return p->cfg.state_transfer_after_ms ? p->cfg.state_transfer_after_ms
                                          : 4 * pbft_retransmit_interval(p);
}

static bool vote_equal(const struct pbft_ckpt_vote *a, const struct pbft_ckpt_vote *b)
{
    return a->seq == b->seq && memcmp(a->block_hash.b, b->block_hash.b, TC_HASH_BYTES) == 0 &&
           memcmp(a->state_digest.b, b->state_digest.b, TC_HASH_BYTES) == 0;
}

/* The highest checkpoint beyond our execution that f+1 replicas vouch for
 * (each replica's latest vote), with who vouches; 0 when none. */
static uint64_t vouched_target(const struct pbft *p, uint32_t *vouchers)
{
    uint64_t best = 0;
    *vouchers = 0;
    for (uint32_t a = 0; a < p->cfg.n; a++) {
        const struct pbft_ckpt_vote *va = &p->latest[a];
        if (a == p->cfg.id || va->seq <= p->last_executed || va->seq <= best)
            continue;
        uint32_t who = 0;
        for (uint32_t b = 0; b < p->cfg.n; b++)
            if (b != p->cfg.id && vote_equal(va, &p->latest[b]))
                who |= 1u << b;
        if ((uint32_t)__builtin_popcount(who) >= p->cfg.f + 1) {
            best = va->seq;
            *vouchers = who;
        }
    }
    return best;
}

/* The next voucher after `after` (cyclically), or `after` if it is the only one. */
static uint32_t next_peer(const struct pbft *p, uint32_t after)
{
    for (uint32_t i = 1; i <= p->cfg.n; i++) {
        uint32_t c = (after + i) % p->cfg.n;
        if (c != p->cfg.id && (p->st.vouchers & (1u << c)))
            return c;
    }
    return after;
}

static void st_request(struct pbft *p)
{
    struct msg_signer signer = {.ctx = p->io.ctx, .sign = p->io.sign};
    msg_buf_reset(&p->out);
    uint64_t from = p->last_executed + 1;
    uint64_t to = p->st.target > from ? p->st.target : from;
    if (msg_encode_state_req(&p->out, p->cfg.id, from, to, &signer) != TALLY_OK)
        return;
    p->st.sent_ms = p->now_ms;
    p->io.send(p->io.ctx, (int)p->st.peer, p->out.data, p->out.len);
    LOG_DEBUG("L2140", "r%u v%llu state transfer: asked replica %u for %llu..%llu", p->cfg.id,
              (unsigned long long)p->view, p->st.peer, (unsigned long long)from,
              (unsigned long long)to);
}

/* Aim at target (vouched for by `vouchers`): retarget a transfer in progress
 * upward, or start one when `start` says we cannot get there otherwise. */
static void st_aim(struct pbft *p, uint64_t target, uint32_t vouchers, bool start, const char *why)
{
    if (p->st.active) {
        if (target > p->st.target) {
            p->st.target = target;
            p->st.vouchers = vouchers;
        }
        return;
    }
    if (!start)
        return;
    p->st.active = true;
    p->st.target = target;
    p->st.vouchers = vouchers;
    p->st.peer = next_peer(p, p->st.peer);
    LOG_INFO("L2141", "r%u v%llu behind (%s): checkpoint %llu, we executed %llu; fetching state",
             p->cfg.id, (unsigned long long)p->view, why, (unsigned long long)target,
             (unsigned long long)p->last_executed);
    st_request(p);
}

void pbft_state_check(struct pbft *p)
{
    if (p->io.state_read == NULL || p->io.state_install == NULL || p->failed)
        return;
    uint32_t vouchers = 0;
    uint64_t target = vouched_target(p, &vouchers);
    if (target == 0)
        return;
    bool beyond_window = target > p->low + p->cfg.window;
    bool stalled = p->now_ms - p->last_progress_ms >= st_after(p);
    st_aim(p, target, vouchers, beyond_window || stalled, "f+1 replicas vouch for it");
}

void pbft_state_target(struct pbft *p, uint64_t target, uint32_t vouchers)
{
    vouchers &= ~(1u << p->cfg.id);
    if (p->io.state_read == NULL || p->io.state_install == NULL || p->failed ||
        target <= p->last_executed || vouchers == 0)
        return;
    st_aim(p, target, vouchers, true, "the new view starts there");
}

/* The transfer reached its target (by a chunk, or by the normal case). */
static void st_done(struct pbft *p, const char *how)
{
    p->st.active = false;
    LOG_INFO("L2143", "r%u v%llu state transfer done (%s): at %llu (stable %llu)", p->cfg.id,
             (unsigned long long)p->view, how, (unsigned long long)p->last_executed,
             (unsigned long long)p->stable);
    pbft_state_check(p); /* the target may have moved on meanwhile */
}

void pbft_state_tick(struct pbft *p)
{
    if (!p->st.active) {
        pbft_state_check(p); /* "stalled" is a matter of time */
        return;
    }
    if (p->last_executed >= p->st.target) {
        /* The normal case got there first (the log we lacked arrived after
         * all). Without this the transfer would stay active for ever, asking
         * for blocks nobody has yet, and a replica in a transfer never
         * suspects its primary. */
        st_done(p, "caught up by the normal case");
        return;
    }
    if (p->now_ms - p->st.sent_ms < st_timeout(p))
        return;
    p->st.peer = next_peer(p, p->st.peer);
    st_request(p);
}

/* We now hold everything up to res->height: the log below it is done. */
static void jump(struct pbft *p, const struct pbft_install_result *res)
{
    uint64_t old = p->last_executed, h = res->height;
    for (uint64_t i = 0; i < p->nslots; i++) {
        struct pbft_slot *s = &p->slots[i];
        if (s->seq <= old || s->seq > h)
            continue;
        if (s->has_pre_prepare && !s->executed)
            for (uint32_t k = 0; k < s->count; k++)
                pbft_txset_remove(p, &s->hashes[k]);
        s->executed = true;
    }
    p->last_executed = h;
    p->last_progress_ms = p->now_ms;
    if (p->next_seq < h)
        p->next_seq = h;
    if (res->certified && res->ck.height == h) {
        /* Vote for it ourselves (we now hold exactly that state) so that
         * peers that missed it can still form the certificate. */
        struct pbft_exec_result own = {.block_hash = res->ck.block_hash,
                                       .state_digest = res->ck.state_digest};
        pbft_checkpoint_stabilize(p, &res->cert);
        if (h % p->cfg.checkpoint_interval == 0)
            pbft_checkpoint_own(p, h, &own);
    }
}

void pbft_recv_state_resp(struct pbft *p, const struct msg *m, uint64_t now_ms)
{
    (void)now_ms;
    if (!p->st.active || m->sender != p->st.peer) {
        pbft_drop(p, "state response nobody asked for", m);
        return;
    }
    if (m->u.state_resp.from != p->last_executed + 1) {
        pbft_drop(p, "stale state response", m);
        return;
    }
    struct pbft_install_result res = {0};
    int rc = p->io.state_install(p->io.ctx, m->u.state_resp.chunk, m->u.state_resp.len, &res);
    if (rc != TALLY_OK || res.height <= p->last_executed) {
        p->st.bad_chunks++;
        p->dropped++;
        LOG_WARN("L2142", "r%u v%llu state chunk from replica %u rejected (%s); asking another",
                 p->cfg.id, (unsigned long long)p->view, m->sender,
                 rc != TALLY_OK ? tally_strerror(rc) : "no progress");
        p->st.peer = next_peer(p, p->st.peer);
        st_request(p);
        return;
    }
    p->st.chunks++;
    jump(p, &res);
    if (p->last_executed >= p->st.target) {
        st_done(p, "by transfer");
    } else {
        st_request(p);
    }
    pbft_execute_ready(p); /* the normal case may hold committed entries above */
}

void pbft_recv_state_req(struct pbft *p, const struct msg *m)
{
    uint64_t from = m->u.state_req.from;
    if (from > p->last_executed) {
        pbft_drop(p, "state request beyond what we executed", m);
        return;
    }
    /* A requester that made progress asks again at once; the same request
     * again is answered at most once per interval/8 (a faulty replica must
     * not turn small requests into a flood of chunks). */
    uint64_t *last = &p->st.answered_ms[m->sender];
    uint64_t gap = pbft_retransmit_interval(p) / 8;
    if (*last != 0 && from <= p->st.answered_from[m->sender] && p->now_ms - *last < gap) {
        pbft_drop(p, "state request too soon", m);
        return;
    }
    msg_buf_reset(&p->chunk);
    if (p->io.state_read == NULL ||
        p->io.state_read(p->io.ctx, from, m->u.state_req.to, &p->chunk) != TALLY_OK ||
        p->chunk.len == 0) {
        pbft_drop(p, "no state to serve", m);
        return;
    }
    *last = p->now_ms ? p->now_ms : 1;
    p->st.answered_from[m->sender] = from;
    struct msg_signer signer = {.ctx = p->io.ctx, .sign = p->io.sign};
    msg_buf_reset(&p->out);
    if (msg_encode_state_resp(&p->out, p->cfg.id, from, p->chunk.data, p->chunk.len, &signer) !=
        TALLY_OK)
        return;
    p->io.send(p->io.ctx, (int)m->sender, p->out.data, p->out.len);
}
