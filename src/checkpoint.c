/* Checkpoints and garbage collection (Castro & Liskov, OSDI '99, §4.3).
 *
 * "Replicas produce checkpoints periodically: when a request with a sequence
 *  number divisible by some constant (e.g. 100) is executed."  Ours: every K
 * (checkpoint_interval) sequence numbers, after executing seq, a replica signs
 * the checkpoint statement (ledger/cert.h: chain id, seq, block hash, state
 * digest) and multicasts <CHECKPOINT, n, d, i>.
 *
 * "Each replica collects checkpoint messages in its log until it has 2f+1 of
 *  them for sequence number n with the same digest d signed by different
 *  replicas (including possibly its own). These 2f+1 messages are the proof
 *  of correctness for the checkpoint. A checkpoint with a proof becomes
 *  stable and the replica discards all pre-prepare, prepare, and commit
 *  messages with sequence number less than or equal to n from its log; it
 *  also discards all earlier checkpoints and checkpoint messages."
 *
 * "The checkpoint protocol is used to advance the low and high water marks
 *  ... The low-water mark h is equal to the sequence number of the last
 *  stable checkpoint. The high water mark H = h + k" (our window L).
 *
 * Ours keeps the entries in (h - L, h] a while longer (a lagging replica can
 * still be sent them by retransmission); RocksDB records at or below h - L
 * are deleted (PBFT_PERSIST_DISCARD_LOG). The proof becomes a certificate
 * persisted by the shell (PBFT_PERSIST_CHECKPOINT), verifiable offline. A
 * stable checkpoint beyond what we executed makes us fetch state
 * (state_transfer.c). Votes beyond our window are remembered only as each
 * replica's latest (memory stays bounded whatever peers send). */
#include <string.h>

#include "src/pbft_internal.h"

/* The slot for a checkpoint seq in [stable, low + window]; NULL outside. */
static struct pbft_ckpt_slot *ckpt_acquire(struct pbft *p, uint64_t seq)
{
    if (seq < p->stable || seq > p->low + p->cfg.window)
        return NULL;
    struct pbft_ckpt_slot *c = &p->ckpts[(seq / p->cfg.checkpoint_interval) % p->nckpts];
    if (c->seq != seq) {
        memset(c, 0, sizeof(*c));
        c->seq = seq;
    }
    return c;
}

uint64_t pbft_checkpoint_votes(const struct pbft *p)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < p->nckpts; i++)
        if (p->ckpts[i].seq != 0)
            n += (uint64_t)__builtin_popcount(p->ckpts[i].from);
    return n;
}

static bool same_ckpt(const struct pbft_ckpt_slot *c, uint32_t a, uint32_t b)
{
    return memcmp(c->block_hash[a].b, c->block_hash[b].b, TC_HASH_BYTES) == 0 &&
           memcmp(c->state_digest[a].b, c->state_digest[b].b, TC_HASH_BYTES) == 0;
}

static void send_vote(struct pbft *p, int to, const struct pbft_ckpt_slot *c)
{
    uint32_t me = p->cfg.id;
    struct msg_signer signer = {.ctx = p->io.ctx, .sign = p->io.sign};
    msg_buf_reset(&p->out);
    if (msg_encode_checkpoint(&p->out, me, c->seq, &c->block_hash[me], &c->state_digest[me],
                              &c->sig[me], &signer) == TALLY_OK)
        p->io.send(p->io.ctx, to, p->out.data, p->out.len);
}

void pbft_checkpoint_stabilize(struct pbft *p, const struct ledger_cert *cert)
{
    uint64_t seq = cert->ck.height;
    if (seq <= p->stable || seq > p->last_executed)
        return;
    p->stable = seq;
    p->stable_cert = *cert;
    p->checkpoints_stable++;
    if (seq > p->low) {
        p->low = seq;
        if (seq > p->cfg.window) {
            struct pbft_persist rec = {
                .kind = PBFT_PERSIST_DISCARD_LOG, .view = p->view, .seq = seq - p->cfg.window};
            (void)pbft_persist_rec(p, &rec);
        }
    }
    /* "discards all earlier checkpoints and checkpoint messages" (we keep the
     * stable one's votes: a peer that missed them gets ours again). */
    for (uint64_t i = 0; i < p->nckpts; i++)
        if (p->ckpts[i].seq != 0 && p->ckpts[i].seq < seq)
            memset(&p->ckpts[i], 0, sizeof(p->ckpts[i]));
    LOG_DEBUG("L2150", "r%u v%llu checkpoint %llu stable: window (%llu, %llu]", p->cfg.id,
              (unsigned long long)p->view, (unsigned long long)seq, (unsigned long long)p->low,
              (unsigned long long)(p->low + p->cfg.window));
}

/* 2f+1 matching votes for c->seq? Then it is stable (or, beyond what we
 * executed, a reason to fetch state). */
