/* Transport: the replica's NNG sockets.
 *
 * Peers: one pull0 listener on this replica's peer_address receives from every
 * other replica; one push0 socket per other replica dials that replica's
 * peer_address (NNG dialers reconnect by themselves when a peer restarts).
 * Sends toward peers never block: when a peer's send buffer is full (it is gone
 * or slow) the message is dropped and counted. Envelopes are signed, so the
 * pull socket needs no notion of who is connected.
 *
 * Clients: one pair1 socket in polyamorous mode listens on client_address;
 * every received message remembers the pipe it came from, and replies are sent
 * back to that pipe (transport_send_client).
 *
 * Receiving: recv_threads threads per socket (peer, client) block in
 * nng_recvmsg and hand each message to the on_recv callback on that thread
 * (ownership of the nng_msg moves to the callback), which verifies it and
 * queues it for the loop. When the callback answers false the connection the
 * message came from is closed (a peer's dialer reconnects by itself). The
 * bounded NNG buffers and TCP hold what the threads have not read yet, so a
 * flood slows its sender instead of growing our memory. Messages larger than
 * max_message_bytes are dropped by NNG before they are read whole
 * (NNG_OPT_RECVMAXSZ), and their connection closed.
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
#define TRANSPORT_MAX_RECV_THREADS 8 /* per socket */
#define TRANSPORT_BUFFER_MSGS 1024   /* send/recv buffers, in messages (MEASURED.md) */

enum transport_origin { TRANSPORT_FROM_PEER, TRANSPORT_FROM_CLIENT };

/* Called on a receive thread for every received message. Ownership of msg
 * moves to the callee (nng_msg_free it). pipe identifies the connection (the
 * client's, for replies). Must not wait for other threads. Returns false to
 * have the connection closed. */
typedef bool (*transport_recv_fn)(void *ctx, enum transport_origin origin, uint32_t pipe,
                                  nng_msg *msg);

struct transport_opts {
    uint32_t self; /* this replica's id */
    uint32_t n;    /* replicas */
    const char *peer_listen;
    const char *client_listen;
    const char *peer_addrs[TRANSPORT_MAX_PEERS]; /* indexed by id; [self] unused */
    size_t max_message_bytes;
    unsigned recv_threads; /* per socket, 1..TRANSPORT_MAX_RECV_THREADS */
    transport_recv_fn on_recv;
    void *ctx;
};

struct transport_stats {
    uint64_t peer_sent, peer_send_dropped;
    uint64_t client_sent, client_send_dropped;
    uint64_t peer_received, client_received;
    uint64_t peer_closed, client_closed; /* connections closed for what they sent */
};

struct transport;

/* Open and bind every socket, start dialing peers and the receive threads.
 * On failure (address in use, bad address) nothing is left running. */
int transport_start(const struct transport_opts *o, struct transport **out, struct tally_err *err);
/* Close the sockets, join the receive threads, free. NULL is fine. */
void transport_stop(struct transport *t);

/* Copy bytes toward replica `to` (never blocks; drop + count when full). */
void transport_send_peer(struct transport *t, uint32_t to, const uint8_t *bytes, size_t len);
/* The same toward every other replica. */
void transport_broadcast(struct transport *t, const uint8_t *bytes, size_t len);
/* Copy bytes to the client connection `pipe` (never blocks; drop + count). */
void transport_send_client(struct transport *t, uint32_t pipe, const uint8_t *bytes, size_t len);

/* Replicas our push sockets are connected to right now (not counting self). */
uint32_t transport_peers_connected(const struct transport *t);
/* Whether the push socket toward `id` is connected. */
int transport_peer_is_connected(const struct transport *t, uint32_t id);
void transport_get_stats(const struct transport *t, struct transport_stats *out);

#endif
