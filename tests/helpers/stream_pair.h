/* Test helper: NNG TCP streams on 127.0.0.1 for the transport's unit tests.
 * Every wait gives up after 10 s (a failing test, not a hanging one).
 * Depends on NNG only. */
#ifndef TALLY_TESTS_STREAM_PAIR_H
#define TALLY_TESTS_STREAM_PAIR_H

#include <stddef.h>

#include <nng/nng.h>

/* A connected pair on a free port: *a dialed, *b accepted; *ln is the
 * listener (free it after the streams). Returns 0, or -1 (nothing to free). */
int stream_pair(nng_stream_listener **ln, nng_stream **a, nng_stream **b);

/* Write all len bytes of buf to s. Returns 0, or -1. */
int stream_send_all(nng_stream *s, const void *buf, size_t len);

#endif
