/* SP over NNG streams: the pieces both ends of a connection use.
 *
 * Tally speaks NNG's SP wire format (src/spframe.h) on NNG's byte streams,
 * driven by its own completion callbacks instead of NNG's protocol sockets:
 * a message costs two or three thread hand-offs fewer that way. The replica's
 * transport (src/transport.c) and the client library (tools/lib/client.c)
 * build on three pieces:
 *
 *  - spstream_sendq: frames waiting to be written and the write in flight.
 *    Frames queued while a write is in flight go out together in the next.
 *  - spstream_rbuf: bytes read and not yet delivered, and the parse that
 *    hands each whole frame on (the peer's handshake first).
 *  - spstream_link: an outbound connection that dials, redials (20 ms
 *    doubling to 500 ms), sends our handshake, checks the other side's, and
 *    then writes queued frames and (optionally) delivers received ones.
 *
 * Callbacks run on NNG's task threads, or a link's reads on an rxpoll
 * thread. Prefix: spstream_. */
#ifndef TALLY_SPSTREAM_H
#define TALLY_SPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "src/err.h"
#include "src/rxpoll.h"
#include "src/spframe.h"

#define SPSTREAM_QUEUE_MSGS 1024 /* default cap on queued messages (MEASURED.md) */
#define SPSTREAM_QUEUE_BYTES (64u * 1024u * 1024u) /* default cap on queued bytes */
#define SPSTREAM_HANDSHAKE_MS 10000 /* the other side's handshake must come within this */

/* ---- send queue (under its owner's lock) ---------------------------------- */

struct spstream_sendq {
    size_t max_msgs, max_bytes; /* caps on pending (0: SPSTREAM_QUEUE_*); one
                                 * message is always taken into an empty queue */
    uint8_t *pending, *inflight;
    size_t pending_len, pending_cap, pending_msgs;
    size_t inflight_len, inflight_cap, inflight_off;
    bool sending;           /* a write is in flight */
    uint64_t writes_waited; /* writes that found the socket full (SPSTREAM_WRITE_PENDING) */
};

/* Queue hdr and body as one unit (a frame, or a handshake with len 0).
 * False when the queue is full or out of memory. */
bool spstream_sendq_push(struct spstream_sendq *q, const uint8_t *hdr, size_t hlen,
                         const uint8_t *body, size_t len);
/* Whether anything is left to write. */
bool spstream_sendq_has_work(const struct spstream_sendq *q);
/* When nothing is half written, make everything pending the next write. */
void spstream_sendq_take(struct spstream_sendq *q);
enum spstream_write {
    SPSTREAM_WRITE_DONE,    /* written at once (and counted, spstream_sendq_wrote) */
    SPSTREAM_WRITE_PENDING, /* in flight on aio (q->sending): its callback reports it */
    SPSTREAM_WRITE_FAILED,  /* not started, or failed: close the stream */
};

/* Start writing the rest of the write in flight, or else everything
 * pending (spstream_sendq_take), on s. First with quick, an aio without a
 * callback: when the socket takes the bytes at once, as it nearly always
 * does, NNG completes the write inside nng_stream_send without waking one
 * of its task threads to run a callback (SPSTREAM_WRITE_DONE: the caller
 * goes on as that callback would). When the socket is full, quick is
 * cancelled and the write goes to aio instead (SPSTREAM_WRITE_PENDING). */
enum spstream_write spstream_sendq_start(struct spstream_sendq *q, nng_stream *s, nng_aio *quick,
                                         nng_aio *aio);
/* The write completed, n bytes of it written (0 on error). */
void spstream_sendq_wrote(struct spstream_sendq *q, size_t n);
/* The stream is gone: what was being written is lost; pending stays. */
void spstream_sendq_drop_inflight(struct spstream_sendq *q);
/* The stream is gone: the frames of the write in flight that had not begun
 * to go out move back to the front of pending (a frame cut in two is lost).
 * For a write of whole frames only (not a handshake). */
void spstream_sendq_requeue_unsent(struct spstream_sendq *q);
void spstream_sendq_free(struct spstream_sendq *q);

/* ---- receive buffer (owned by the connection's read callback) ------------- */

struct spstream_rbuf {
    uint8_t *buf;
    size_t cap, have;
    bool got_hs;
};

