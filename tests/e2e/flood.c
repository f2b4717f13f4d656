/* flood: a hostile non-replica for tests/e2e/test_hostile_input.sh.
 *
 *   flood --addr URL --socket push|pair --kind KIND --count N --seconds S
 *         [--sender ID] [--max-bytes M] [--txs K]
 *
 * Connects to URL (tcp://127.0.0.1:PORT: a replica's peer address, speaking
 * push0 to its pull0 listener, or its client address, speaking pair1 to its
 * pair1 listener) and sends at most N messages of one KIND, stopping after S
 * seconds whatever is left:
 *
 *   garbage     random bytes, 1..512 of them (no magic)
 *   oversized   M + 4096 random bytes, above max_message_bytes (the
 *               transport drops them and the connection when the length
 *               arrives)
 *   liar        a 76-byte envelope whose header claims a body of 2^32-256 bytes
 *   badsig      a well-formed PREPARE (view 0, random seq and digest) from
 *               replica --sender, with a random signature
 *   unknown     the same from sender 0x7FFF, not a replica of any config
 *   clienttype  a REQUEST (client type) sent to the peer socket
 *   reqgarbage  a REQUEST of K random 146-byte "transactions" (bad version)
 *   reqbadsig   a REQUEST of K well-formed transfers (version 1, kind 1,
 *               random keys) whose signatures are random; the hex of the
 *               first transaction sent is printed as "first_tx"
 *   splie       an SP frame whose 64-bit length prefix claims 2^40 bytes,
 *               followed by 64 bytes (the transport must not believe it)
 *
 * The SP protocol over TCP is spoken by hand (plain sockets, no libnng): an
 * 8-byte handshake (0, 'S', 'P', 0, protocol id u16 BE, 0, 0), then frames of
 * a u64 BE length and the message; pair1 messages start with a u32 BE hop
 * count. NNG 1.5.2's own push0 crashes in nng_send now and then when the far
 * end drops the connection (which replicas do after an oversized message),
 * and its nng_close sometimes hangs (tools/lib/client.c), so the hostile
 * client does without it. When the replica drops the connection, the next
 * send reconnects.
 *
 * Everything is bounded: count, time, each send and connect (SO_SNDTIMEO /
 * SO_RCVTIMEO 500 ms; a send that fails is counted as failed and the loop
 * goes on). Prints one JSON line:
 * {"kind","sent","failed","reconnects","seconds","first_tx"}.
 * Built by the test itself: cc -O2 -o flood flood.c */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>

#define HDR 12
#define SIG 64
#define TX 146

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rnd();
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Envelope header: "TLY1", type, 0, sender, body length. */
static void header(uint8_t *p, uint8_t type, uint16_t sender, uint32_t body)
{
    memcpy(p, "TLY1", 4);
    p[4] = type;
    p[5] = 0;
    put_u16(p + 6, sender);
    put_u32(p + 8, body);
}

#define SP_PUSH0 0x50
#define SP_PAIR1 0x11

static struct sockaddr_in target;
static uint16_t sp_proto;

static int parse_url(const char *url)
{
    unsigned a, b, c, d, port;
    char tail;
    if (sscanf(url, "tcp://%u.%u.%u.%u:%u%c", &a, &b, &c, &d, &port, &tail) != 5 || a > 255 ||
        b > 255 || c > 255 || d > 255 || port == 0 || port > 65535)
        return -1;
    memset(&target, 0, sizeof(target));
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)port);
    target.sin_addr.s_addr = htonl((uint32_t)(a << 24 | b << 16 | c << 8 | d));
    return 0;
}

