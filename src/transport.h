/* Transport: the replica's connections, on NNG streams (TCP).
 *
 * The bytes on the wire are those of NNG's SP protocols (src/spframe.h), so a
 * stock NNG socket can talk to us, but no NNG socket runs here: each
 * connection is driven by our own completion callbacks, which saves the
 * thread hand-offs of NNG's protocol layers (two or three per message; on a
 * small machine most of what a message costs).
 *
 * Peers: one listener on this replica's peer_address accepts connections from
 * every other replica and reads them as NNG's pull0 would; one outbound
 * stream per other replica writes to it as push0 would, redialing (20 ms
 * doubling to 500 ms) whenever it is down. Sends toward peers never block: up
 * to SPSTREAM_QUEUE_MSGS messages wait per peer (while it is away too), and
 * beyond that they are dropped and counted. Envelopes are signed, so the
 * listener needs no notion of who is connected.
 *
 * Clients: one listener on client_address speaks pair1 (as NNG's pair1
 * does). Every received message carries its connection's id, and replies go
 * back to that id (transport_send_client), up to 4 MiB queued per client (a
 * client that does not read loses replies, not our memory).
 *
 * Receiving: each connection has one read in flight. Once the other side's
 * handshake is in, the read is done by one of four threads of our own that
 * wait for the connection's socket (src/rxpoll.h: one thread wake-up per
 * received batch instead of NNG's two, its poller's and a task thread's);
 * before that, or when the socket cannot be found, NNG reads and completes on
 * one of its task threads. Either way every whole frame in the buffer is
 * handed on and then the next read is posted, so messages from one
 * connection keep their order and different connections are read in
 * parallel. A peer's message
 * goes to on_recv right there (it verifies and queues for the core), and once
 * the read's frames are all handed on, peer_read_done is called on the same
 * thread (with no transport lock held: the replica takes a step there): no
 * thread hand-off on the replicas' critical path. A client's goes through a
 * bounded queue to a client thread (1, or 2 with 8 or more CPUs) that calls
 * on_recv (one connection's messages one at a time, in order), so that floods of client connections
 * cannot hold the threads the replicas' traffic needs; when that queue is full the connection stops
 * reading until there is room (TCP slows the client; nothing is dropped).
 * A small client message (at most 2 KiB, a dozen transactions) that finds
 * the queue empty and no client thread at work goes to on_recv on the
 * reading thread instead, one such thread at a time: the client threads'
 * share and the connection's order are unchanged, and light load saves a
 * thread hand-off per request.
 * Ownership of the nng_msg moves to on_recv; when it answers false the
 * connection is closed (a peer redials by itself). A frame longer than
 * max_message_bytes is never read: its connection is closed when its length
 * arrives; so is one whose handshake does not arrive within 10 s. At most 64
 * peer and 1024 client connections are open at once; more are refused (a
 * warning every 10 s at most).
 *
 * Prefix: transport_. Thread-safe: sends may come from any thread. */
#ifndef TALLY_TRANSPORT_H
#define TALLY_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "src/err.h"

#define TRANSPORT_MAX_PEERS 16

enum transport_origin {
    TRANSPORT_FROM_PEER,
    TRANSPORT_FROM_CLIENT,        /* on a client thread */
    TRANSPORT_FROM_CLIENT_INLINE, /* a small one, on the thread that read it (then read_done) */
};

/* Called on the reading thread (peers, small client messages) or a client
 * thread for every received message. Ownership of msg
 * moves to the callee (nng_msg_free it). pipe identifies the connection (the
 * client's, for replies). Must not wait for other threads. Returns false to
 * have the connection closed. */
typedef bool (*transport_recv_fn)(void *ctx, enum transport_origin origin, uint32_t pipe,
                                  nng_msg *msg);
/* Called on the thread of a peer connection's completed read (or a client
 * connection's that passed a message inline), after its frames went to
 * on_recv and before the next read is posted. */
typedef void (*transport_read_done_fn)(void *ctx);

struct transport_opts {
    uint32_t self; /* this replica's id */
    uint32_t n;    /* replicas */
    const char *peer_listen;
    const char *client_listen;
    const char *peer_addrs[TRANSPORT_MAX_PEERS]; /* indexed by id; [self] unused */
    size_t max_message_bytes;
    transport_recv_fn on_recv;
    transport_read_done_fn peer_read_done; /* may be NULL */
    void *ctx;
    /* Threads that handle client messages: 0 for the default (1, or 2 with
     * 8 or more CPUs), else 1 or 2. */
    unsigned client_threads;
};

struct transport_stats {
    uint64_t peer_sent, peer_send_dropped;
    uint64_t client_sent, client_send_dropped;
    uint64_t peer_received, client_received;
    uint64_t peer_closed, client_closed; /* connections closed for a message they sent */
    /* connections closed before a message was read: a bad handshake or a
     * frame that is malformed or longer than max_message_bytes */
    uint64_t peer_bad_frames, client_bad_frames;
    uint64_t client_paused; /* client connections paused: the client threads were behind */
};

struct transport;

/* Listen on both addresses and start dialing peers.
 * On failure (address in use, bad address) nothing is left running. */
int transport_start(const struct transport_opts *o, struct transport **out, struct tally_err *err);
/* Close every connection, wait for their callbacks, free. NULL is fine. */
void transport_stop(struct transport *t);

/* Copy bytes toward replica `to` (never blocks; drop + count when full). */
void transport_send_peer(struct transport *t, uint32_t to, const uint8_t *bytes, size_t len);
/* The same toward every other replica. */
void transport_broadcast(struct transport *t, const uint8_t *bytes, size_t len);
/* Copy bytes to the client connection `pipe` (never blocks; drop + count). */
void transport_send_client(struct transport *t, uint32_t pipe, const uint8_t *bytes, size_t len);

/* Replicas our outbound streams are connected to right now (handshake
 * answered; not counting self). */
uint32_t transport_peers_connected(const struct transport *t);
/* Whether the outbound stream toward `id` is connected. */
int transport_peer_is_connected(const struct transport *t, uint32_t id);
void transport_get_stats(const struct transport *t, struct transport_stats *out);

#endif
