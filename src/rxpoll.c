/* Reading NNG TCP streams on threads of our own: see rxpoll.h. */
#include "src/rxpoll.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

struct rxpoll {
    int epfd;
    int stopfd; /* an eventfd, readable once stopping: wakes every thread */
    pthread_t threads[RXPOLL_MAX_THREADS];
    unsigned nthreads;
    bool stopped;
};

static void *rxpoll_main(void *arg)
{
    struct rxpoll *p = arg;
    for (;;) {
        struct epoll_event ev;
        int n = epoll_wait(p->epfd, &ev, 1, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || ev.data.ptr == NULL)
            break; /* stopping (the eventfd), or the instance is broken */
        if (n == 0)
            continue;
        struct rxpoll_watch *w = ev.data.ptr;
        w->ready(w->ctx, (ev.events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) != 0);
    }
    return NULL;
}

int rxpoll_start(unsigned nthreads, const char *name, struct rxpoll **out, struct tally_err *err)
{
    if (nthreads == 0 || nthreads > RXPOLL_MAX_THREADS)
        return tally_errf(err, TALLY_EINVAL, "rxpoll: %u threads", nthreads);
    struct rxpoll *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return tally_errf(err, TALLY_ENOMEM, "rxpoll: out of memory");
    p->stopfd = -1;
    int rc = TALLY_OK;
    if ((p->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
        (p->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        rc = tally_errf(err, TALLY_EIO, "rxpoll: %s", strerror(errno));
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL}; /* level: wakes all */
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->stopfd, &ev) != 0) {
        rc = tally_errf(err, TALLY_EIO, "rxpoll: %s", strerror(errno));
        goto fail;
    }
    for (unsigned i = 0; i < nthreads; i++) {
        if (pthread_create(&p->threads[i], NULL, rxpoll_main, p) != 0) {
            rc = tally_errf(err, TALLY_EIO, "rxpoll: cannot start a thread");
            goto fail;
        }
        (void)pthread_setname_np(p->threads[i], name);
        p->nthreads++;
    }
    *out = p;
    return TALLY_OK;

fail:
    rxpoll_stop(p);
    rxpoll_free(p);
    return rc;
}

void rxpoll_stop(struct rxpoll *p)
{
    if (p == NULL || p->stopped)
        return;
    p->stopped = true;
    if (p->stopfd >= 0) {
        uint64_t one = 1;
        ssize_t n;
        do
            n = write(p->stopfd, &one, sizeof(one));
        while (n < 0 && errno == EINTR);
    }
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    p->nthreads = 0;
}

void rxpoll_free(struct rxpoll *p)
{
    if (p == NULL)
        return;
    if (p->epfd >= 0)
        close(p->epfd);
    if (p->stopfd >= 0)
        close(p->stopfd);
    free(p);
}

/* Whether a socket address (from the kernel) is the NNG address a. */
static bool addr_is(const struct sockaddr_storage *ss, const nng_sockaddr *a)
{
    if (ss->ss_family == AF_INET && a->s_family == NNG_AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        return in->sin_port == a->s_in.sa_port && in->sin_addr.s_addr == a->s_in.sa_addr;
    }
    if (ss->ss_family == AF_INET6 && a->s_family == NNG_AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        return in6->sin6_port == a->s_in6.sa_port &&
               memcmp(in6->sin6_addr.s6_addr, a->s_in6.sa_addr, 16) == 0;
    }
    return false;
}

int rxpoll_stream_fd(nng_stream *s)
{
    nng_sockaddr self, peer;
    if (nng_stream_get_addr(s, NNG_OPT_LOCADDR, &self) != 0 ||
        nng_stream_get_addr(s, NNG_OPT_REMADDR, &peer) != 0)
        return -1;
    if (self.s_family != NNG_AF_INET && self.s_family != NNG_AF_INET6)
        return -1;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    int found = -1, matches = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end = NULL;
        long fd = strtol(e->d_name, &end, 10);
        if (end == e->d_name || *end != '\0' || fd < 0 || fd == dirfd(d))
            continue;
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        if (getsockname((int)fd, (struct sockaddr *)&ss, &len) != 0 || !addr_is(&ss, &self))
            continue;
        len = sizeof(ss);
        if (getpeername((int)fd, (struct sockaddr *)&ss, &len) != 0 || !addr_is(&ss, &peer))
            continue;
        found = (int)fd;
        matches++;
    }
    closedir(d);
    return matches == 1 ? found
                        : -1; /* two would mean a duplicated descriptor: not ours to guess */
}

int rxpoll_arm(struct rxpoll *p, struct rxpoll_watch *w)
{
    if (w->fd < 0)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data.ptr = w};
    if (epoll_ctl(p->epfd, w->added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, w->fd, &ev) != 0)
        return -1;
    w->added = true;
    return 0;
}

void rxpoll_forget(struct rxpoll *p, struct rxpoll_watch *w)
{
    if (!w->added)
        return;
    (void)epoll_ctl(p->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    w->added = false;
}

int rxpoll_read_now(nng_stream *s, nng_aio *quick, size_t *got)
{
    *got = 0;
    nng_stream_recv(s, quick);
    /* Done inside nng_stream_recv when the socket held bytes; otherwise the
     * read waits in NNG and is taken back here (a no-op once done). */
    nng_aio_cancel(quick);
    nng_aio_wait(quick);
    int rv = nng_aio_result(quick);
    if (rv != 0)
        return rv;
    *got = nng_aio_count(quick);
    return *got > 0 ? 0 : NNG_ECANCELED;
}