static int write_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* Connect and exchange SP headers; -1 on failure. */
static int sp_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = 0, .tv_usec = 500000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    uint8_t hs[8] = {0, 'S', 'P', 0, (uint8_t)(sp_proto >> 8), (uint8_t)sp_proto, 0, 0}, peer[8];
    struct iovec iov = {.iov_base = hs, .iov_len = sizeof(hs)};
    if (connect(fd, (struct sockaddr *)&target, sizeof(target)) != 0 || write_all(fd, &iov, 1) != 0)
        goto fail;
    size_t got = 0;
    while (got < sizeof(peer)) {
        ssize_t r = recv(fd, peer + got, sizeof(peer) - got, 0);
        if (r <= 0)
            goto fail;
        got += (size_t)r;
    }
    if (peer[0] != 0 || peer[1] != 'S' || peer[2] != 'P')
        goto fail;
    return fd;
fail:
    close(fd);
    return -1;
}

/* One SP frame: u64 BE length, [pair1 hop count], message. The length prefix
 * is `claim` when nonzero (a lie). */
static int sp_send(int fd, const uint8_t *msg, size_t len, uint64_t claim)
{
    uint8_t pre[12];
    size_t plen = sp_proto == SP_PAIR1 ? 4 : 0;
    uint64_t total = claim != 0 ? claim : (uint64_t)(len + plen);
    for (int i = 0; i < 8; i++)
        pre[i] = (uint8_t)(total >> (56 - 8 * i));
    memset(pre + 8, 0, 4); /* pair1 hop count 0 */
    struct iovec iov[2] = {{.iov_base = pre, .iov_len = 8 + plen},
                           {.iov_base = (void *)msg, .iov_len = len}};
    return write_all(fd, iov, 2);
}

