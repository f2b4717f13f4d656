#include "tests/helpers/stream_pair.h"

#include <stdio.h>

#define STREAM_WAIT_MS 10000

int stream_pair(nng_stream_listener **ln, nng_stream **a, nng_stream **b)
{
    nng_stream_dialer *d = NULL;
    nng_aio *acc = NULL, *dial = NULL;
    int port = 0, rc = -1;
    char url[64];
    *ln = NULL;
    if (nng_stream_listener_alloc(ln, "tcp://127.0.0.1:0") != 0 ||
        nng_stream_listener_listen(*ln) != 0 ||
        nng_stream_listener_get_int(*ln, NNG_OPT_TCP_BOUND_PORT, &port) != 0 ||
        nng_aio_alloc(&acc, NULL, NULL) != 0 || nng_aio_alloc(&dial, NULL, NULL) != 0)
        goto out;
    nng_aio_set_timeout(acc, STREAM_WAIT_MS);
    nng_aio_set_timeout(dial, STREAM_WAIT_MS);
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
    if (nng_stream_dialer_alloc(&d, url) != 0)
        goto out;
    nng_stream_listener_accept(*ln, acc);
    nng_stream_dialer_dial(d, dial);
    nng_aio_wait(dial);
    nng_aio_wait(acc);
    if (nng_aio_result(dial) != 0 || nng_aio_result(acc) != 0) {
        if (nng_aio_result(dial) == 0)
            nng_stream_free(nng_aio_get_output(dial, 0));
        if (nng_aio_result(acc) == 0)
            nng_stream_free(nng_aio_get_output(acc, 0));
        goto out;
    }
    *a = nng_aio_get_output(dial, 0);
    *b = nng_aio_get_output(acc, 0);
    rc = 0;
out:
    nng_aio_free(acc);
    nng_aio_free(dial);
    nng_stream_dialer_free(d); /* a dialed stream outlives its dialer */
    if (rc != 0) {
        nng_stream_listener_free(*ln);
        *ln = NULL;
    }
    return rc;
}

int stream_send_all(nng_stream *s, const void *buf, size_t len)
{
    nng_aio *aio = NULL;
    if (nng_aio_alloc(&aio, NULL, NULL) != 0)
        return -1;
    nng_aio_set_timeout(aio, STREAM_WAIT_MS);
    nng_iov iov = {.iov_buf = (void *)buf, .iov_len = len};
    int rc = -1;
    if (nng_aio_set_iov(aio, 1, &iov) == 0) {
        nng_stream_send(s, aio);
        nng_aio_wait(aio);
        rc = nng_aio_result(aio) == 0 && nng_aio_count(aio) == len ? 0 : -1;
    }
    nng_aio_free(aio);
    return rc;
}
