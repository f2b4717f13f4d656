/* tallyd: one Tally replica.
 *
 *   tallyd --config FILE --id I --data DIR [--key FILE] [--log-level L]
 *
 * Signals are blocked in every thread; the main thread waits for SIGTERM or
 * SIGINT (sigtimedwait) and then shuts down cleanly: a running step
 * finishes, promises are flushed and RocksDB is closed. */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "crypto/crypto.h"
#include "src/log.h"
#include "src/replica.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: tallyd --config FILE --id I --data DIR [--key FILE] [--log-level L]\n"
                 "\n"
                 "Run replica I of the cluster described by FILE (cluster.json).\n"
                 "\n"
                 "  --config FILE     cluster configuration (cluster.json)\n"
                 "  --id I            this replica's id in the configuration\n"
                 "  --data DIR        data directory (RocksDB; created on first start)\n"
                 "  --key FILE        replica key file (default: replica-I.key next to FILE)\n"
                 "  --log-level L     debug, info, warn or error (default info, or $TALLY_LOG)\n"
                 "  --help            show this help\n"
                 "\n"
                 "SIGTERM or SIGINT shuts the replica down cleanly.\n");
}

/* A shutdown is given this long. replica_stop() closes the ledger (every
 * write is synced by then) before it tears down the network, which waits for
 * NNG's callbacks to finish. With NNG 1.5.2's sockets that teardown could
 * block forever while peers were still pushing (seen after a fatal error
 * under load); the transport no longer uses them, but if teardown ever hangs
 * again, tallyd exits instead of lingering, serving no one. */
#define TALLYD_STOP_SECONDS 5

static void *stop_watchdog(void *arg)
{
    int status = (int)(intptr_t)arg;
    struct timespec ts = {.tv_sec = TALLYD_STOP_SECONDS, .tv_nsec = 0};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    LOG_ERROR("L0606",
              "shutdown not finished after %d s: exiting anyway with status %d (every ledger "
              "write is synced when made; NNG's socket close can hang)",
              TALLYD_STOP_SECONDS, status);
    _exit(status);
    return NULL;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"id", required_argument, NULL, 'i'},
                                         {"data", required_argument, NULL, 'd'},
                                         {"key", required_argument, NULL, 'k'},
                                         {"log-level", required_argument, NULL, 'l'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config_path = NULL, *data_dir = NULL, *key_path = NULL, *level = NULL;
    const char *id_text = NULL;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "c:i:d:k:l:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 'i':
            id_text = optarg;
            break;
        case 'd':
            data_dir = optarg;
            break;
        case 'k':
            key_path = optarg;
            break;
        case 'l':
            level = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            fprintf(stderr, "tallyd: unknown or incomplete option '%s' (see tallyd --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tallyd: unexpected argument '%s' (see tallyd --help)\n", argv[optind]);
        return 2;
    }
    if (config_path == NULL || id_text == NULL || data_dir == NULL) {
        fprintf(stderr, "tallyd: --config, --id and --data are required (see tallyd --help)\n");
        return 2;
    }
    unsigned long id = 0;
    if (parse_uint(id_text, CONFIG_MAX_REPLICAS - 1, &id) != 0) {
        fprintf(stderr, "tallyd: --id '%s': expected a replica id (0..%d)\n", id_text,
                CONFIG_MAX_REPLICAS - 1);
        return 2;
    }

    char tag[16];
    snprintf(tag, sizeof(tag), "r%lu", id);
    tally_log_init(tag);
    if (level != NULL) {
        if (strcmp(level, "debug") == 0)
            tally_log_set_level(TALLY_LOG_DEBUG);
        else if (strcmp(level, "info") == 0)
            tally_log_set_level(TALLY_LOG_INFO);
        else if (strcmp(level, "warn") == 0)
            tally_log_set_level(TALLY_LOG_WARN);
        else if (strcmp(level, "error") == 0)
            tally_log_set_level(TALLY_LOG_ERROR);
        else {
            fprintf(stderr, "tallyd: --log-level '%s': expected debug, info, warn or error\n",
                    level);
            return 2;
        }
    }
    if (tc_init() != TALLY_OK) {
        fprintf(stderr, "tallyd: cannot initialise cryptography\n");
        return 1;
    }

    int status = 1;
    struct tally_config cfg = {0};
    tc_keypair kp = {0};
    struct replica *r = NULL;
    struct tally_err err = {0};
    if (config_load(config_path, &cfg, &err) != 0) {
        fprintf(stderr, "tallyd: %s\n", tally_err_text(&err));
        goto out;
    }
    if (id >= cfg.n) {
        fprintf(stderr, "tallyd: --id %lu: %s has replicas 0..%u\n", id, config_path, cfg.n - 1);
        status = 2;
        goto out;
    }
    char default_key[PATH_MAX];
    if (key_path == NULL) {
        char copy[PATH_MAX];
        snprintf(copy, sizeof(copy), "%s", config_path);
        if (snprintf(default_key, sizeof(default_key), "%s/replica-%lu.key", dirname(copy), id) >=
            (int)sizeof(default_key)) {
            fprintf(stderr, "tallyd: key file path too long\n");
            goto out;
        }
        key_path = default_key;
    }
    if (tc_keyfile_read(key_path, &kp, &err) != 0) {
        fprintf(stderr, "tallyd: replica key: %s\n", tally_err_text(&err));
        goto out;
    }
    if (!tc_equal(kp.pk.b, cfg.replicas[id].pk.b, TC_PUBKEY_BYTES)) {
        char have[65], want[65];
        tc_hex_encode(kp.pk.b, TC_PUBKEY_BYTES, have);
        tc_hex_encode(cfg.replicas[id].pk.b, TC_PUBKEY_BYTES, want);
        fprintf(stderr,
                "tallyd: key file %s holds public key %.16s..., but %s says replica %lu's key "
                "is %.16s...\n",
                key_path, have, config_path, id, want);
        goto out;
    }

    /* Before anything opens it for writing: refuse a file, a directory of
     * other things and another cluster's ledger (checked read-only). */
    if (config_check_data_dir(&cfg, config_path, data_dir, true, &err) != 0) {
        fprintf(stderr, "tallyd: %s\n", tally_err_text(&err));
        goto out;
    }

    /* Block the signals before any thread starts: only sigtimedwait sees them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    struct replica_opts ro = {.cfg = &cfg, .id = (uint32_t)id, .kp = &kp, .data_dir = data_dir};
    if (replica_start(&ro, &r, &err) != 0) {
        /* One line: stderr is also the log (L0601 was "cannot start"). */
        fprintf(stderr, "tallyd: %s\n", tally_err_text(&err));
        goto out;
    }
    LOG_INFO("L0602", "tallyd running (pid %ld), data %s", (long)getpid(), data_dir);
    sigdelset(&set, SIGPIPE);
    status = 0;
    for (;;) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000000L};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            LOG_INFO("L0603", "received %s: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            break;
        }
        if (replica_failed(r, &err)) {
            LOG_ERROR("L0604", "stopping after a fatal error: %s", tally_err_text(&err));
            status = 1;
            break;
        }
    }
    /* Bounded: see TALLYD_STOP_SECONDS. */
    pthread_t watchdog;
    if (pthread_create(&watchdog, NULL, stop_watchdog, (void *)(intptr_t)status) == 0)
        pthread_detach(watchdog);
    replica_stop(r);
    r = NULL;
    LOG_INFO("L0605", "stopped cleanly");
out:
    replica_stop(r);
    tc_keypair_free(&kp);
    config_free(&cfg);
    return status;
}
