/* Reading NNG TCP streams on threads of our own.
 *
 * When a read posted on an NNG stream completes, NNG's poller thread wakes,
 * reads, and hands the completion to one of NNG's task threads, which wakes
 * to run the callback: two thread wake-ups per received batch of bytes, each
 * ~15 us of CPU on this kind of VM and a few tens of microseconds of latency.
 * rxpoll waits for a stream's socket itself (epoll, one-shot) on a small pool
 * of threads; the thread that wakes reads through NNG with an aio without a
 * callback, which NNG completes inside nng_stream_recv when the socket holds
 * bytes: one wake-up, and the bytes are handled on the thread that read them.
 *
 * NNG 1.5 does not expose a stream's descriptor. rxpoll_stream_fd finds it
 * among this process's descriptors as the one TCP socket whose local and
 * remote addresses are the stream's (a TCP connection's address pair is
 * unique on a host); a stream it cannot place (not TCP, say) is read with
 * NNG's callbacks as before. A watched descriptor is only read through NNG:
 * rxpoll never reads, writes or closes it, and the caller stops watching it
 * before freeing the stream (nng_stream_free closes it).
 *
 * Prefix: rxpoll_. */
#ifndef TALLY_RXPOLL_H
#define TALLY_RXPOLL_H

#include <stdbool.h>
#include <stddef.h>

#include <nng/nng.h>

#include "src/err.h"

#define RXPOLL_MAX_THREADS 16

/* One watched descriptor, owned by the caller (inside its connection). */
struct rxpoll_watch {
    int fd; /* rxpoll_stream_fd's answer; -1: not watchable */
    /* Runs on a pool thread once the socket is readable or hung up
     * (hangup: the peer or a local nng_stream_close shut it down), after
     * rxpoll_arm. The watch is then disarmed until the next rxpoll_arm, so
     * one watch never runs on two threads at once. The pool thread does not
     * touch the watch after calling this (it may be freed inside). */
    void (*ready)(void *ctx, bool hangup);
    void *ctx;
    bool added; /* registered with the pool's epoll instance */
};

struct rxpoll;

/* Start nthreads (1..RXPOLL_MAX_THREADS) threads named name (at most 15
 * characters) waiting for watched sockets. */
int rxpoll_start(unsigned nthreads, const char *name, struct rxpoll **out, struct tally_err *err);
/* Stop and join the threads: no ready callback runs after this returns.
 * The watches may still be forgotten afterwards. NULL is fine. */
void rxpoll_stop(struct rxpoll *p);
/* After rxpoll_stop and rxpoll_forget of every watch: free. NULL is fine. */
void rxpoll_free(struct rxpoll *p);

/* The descriptor under an NNG TCP stream, or -1. Scans /proc/self/fd: call
 * once per connection, not per read. */
int rxpoll_stream_fd(nng_stream *s);

/* Call w->ready once the socket is readable (or hung up). 0, or -1 (the
 * descriptor cannot be watched: the caller closes the connection). */
int rxpoll_arm(struct rxpoll *p, struct rxpoll_watch *w);
/* Stop watching (before the stream is freed). Not while w->ready runs. */
void rxpoll_forget(struct rxpoll *p, struct rxpoll_watch *w);

/* Read what the socket holds now into quick's iov, through NNG on this
 * thread; quick is an aio without a callback. 0 with *got > 0 bytes read;
 * NNG_ECANCELED when there was nothing to read; another NNG error when the
 * connection is gone. */
int rxpoll_read_now(nng_stream *s, nng_aio *quick, size_t *got);

#endif