static void try_stable(struct pbft *p, struct pbft_ckpt_slot *c)
{
    if (c->seq <= p->stable || p->failed)
        return;
    uint32_t quorum = p->quorum_commit; /* 2f+1 (or the test override) */
    for (uint32_t a = 0; a < p->cfg.n; a++) {
        if (!(c->from & (1u << a)))
            continue;
        uint32_t match = 0;
        for (uint32_t b = 0; b < p->cfg.n; b++)
            if ((c->from & (1u << b)) && same_ckpt(c, a, b))
                match |= 1u << b;
        if ((uint32_t)__builtin_popcount(match) < quorum)
            continue;
        if (c->seq > p->last_executed) {
            pbft_state_check(p); /* certified beyond us */
            return;
        }
        uint32_t me = p->cfg.id;
        /* Without our own vote (we executed it before a restart) the shell
         * still checks the certificate against our ledger when persisting. */
        if ((c->from & (1u << me)) && !same_ckpt(c, a, me)) {
            /* 2f+1 replicas (at least f+1 correct) certify another state than
             * ours at a seq we executed: our ledger is not the cluster's. */
            p->failed = true;
            LOG_ERROR("L2151",
                      "r%u v%llu checkpoint %llu: 2f+1 replicas certify a state that is not "
                      "ours; this replica stops (rebuild its data directory)",
                      p->cfg.id, (unsigned long long)p->view, (unsigned long long)c->seq);
            return;
        }
        struct ledger_cert cert = {.ck = {.height = c->seq,
                                          .block_hash = c->block_hash[a],
                                          .state_digest = c->state_digest[a]}};
        for (uint32_t b = 0; b < p->cfg.n && cert.count < LEDGER_CERT_MAX_SIGS; b++) {
            if (!(match & (1u << b)))
                continue;
            cert.sigs[cert.count].signer = p->cfg.replica_keys[b];
            cert.sigs[cert.count].sig = c->sig[b];
            cert.count++;
        }
        ledger_cert_sort(&cert);
        struct pbft_persist rec = {
            .kind = PBFT_PERSIST_CHECKPOINT, .view = p->view, .seq = c->seq, .cert = &cert};
        if (!pbft_persist_rec(p, &rec))
            return;
        pbft_checkpoint_stabilize(p, &cert);
        return;
    }
}

void pbft_checkpoint_own(struct pbft *p, uint64_t seq, const struct pbft_exec_result *res)
{
    struct pbft_ckpt_slot *c = ckpt_acquire(p, seq);
    if (c == NULL)
        return;
    uint32_t me = p->cfg.id;
    struct ledger_ckpt ck = {
        .height = seq, .block_hash = res->block_hash, .state_digest = res->state_digest};
    uint8_t statement[LEDGER_CKPT_STATEMENT_BYTES];
    ledger_ckpt_statement(&p->cfg.chain_id, &ck, statement);
    p->io.sign(p->io.ctx, statement, sizeof(statement), &c->sig[me]);
    c->block_hash[me] = res->block_hash;
    c->state_digest[me] = res->state_digest;
    c->from |= 1u << me;
    send_vote(p, PBFT_BROADCAST, c);
    try_stable(p, c);
}

void pbft_checkpoint_resend(struct pbft *p, int to, uint64_t after_stable)
{
    uint32_t me = p->cfg.id;
    for (uint64_t i = 0; i < p->nckpts; i++) {
        const struct pbft_ckpt_slot *c = &p->ckpts[i];
        if (c->seq != 0 && c->seq > after_stable && (c->from & (1u << me)))
            send_vote(p, to, c);
    }
}

void pbft_recv_checkpoint(struct pbft *p, const struct msg *m)
{
    uint64_t seq = m->u.checkpoint.seq;
    if (seq % p->cfg.checkpoint_interval != 0) {
        pbft_drop(p, "checkpoint at a seq that is not a multiple of K", m);
        return;
    }
    /* The shell verified the statement signature (against our chain id). */
    struct pbft_ckpt_vote *v = &p->latest[m->sender];
    if (seq > v->seq) {
        v->seq = seq;
        v->block_hash = m->u.checkpoint.block_hash;
        v->state_digest = m->u.checkpoint.state_digest;
    }
    struct pbft_ckpt_slot *c = seq <= p->stable ? NULL : ckpt_acquire(p, seq);
    if (c == NULL) {
        if (seq <= p->stable)
            pbft_drop(p, "checkpoint at or below our stable one", m);
        pbft_state_check(p);
        return;
    }
    uint32_t bit = 1u << m->sender;
    if (c->from & bit) {
        pbft_drop(p, "duplicate checkpoint", m);
        return;
    }
    c->from |= bit;
    c->block_hash[m->sender] = m->u.checkpoint.block_hash;
    c->state_digest[m->sender] = m->u.checkpoint.state_digest;
    c->sig[m->sender] = m->u.checkpoint.statement_sig;
    try_stable(p, c);
    pbft_state_check(p);
}

void pbft_restore_checkpoint_vote(struct pbft *p, uint64_t seq, const struct pbft_exec_result *res)
{
    if (seq == 0 || seq % p->cfg.checkpoint_interval != 0 || seq <= p->stable ||
        seq > p->last_executed)
        return;
    pbft_checkpoint_own(p, seq, res); /* the same statement again: sends, may stabilize */
}