static void usage(void)
{
    fprintf(stderr, "usage: flood --addr URL --socket push|pair --kind KIND --count N "
                    "--seconds S [--sender ID] [--max-bytes M] [--txs K]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *addr = NULL, *sock_kind = NULL, *kind = NULL;
    long count = 0, sender = 0, txs = 8;
    double seconds = 0;
    size_t max_bytes = 4u << 20;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        const char *o = argv[i], *v = argv[++i];
        if (strcmp(o, "--addr") == 0)
            addr = v;
        else if (strcmp(o, "--socket") == 0)
            sock_kind = v;
        else if (strcmp(o, "--kind") == 0)
            kind = v;
        else if (strcmp(o, "--count") == 0)
            count = strtol(v, NULL, 10);
        else if (strcmp(o, "--seconds") == 0)
            seconds = strtod(v, NULL);
        else if (strcmp(o, "--sender") == 0)
            sender = strtol(v, NULL, 10);
        else if (strcmp(o, "--max-bytes") == 0)
            max_bytes = (size_t)strtoull(v, NULL, 10);
        else if (strcmp(o, "--txs") == 0)
            txs = strtol(v, NULL, 10);
        else
            usage();
    }
    if (addr == NULL || sock_kind == NULL || kind == NULL || count <= 0 || count > 10000000 ||
        seconds <= 0 || seconds > 60 || txs < 1 || txs > 4096 || sender < 0 || sender > 0xFFFF)
        usage();

    struct timespec seed_ts;
    clock_gettime(CLOCK_REALTIME, &seed_ts);
    rng_state = (uint64_t)seed_ts.tv_nsec ^ ((uint64_t)seed_ts.tv_sec << 32) ^ (uint64_t)getpid();

    signal(SIGPIPE, SIG_IGN);
    if (parse_url(addr) != 0) {
        fprintf(stderr, "flood: --addr %s: expected tcp://A.B.C.D:PORT\n", addr);
        return 2;
    }
    if (strcmp(sock_kind, "push") == 0)
        sp_proto = SP_PUSH0;
    else if (strcmp(sock_kind, "pair") == 0)
        sp_proto = SP_PAIR1;
    else
        usage();
    int fd = sp_connect();
    if (fd < 0) {
        fprintf(stderr, "flood: cannot connect to %s: %s\n", addr, strerror(errno));
        return 1;
    }
    long reconnects = 0;

    size_t cap =
        max_bytes + 4096 > HDR + 4 + 4096 * TX + SIG ? max_bytes + 4096 : HDR + 4 + 4096 * TX + SIG;
    uint8_t *buf = malloc(cap);
    if (buf == NULL)
        return 1;
    char first_tx[2 * TX + 1] = "";
    long sent = 0, failed = 0;
    double t0 = now_s(), deadline = t0 + seconds;
    for (long i = 0; i < count && now_s() < deadline; i++) {
        size_t len = 0;
        if (strcmp(kind, "garbage") == 0) {
            len = 1 + rnd() % 512;
            fill(buf, len);
        } else if (strcmp(kind, "oversized") == 0) {
            len = max_bytes + 4096;
            fill(buf, len);
        } else if (strcmp(kind, "splie") == 0) {
            len = 64;
            fill(buf, len);
        } else if (strcmp(kind, "liar") == 0) {
            len = HDR + SIG;
            fill(buf, len);
            header(buf, 3 /* PREPARE */, (uint16_t)sender, 0xFFFFFF00u);
        } else if (strcmp(kind, "badsig") == 0 || strcmp(kind, "unknown") == 0) {
            uint16_t from = strcmp(kind, "badsig") == 0 ? (uint16_t)sender : 0x7FFF;
            len = HDR + 48 + SIG;
            header(buf, 3 /* PREPARE */, from, 48);
            put_u64(buf + HDR, 0);
            put_u64(buf + HDR + 8, 1 + rnd() % 64);
            fill(buf + HDR + 16, 32 + SIG);
        } else if (strcmp(kind, "clienttype") == 0 || strcmp(kind, "reqgarbage") == 0 ||
                   strcmp(kind, "reqbadsig") == 0) {
            uint32_t k = (uint32_t)txs;
            uint32_t body = 4 + k * TX;
            len = HDR + body + SIG;
            header(buf, 1 /* REQUEST */, 0xFFFF, body);
            put_u32(buf + HDR, k);
            uint8_t *t = buf + HDR + 4;
            fill(t, (size_t)k * TX);
            if (strcmp(kind, "reqgarbage") == 0) {
                for (uint32_t j = 0; j < k; j++)
                    t[(size_t)j * TX] = 0xEE; /* not version 1 */
            } else {
                for (uint32_t j = 0; j < k; j++) {
                    uint8_t *x = t + (size_t)j * TX;
                    x[0] = 1;                          /* version */
                    x[1] = 1;                          /* transfer */
                    put_u64(x + 66, 1 + rnd() % 1000); /* amount */
                    put_u64(x + 74, 1);                /* nonce */
                }
                if (first_tx[0] == '\0' && strcmp(kind, "reqbadsig") == 0)
                    for (int j = 0; j < TX; j++)
                        snprintf(first_tx + 2 * j, 3, "%02x", t[j]);
            }
            memset(buf + HDR + body, 0, SIG); /* client messages: zero signature */
        } else {
            fprintf(stderr, "flood: unknown kind %s\n", kind);
            return 2;
        }
        if (fd < 0) {
            fd = sp_connect();
            if (fd < 0) {
                failed++;
                continue;
            }
            reconnects++;
        }
        if (sp_send(fd, buf, len, strcmp(kind, "splie") == 0 ? (1ull << 40) : 0) == 0) {
            sent++;
        } else {
            failed++;
            close(fd);
            fd = -1;
        }
        if (strcmp(kind, "splie") == 0 && fd >= 0) {
            close(fd); /* the frame can never complete: start a new connection */
            fd = -1;
        }
    }
    double took = now_s() - t0;
    if (fd >= 0) {
        shutdown(fd, SHUT_WR); /* what was sent is delivered before the FIN */
        close(fd);
    }
    free(buf);
    printf("{\"kind\":\"%s\",\"sent\":%ld,\"failed\":%ld,\"reconnects\":%ld,"
           "\"seconds\":%.3f,\"first_tx\":\"%s\"}\n",
           kind, sent, failed, reconnects, took, first_tx);
    return 0;
}
