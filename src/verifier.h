/* Verifier: decodes every received message and checks its signatures before
 * the core sees it. It runs on the thread that completed the
 * transport's read (verifier_process), so a message goes from the socket to
 * the core's queue without another thread hand-off, and the work spreads over
 * as many connections as are sending at once.
 *
 *  - Peer messages: the envelope must decode (msg_decode, bounded by
 *    max_message_bytes), come from a replica of the config and carry a
 *    valid signature by that replica's key (our own id is accepted: peers
 *    retransmit the primary's PRE-PREPARE to whoever lacks it); PRE-PREPAREs also have every
 *    transaction signature checked (so execution never verifies again), so do
 *    the blocks of a STATE-RESP (their verdicts go to the cache, which the
 *    install then reads); a CHECKPOINT's statement signature must verify
 *    against the sender's key and our chain id (it goes into certificates).
 *  - Client messages: REQUEST (each transaction decoded, hashed and its
 *    signature checked), QUERY and STATUS_REQ; anything else is dropped.
 *  - A PREPARE or COMMIT that the replica says is settled (opts.settled: it
 *    can change nothing there any more) is dropped before its signature is
 *    checked, when it comes on a connection where a message of the same
 *    sender has verified before (so a stranger's forgeries are still
 *    checked, counted and answered by closing): ~0.8 of the ~6 PREPAREs and
 *    COMMITs a replica receives per block at light load.
 *  - Transaction signatures are checked once per replica: a bounded,
 *    direct-mapped cache remembers the verdict per transaction hash, so a tx
 *    that came from a client and again inside a PRE-PREPARE costs one verify.
 *  - A connection that sends something no honest replica or client sends
 *    (a message that does not decode, a peer message from an unknown sender
 *    or with a bad signature, a client message of a replica's type) gets
 *    VERIFIER_CLOSE: the transport closes it, so a stranger pays a new
 *    connection for every forged message instead of streaming them.
 *
 * Output goes to the deliver callback (the replica's event queue), which takes
 * ownership of the event on success and returns nonzero when its queue is
 * full (the verifier then frees the event and counts it). Prefix: verifier_. */
#ifndef TALLY_VERIFIER_H
#define TALLY_VERIFIER_H

#include <stdint.h>

#include <nng/nng.h>

#include "crypto/crypto.h"
#include "src/msg.h"
#include "src/transport.h"

#define VERIFIER_CACHE_SLOTS (1u << 19) /* tx verdicts remembered, 2 ways per set (9 MiB) */
#define VERIFIER_PROVEN_SLOTS 256       /* peer connections whose sender is proven */

enum verifier_event_kind {
    VERIFIER_EV_PEER,    /* a verified protocol message from another replica */
    VERIFIER_EV_REQUEST, /* a client REQUEST: hashes and sig_ok filled */
    VERIFIER_EV_QUERY,   /* a client QUERY */
    VERIFIER_EV_STATUS,  /* a client STATUS_REQ */
};

/* One verified message. m borrows from msg's body: both live until
 * verifier_event_free. */
struct verifier_event {
    enum verifier_event_kind kind;
    uint32_t pipe;  /* client connection (client events) */
    bool read_here; /* a client message verified on the thread that read it, which
                     * steps once its frames are in (TRANSPORT_FROM_CLIENT_INLINE) */
    nng_msg *msg;
    struct msg m;
    /* REQUEST only: m.u.request.count entries each, owned by the event. */
    tc_hash *hashes;
    uint8_t *sig_ok;
    struct verifier_event *next; /* free for the consumer's queue */
};

void verifier_event_free(struct verifier_event *ev);

typedef int (*verifier_deliver_fn)(void *ctx, struct verifier_event *ev);

struct verifier_opts {
    uint32_t self, n;
    tc_pubkey replica_keys[TRANSPORT_MAX_PEERS];
    size_t max_message_bytes;
    verifier_deliver_fn deliver;
    void *ctx;
    tc_hash chain_id; /* checkpoint statements are verified against it */
    /* Optional: whether a decoded, not yet verified PREPARE or COMMIT can no
     * longer change anything at this replica; it is then dropped without its
     * signature being checked (see above). Thread-safe. */
    bool (*settled)(void *ctx, const struct msg *m);
};

struct verifier_stats {
    uint64_t bad_signature;  /* envelope signatures that did not verify */
    uint64_t unknown_sender; /* sender not a replica of the config (or ourselves) */
    uint64_t malformed;      /* did not decode, or wrong type for where it came from */
    uint64_t oversized;      /* longer than max_message_bytes */
    uint64_t queue_full;     /* dropped because the loop's queue was full */
    uint64_t tx_verified;    /* transaction signatures actually checked */
    uint64_t tx_cache_hits;  /* ... and answered by the cache */
    uint64_t tx_bad_signature;
    uint64_t settled_unverified; /* PREPAREs and COMMITs dropped as settled, unverified */
};

struct verifier;

int verifier_start(const struct verifier_opts *o, struct verifier **out, struct tally_err *err);
/* Free. NULL is fine. No verifier_process may be running. */
void verifier_stop(struct verifier *v);

enum verifier_verdict {
    VERIFIER_KEEP,  /* delivered, or dropped for a reason an honest sender can cause */
    VERIFIER_CLOSE, /* the sender is not honest: close its connection */
};

/* Decode and verify a received message on the calling thread and deliver it
 * (ownership of msg moves to the verifier, always). pipe names the
 * connection it came on (peers' too). Thread-safe. */
enum verifier_verdict verifier_process(struct verifier *v, enum transport_origin origin,
                                       uint32_t pipe, nng_msg *msg);

/* 1 when the tx (146 bytes, hash h) carries a valid signature: answered from
 * the cache, or verified now on the calling thread and remembered. */
int verifier_tx_sig_ok(struct verifier *v, const uint8_t *tx_bytes, const tc_hash *h);

void verifier_get_stats(const struct verifier *v, struct verifier_stats *out);
/* Count a drop that happened downstream (the loop's queue was full). */
void verifier_count_queue_full(struct verifier *v);

#endif