enum spstream_deliver {
    SPSTREAM_OK,       /* everything whole was delivered; read on */
    SPSTREAM_BAD,      /* a bad handshake or frame (malformed, too long): close */
    SPSTREAM_REJECTED, /* the callback refused a frame: close */
    SPSTREAM_PAUSED,   /* the callback could not take a frame yet: it stays in
                        * the buffer; deliver again (n = 0) before reading on */
};

enum spstream_take {
    SPSTREAM_TAKEN,   /* the frame was handled */
    SPSTREAM_REFUSED, /* close the connection */
    SPSTREAM_LATER,   /* no room now: keep it, stop delivering (backpressure) */
};

/* A frame's body, on the thread that delivers (the read callback's). */
typedef enum spstream_take (*spstream_frame_fn)(void *ctx, const uint8_t *body, size_t len);

int spstream_rbuf_init(struct spstream_rbuf *r);
void spstream_rbuf_free(struct spstream_rbuf *r);
/* Point aio at the buffer's free tail for the next read; until the other
 * side's handshake is in, the read times out after SPSTREAM_HANDSHAKE_MS. */
int spstream_rbuf_arm(struct spstream_rbuf *r, nng_aio *aio);
/* n more bytes arrived (0: none, to go on after SPSTREAM_PAUSED): check the
 * peer's handshake (once), then hand every whole frame to fn. The buffer
 * grows for one frame up to its length, which is checked against max_body
 * before it is believed. A pair1 frame past its TTL is SPSTREAM_BAD here (NNG
 * drops it and reads on; no honest Tally speaker sends one). */
enum spstream_deliver spstream_rbuf_deliver(struct spstream_rbuf *r, size_t n,
                                            enum spframe_proto peer, size_t max_body,
                                            spstream_frame_fn fn, void *ctx);

/* On an rxpoll thread whose watch of s fired: read what s holds now into r
 * through quick (rxpoll_read_now) and deliver it as spstream_rbuf_deliver
 * does; a read that filled the buffer is followed by another at once, up to
 * SPSTREAM_READS_PER_WAKE reads: then SPSTREAM_OK with bytes left in the
 * socket, whose watch (level-triggered) fires again once re-armed, after
 * the other sockets that were ready. So one sender that keeps its socket
 * full cannot hold a reading thread. Nothing to read is SPSTREAM_OK (watch
 * again), unless the socket hung up; a stream that is gone is
 * SPSTREAM_REJECTED. */
#define SPSTREAM_READS_PER_WAKE 4
enum spstream_deliver spstream_rbuf_read_now(struct spstream_rbuf *r, nng_stream *s, nng_aio *quick,
                                             bool hangup, enum spframe_proto peer, size_t max_body,
                                             spstream_frame_fn fn, void *ctx);

/* ---- outbound link ----------------------------------------------------------- */

struct spstream_link_opts {
    const char *url;
    enum spframe_proto self, peer; /* push0 -> pull0, or pair1 -> pair1 */
    /* Received frames, or NULL when the other side must send none (pull0).
     * A link does not pause: on_frame must not answer SPSTREAM_LATER. */
    spstream_frame_fn on_frame;
    size_t max_body;                             /* bound on a received frame */
    void (*on_state)(void *ctx, bool connected); /* optional: connected or lost */
    void *ctx;
    /* Optional: once the other side's handshake is in, received frames are
     * read (and on_frame called) on this pool's threads instead of NNG's
     * (src/rxpoll.h). Stop the link before the pool. */
    struct rxpoll *rx;
};

struct spstream_link;

/* Start dialing (in the background; failures are retried). */
int spstream_link_start(const struct spstream_link_opts *o, struct spstream_link **out,
                        struct tally_err *err);
/* Close, wait for the callbacks, free. NULL is fine. */
void spstream_link_stop(struct spstream_link *l);
/* Queue one message. Held while the link is down (written once the other
 * side's handshake is in); false when the queue is full. Never waits for the
 * other side, but writes on the caller's thread what the socket takes at
 * once, and a write that fails there closes the stream and calls on_state
 * (false) on this thread, with the link's lock held: on_state must not
 * send on the link. */
bool spstream_link_send(struct spstream_link *l, const uint8_t *body, size_t len);
/* Writes that found the socket full and finished in a callback. */
uint64_t spstream_link_writes_waited(const struct spstream_link *l);
/* Whether the other side's handshake has arrived on the current stream. */
bool spstream_link_connected(const struct spstream_link *l);

#endif
