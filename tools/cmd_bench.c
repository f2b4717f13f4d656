/* tally bench: load a running cluster with pre-signed transfers and report
 * throughput, receipt latency and how close that is to the machine's crypto
 * ceiling. Closed loop (--outstanding N in flight) or open loop (--rate R on a
 * schedule); a measured window after a warm-up, or a fixed count. The pure
 * parts (percentiles, ceiling, schedule) are in tools/lib/bench.c. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "ledger/tx.h"
#include "tools/cmds.h"
#include "tools/lib/bench.h"
#include "tools/lib/client.h"

#define BENCH_MAX_ACCOUNTS 100000
#define BENCH_MAX_TXS 20000000ull
#define BENCH_MAX_SIGNERS 16
#define BENCH_QUICK_SIGN_US 100000   /* the ceiling measured before every run */
#define BENCH_QUICK_VERIFY_US 400000 /* (~0.5 s in all) */
#define BENCH_FULL_US 1000000        /* --ceiling: a second each */
#define BENCH_POLL_US 5000           /* longest wait between looks at the clock */
#define BENCH_EST_FLOOR 5000.0       /* closed loop: sign for at least this tx/s */
#define BENCH_DEFAULT_OUTSTANDING 256
#define BENCH_DEFAULT_CAP 4096

struct bench_opts {
    const char *config_path, *accounts_dir;
    uint64_t outstanding, cap, count, presign, amount;
    uint64_t duration_ms, warmup_ms, timeout_ms;
    double rate; /* > 0: open loop */
    bool outstanding_set, cap_set, warmup_set, duration_set;
    bool json, quiet, ceiling;
};

static void bench_usage(FILE *out)
{
    fprintf(out,
            "usage: tally bench [--config CLUSTER] [--accounts-dir DIR]\n"
            "                   [--outstanding N | --rate R [--max-outstanding N]]\n"
            "                   [--duration S] [--warmup S] [--count N] [--timeout S]\n"
            "                   [--presign N] [--amount N] [--quiet] [--json]\n"
            "       tally bench --ceiling [--config CLUSTER] [--json]\n"
            "\n"
            "Load a running cluster with transfers and measure it. Every transfer is\n"
            "signed before the clock starts, round robin over the funded accounts in\n"
            "DIR (account-K.key, as `tally init --accounts N` writes them) with\n"
            "consecutive nonces, so nonces never collide. Latency is from the first\n"
            "send to f+1 matching replies. Reports throughput over the measured window,\n"
            "latency p50/p90/p99/p99.9/max, counts, the machine and the cluster's n\n"
            "and f, and the throughput as a fraction of the crypto ceiling (measured\n"
            "first, ~0.5 s): cores x Ed25519 verifies/s per core / n, as every replica\n"
            "verifies every client signature once.\n"
            "\n"
            "  --config CLUSTER    cluster.json (default ./testnet/cluster.json)\n"
            "  --accounts-dir DIR  the account key files (default: accounts/ next to\n"
            "                      CLUSTER)\n"
            "  --outstanding N     closed loop (the default): keep N transactions in\n"
            "                      flight, one more as each receipt arrives (default %d)\n"
            "  --rate R            open loop: send R tx/s on schedule whatever the\n"
            "                      receipts; reports how far behind schedule it fell\n"
            "  --max-outstanding N open loop: never more than N in flight (default %d);\n"
            "                      at the cap sending waits and falls behind schedule\n"
            "  --duration S        measured window in seconds (default 10)\n"
            "  --warmup S          seconds of load before the window, not measured\n"
            "                      (default 2; 0 with --count)\n"
            "  --count N           measure exactly N transactions instead of a window\n"
            "  --timeout S         after sending stops, wait up to S seconds for the\n"
            "                      last receipts (default 10)\n"
            "  --presign N         sign N transactions ahead (default: enough for the\n"
            "                      rate, or 1.5x the crypto ceiling, over warm-up and\n"
            "                      window; the window ends early if they run out)\n"
            "  --amount N          amount of each transfer (default 1)\n"
            "  --quiet             no progress lines on stderr\n"
            "  --json              print one JSON object on stdout\n"
            "  --ceiling           only measure Ed25519 sign and verify on this machine\n"
            "                      (a second each) and print the cluster's crypto ceiling\n"
            "  --help              show this help\n"
            "\n"
            "Exit status: 0 when the run completed (see the counts for rejections and\n"
            "missing receipts), 1 on an error (no accounts, cluster unreachable, no\n"
            "receipt at all), 2 on a usage error.\n",
            BENCH_DEFAULT_OUTSTANDING, BENCH_DEFAULT_CAP);
}

static int bench_usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "tally bench: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see tally bench --help)\n");
    return 2;
}

static int parse_args(int argc, char **argv, struct bench_opts *o)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"accounts-dir", required_argument, NULL, 'a'},
                                         {"outstanding", required_argument, NULL, 'o'},
                                         {"rate", required_argument, NULL, 'r'},
                                         {"max-outstanding", required_argument, NULL, 'm'},
                                         {"duration", required_argument, NULL, 'd'},
                                         {"warmup", required_argument, NULL, 'w'},
                                         {"count", required_argument, NULL, 'N'},
                                         {"timeout", required_argument, NULL, 'T'},
                                         {"presign", required_argument, NULL, 'P'},
                                         {"amount", required_argument, NULL, 'A'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"ceiling", no_argument, NULL, 'C'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    *o = (struct bench_opts){.outstanding = BENCH_DEFAULT_OUTSTANDING,
                             .cap = BENCH_DEFAULT_CAP,
                             .amount = 1,
                             .duration_ms = 10000,
                             .warmup_ms = 2000,
                             .timeout_ms = 10000};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+c:a:o:r:m:d:w:N:T:P:A:qjCh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->config_path = optarg;
            break;
        case 'a':
            o->accounts_dir = optarg;
            break;
        case 'o':
            if (client_parse_u64(optarg, &o->outstanding) != 0 || o->outstanding == 0 ||
                o->outstanding > 1000000)
                return bench_usage_error("--outstanding '%s': expected 1..1000000", optarg);
            o->outstanding_set = true;
            break;
        case 'r': {
            char *end = NULL;
            errno = 0;
            o->rate = strtod(optarg, &end);
            if (optarg[0] < '0' || optarg[0] > '9' || end == optarg || *end != '\0' || errno != 0 ||
                !(o->rate > 0) || o->rate > 10000000.0)
                return bench_usage_error("--rate '%s': expected tx/s, e.g. 2000", optarg);
            break;
        }
        case 'm':
            if (client_parse_u64(optarg, &o->cap) != 0 || o->cap == 0 || o->cap > 1000000)
                return bench_usage_error("--max-outstanding '%s': expected 1..1000000", optarg);
            o->cap_set = true;
            break;
        case 'd':
            if (client_parse_seconds(optarg, &o->duration_ms) != 0 || o->duration_ms == 0)
                return bench_usage_error("--duration '%s': expected seconds (e.g. 10)", optarg);
            o->duration_set = true;
            break;
        case 'w':
            if (client_parse_seconds(optarg, &o->warmup_ms) != 0)
                return bench_usage_error("--warmup '%s': expected seconds (e.g. 2)", optarg);
            o->warmup_set = true;
            break;
        case 'N':
            if (client_parse_u64(optarg, &o->count) != 0 || o->count == 0 ||
                o->count > BENCH_MAX_TXS)
                return bench_usage_error("--count '%s': expected 1..20000000", optarg);
            break;
        case 'T':
            if (client_parse_seconds(optarg, &o->timeout_ms) != 0 || o->timeout_ms == 0)
                return bench_usage_error("--timeout '%s': expected seconds (e.g. 10)", optarg);
            break;
        case 'P':
            if (client_parse_u64(optarg, &o->presign) != 0 || o->presign == 0 ||
                o->presign > BENCH_MAX_TXS)
                return bench_usage_error("--presign '%s': expected 1..20000000", optarg);
            break;
        case 'A':
            if (client_parse_u64(optarg, &o->amount) != 0 || o->amount == 0)
                return bench_usage_error("--amount '%s': expected a positive integer", optarg);
            break;
        case 'q':
            o->quiet = true;
            break;
        case 'j':
            o->json = true;
            break;
        case 'C':
            o->ceiling = true;
            break;
        case 'h':
            bench_usage(stdout);
            return -1;
        default:
            return bench_usage_error("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bench_usage_error("unexpected argument '%s'", argv[optind]);
    if (o->rate > 0 && o->outstanding_set)
        return bench_usage_error("%s", "--rate (open loop) and --outstanding (closed loop) "
                                       "exclude each other");
    if (o->rate == 0 && o->cap_set)
        return bench_usage_error("%s", "--max-outstanding is for the open loop (--rate)");
    if (o->count > 0 && o->duration_set)
        return bench_usage_error("%s", "--count and --duration exclude each other");
    if (o->count > 0 && !o->warmup_set)
        o->warmup_ms = 0;
    if (o->presign > 0 && o->count > 0 && o->presign < o->count)
        return bench_usage_error("%s", "--presign must be at least --count");
    return 0;
}

/* ---- the machine ---------------------------------------------------------- */

struct bench_machine {
    unsigned cores;
    char cpu[128];
    struct bench_crypto crypto;
    double ceiling; /* tx/s for the cluster's n */
    uint32_t n, f;
};

static void print_ceiling_formula(FILE *out, const struct bench_machine *m, const char *indent)
{
    char v[32], t[32];
    bench_fmt_int(m->crypto.verify_per_s, v, sizeof(v));
    bench_fmt_int(m->ceiling, t, sizeof(t));
    fprintf(out, "%sceiling = cores x verifies/s per core / n = %u x %s / %u = %s tx/s\n", indent,
            m->cores, v, m->n, t);
}

static json_t *ceiling_json(const struct bench_machine *m)
{
    return json_pack("{s:i, s:s, s:i, s:f, s:f, s:f, s:s}", "cores", (int)m->cores, "cpu_model",
                     m->cpu, "n", (int)m->n, "sign_per_s_per_core", m->crypto.sign_per_s,
                     "verify_per_s_per_core", m->crypto.verify_per_s, "ceiling_tx_per_s",
                     m->ceiling, "formula", "cores * verify_per_s_per_core / n");
}

static void print_json(json_t *o)
{
    char *t = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(7)) : NULL;
    if (t != NULL)
        printf("%s\n", t);
    free(t);
    json_decref(o);
}

/* tally bench --ceiling */
static int run_ceiling(const struct bench_opts *o)
{
    struct tally_config cfg = {0};
    struct tally_err err = {0};
    struct bench_machine m = {.cores = bench_cores(), .n = 4};
    bool assumed = true;
    if (o->config_path != NULL || access("testnet/cluster.json", F_OK) == 0) {
        if (client_config_load(o->config_path, &cfg, &err) != 0) {
            fprintf(stderr, "tally bench: %s\n", tally_err_text(&err));
            return 1;
        }
        m.n = cfg.n;
        m.f = cfg.f;
        assumed = false;
        config_free(&cfg);
    }
    bench_cpu_model(m.cpu, sizeof(m.cpu));
    if (bench_measure_crypto(BENCH_FULL_US, BENCH_FULL_US, &m.crypto, &err) != 0) {
        fprintf(stderr, "tally bench: %s\n", tally_err_text(&err));
        return 1;
    }
    m.ceiling = bench_ceiling_tx_per_s(m.cores, m.crypto.verify_per_s, m.n);
    if (o->json) {
        json_t *j = ceiling_json(&m);
        json_object_set_new(j, "n_assumed", json_boolean(assumed));
        print_json(j);
        return 0;
    }
    char s[32], v[32];
    bench_fmt_int(m.crypto.sign_per_s, s, sizeof(s));
    bench_fmt_int(m.crypto.verify_per_s, v, sizeof(v));
    printf("machine  %u cores, %s\n", m.cores, m.cpu);
    printf("Ed25519 (libsodium), 200-byte messages, one core:\n");
    printf("  sign    %8s /s  (%.1f us each)\n", s, 1e6 / m.crypto.sign_per_s);
    printf("  verify  %8s /s  (%.1f us each)\n", v, 1e6 / m.crypto.verify_per_s);
    printf("crypto ceiling: every replica verifies every client signature once, so\n");
    print_ceiling_formula(stdout, &m, "  ");
    printf("  (n = %u %s)\n", m.n,
           assumed ? "assumed: no --config and no ./testnet/cluster.json"
                   : "from the cluster configuration");
    return 0;
}

/* ---- accounts --------------------------------------------------------------- */

struct bench_accounts {
    size_t n;
    tc_keypair *kp;
    tc_pubkey *pk;
    uint64_t *nonce; /* current nonce in the ledger */
};

static void accounts_free(struct bench_accounts *a)
{
    for (size_t i = 0; i < a->n; i++)
        tc_keypair_free(&a->kp[i]);
    free(a->kp);
    free(a->pk);
    free(a->nonce);
    memset(a, 0, sizeof(*a));
}

/* account-0.key, account-1.key, ... up to the first one missing. */
static int accounts_load(const char *dir, struct bench_accounts *a, struct tally_err *err)
{
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return tally_errf(err, TALLY_ENOTFOUND,
                          "accounts directory %s: %s (tally init --accounts N writes one; "
                          "see --accounts-dir)",
                          dir, stat(dir, &st) != 0 ? strerror(errno) : "not a directory");
    size_t cap = 0;
    char path[4096 + 64];
    for (;;) {
        snprintf(path, sizeof(path), "%s/account-%zu.key", dir, a->n);
        if (access(path, F_OK) != 0 || a->n >= BENCH_MAX_ACCOUNTS)
            break;
        if (a->n == cap) {
            cap = cap ? 2 * cap : 256;
            tc_keypair *k = realloc(a->kp, cap * sizeof(*k));
            if (k == NULL)
                return tally_errf(err, TALLY_ENOMEM, "out of memory");
            a->kp = k;
        }
        memset(&a->kp[a->n], 0, sizeof(a->kp[a->n]));
        if (tc_keyfile_read(path, &a->kp[a->n], err) != 0)
            return err->code;
        a->n++;
    }
    if (a->n == 0)
        return tally_errf(err, TALLY_ENOTFOUND,
                          "no account-0.key in %s (tally init --accounts N writes account-K.key "
                          "files)",
                          dir);
    a->pk = calloc(a->n, sizeof(*a->pk));
    a->nonce = calloc(a->n, sizeof(*a->nonce));
    if (a->pk == NULL || a->nonce == NULL)
        return tally_errf(err, TALLY_ENOMEM, "out of memory");
    for (size_t i = 0; i < a->n; i++)
        a->pk[i] = a->kp[i].pk;
    return 0;
}

/* ---- signing ahead ---------------------------------------------------------- */

struct signer {
    const struct bench_accounts *a;
    const tc_pubkey *sink; /* recipient when there is a single account */
    struct ledger_tx *txs;
    uint64_t from, to, amount;
    uint64_t *progress; /* shared, atomic */
};

static void *signer_main(void *arg)
{
    struct signer *s = arg;
    size_t na = s->a->n;
    for (uint64_t i = s->from; i < s->to; i++) {
        size_t k = bench_account_of(i, na);
        struct ledger_tx *tx = &s->txs[i];
        tx->version = LEDGER_TX_VERSION;
        tx->kind = LEDGER_TX_KIND_TRANSFER;
        tx->from = s->a->pk[k];
        tx->to = na > 1 ? s->a->pk[(k + 1) % na] : *s->sink;
        tx->amount = s->amount;
        tx->nonce = bench_nonce_of(i, na, s->a->nonce[k]);
        ledger_tx_sign(tx, &s->a->kp[k]);
        if ((i & 255) == 255)
            __atomic_fetch_add(s->progress, 256, __ATOMIC_RELAXED);
    }
    return NULL;
}

/* Sign txs[0..n) on one thread per core, with a progress line. */
static void sign_all(const struct bench_accounts *a, struct ledger_tx *txs, uint64_t n,
                     uint64_t amount, unsigned cores, bool quiet)
{
    struct signer sg[BENCH_MAX_SIGNERS];
    pthread_t th[BENCH_MAX_SIGNERS];
    bool started[BENCH_MAX_SIGNERS] = {0};
    uint64_t progress = 0;
    tc_pubkey sink;
    tc_sha256((const uint8_t *)"tally bench sink", 16, (tc_hash *)&sink);
    unsigned nt = cores < BENCH_MAX_SIGNERS ? cores : BENCH_MAX_SIGNERS;
    if (n < 4096)
        nt = 1;
    uint64_t t0 = client_now_us();
    for (unsigned t = 0; t < nt; t++) {
        sg[t] = (struct signer){.a = a,
                                .sink = &sink,
                                .txs = txs,
                                .from = n * t / nt,
                                .to = n * (t + 1) / nt,
                                .amount = amount,
                                .progress = &progress};
        started[t] = t > 0 && pthread_create(&th[t], NULL, signer_main, &sg[t]) == 0;
    }
    /* This thread signs the first range (and any a thread failed to take). */
    signer_main(&sg[0]);
    for (unsigned t = 1; t < nt; t++)
        if (!started[t])
            signer_main(&sg[t]);
    for (unsigned t = 1; t < nt; t++) {
        if (!started[t])
            continue;
        for (;;) {
            uint64_t done = __atomic_load_n(&progress, __ATOMIC_RELAXED);
            if (!quiet) {
                char d[32], all[32];
                bench_fmt_int((double)(done < n ? done : n), d, sizeof(d));
                bench_fmt_int((double)n, all, sizeof(all));
                fprintf(stderr, "bench: signing %s / %s transactions\n", d, all);
            }
            if (pthread_tryjoin_np(th[t], NULL) == 0)
                break;
            usleep(250000);
        }
    }
    if (!quiet) {
        char all[32], rate[32];
        double secs = (double)(client_now_us() - t0) / 1e6;
        bench_fmt_int((double)n, all, sizeof(all));
        bench_fmt_int(secs > 0 ? (double)n / secs : 0, rate, sizeof(rate));
        fprintf(stderr, "bench: signed %s transactions in %.2f s (%s/s on %u threads)\n", all, secs,
                rate, nt);
    }
}

/* ---- the run ------------------------------------------------------------------ */

struct bench_result {
    uint64_t sent, measured_from, measured_to; /* measured: txs[from..to) */
    uint64_t window_start_us, window_end_us;   /* the measured window */
    uint64_t window_receipts;                  /* receipts that arrived in the window */
    uint64_t ok, rejected, missing, by[LEDGER_RESULT_COUNT];
    double tx_per_s, seconds;
    struct bench_latency lat;
    uint64_t behind_max_us, behind_end_us; /* open loop: sends this late */
    uint64_t unsent;                       /* open loop: due in the window, never sent */
    bool ran_out;                          /* the pre-signed transactions ran out */
};

static void progress_line(const struct bench_opts *o, uint64_t t_us, const char *phase,
                          uint64_t sent, uint64_t receipted, double cur, size_t outstanding,
                          uint64_t behind_us)
{
    char s[32], r[32], c[32];
    bench_fmt_int((double)sent, s, sizeof(s));
    bench_fmt_int((double)receipted, r, sizeof(r));
    bench_fmt_int(cur, c, sizeof(c));
    fprintf(stderr, "bench: %5.1f s %-8s sent %s  receipted %s  %s tx/s  outstanding %zu",
            t_us / 1e6, phase, s, r, c, outstanding);
    if (o->rate > 0)
        fprintf(stderr, "  behind %.1f ms", behind_us / 1000.0);
    fprintf(stderr, "\n");
}

static int run_load(const struct bench_opts *o, struct client_stream *st,
                    const struct client_receipt *rec, uint64_t n, uint64_t *send_us,
                    struct bench_result *res, struct tally_err *err)
{
    size_t cap = client_stream_capacity(st);
    size_t *done_idx = malloc(cap * sizeof(*done_idx));
    if (done_idx == NULL)
        return tally_errf(err, TALLY_ENOMEM, "out of memory");
    uint64_t t0 = client_now_us();
    uint64_t warm_end = t0 + o->warmup_ms * 1000u;
    uint64_t end = warm_end + o->duration_ms * 1000u; /* duration mode */
    uint64_t measured_from = UINT64_MAX, stop_us = 0, receipted = 0, measured_done = 0;
    uint64_t next_progress = t0 + 1000000u, last_receipted = 0;
    uint64_t last_receipt_us = 0;
    bool stopping = false;
    memset(res, 0, sizeof(*res));
    for (;;) {
        uint64_t now = client_now_us();
        uint64_t sent = client_stream_sent(st);
        if (!stopping) {
            bool count_done =
                o->count > 0 && measured_from != UINT64_MAX && sent - measured_from >= o->count;
            bool time_done = o->count == 0 && now >= end;
            if (count_done || time_done || sent == n) {
                stopping = true;
                stop_us = now;
                res->ran_out = sent == n && !count_done && !time_done;
                if (measured_from == UINT64_MAX)
                    measured_from = sent; /* ran out during the warm-up */
                res->measured_from = measured_from;
                res->measured_to = sent;
                res->window_start_us = o->count > 0 ? send_us[measured_from] : warm_end;
                res->window_end_us = o->count > 0 ? 0 : (res->ran_out ? now : end);
                if (o->rate > 0) {
                    /* Due by the end of sending but never sent: the backlog. */
                    res->behind_end_us = bench_behind_us(t0, o->rate, sent, now);
                    if (res->behind_end_us > res->behind_max_us)
                        res->behind_max_us = res->behind_end_us;
                    uint64_t due = bench_due_count(t0, o->rate, now);
                    res->unsent = due > sent ? due - sent : 0;
                }
                if (res->window_start_us > now) /* ran out during the warm-up */
                    res->window_start_us = now;
            }
        }
        if (stopping) {
            uint64_t measured = res->measured_to - res->measured_from;
            if (measured_done >= measured || now >= stop_us + o->timeout_ms * 1000u)
                break;
        } else {
            uint64_t want;
            if (o->rate > 0) {
                uint64_t due = bench_due_count(t0, o->rate, now);
                want = due > sent ? due - sent : 0;
            } else {
                size_t out = client_stream_outstanding(st);
                want = o->outstanding > out ? o->outstanding - out : 0;
            }
            if (o->count > 0 && measured_from != UINT64_MAX &&
                sent + want > measured_from + o->count)
                want = measured_from + o->count - sent;
            uint64_t before = sent;
            /* Open loop: how late the oldest due transaction goes out. */
            uint64_t late = o->rate > 0 ? bench_behind_us(t0, o->rate, before, now) : 0;
            size_t got = client_stream_send(st, want);
            for (uint64_t i = before; i < before + got; i++)
                send_us[i] = now;
            if (got > 0 && measured_from == UINT64_MAX && now >= warm_end)
                measured_from = before;
            sent = before + got;
            if (got > 0 && now >= warm_end && late > res->behind_max_us)
                res->behind_max_us = late;
        }
        /* Wait for receipts, or until the next send is due. */
        uint64_t wait = BENCH_POLL_US;
        if (!stopping && o->rate > 0 && client_stream_outstanding(st) < cap) {
            uint64_t due = bench_due_us(t0, o->rate, client_stream_sent(st));
            now = client_now_us();
            wait = due > now ? due - now : 0;
            if (wait > BENCH_POLL_US)
                wait = BENCH_POLL_US;
        } else if (!stopping && o->rate == 0 && client_stream_outstanding(st) < o->outstanding &&
                   client_stream_sent(st) < n) {
            wait = 0;
        }
        size_t nd = client_stream_poll(st, wait, done_idx);
        for (size_t k = 0; k < nd; k++) {
            size_t i = done_idx[k];
            uint64_t at = send_us[i] + rec[i].latency_us;
            receipted++;
            if (at > last_receipt_us)
                last_receipt_us = at;
            if (measured_from != UINT64_MAX && i >= measured_from &&
                (!stopping || i < res->measured_to))
                measured_done++;
        }
        now = client_now_us();
        if (now >= next_progress) {
            if (!o->quiet) {
                const char *phase = stopping ? "draining" : now < warm_end ? "warm-up" : "measure";
                double secs = (now - next_progress + 1000000u) / 1e6;
                progress_line(o, now - t0, phase, client_stream_sent(st), receipted,
                              (double)(receipted - last_receipted) / secs,
                              client_stream_outstanding(st),
                              o->rate > 0 && !stopping
                                  ? bench_behind_us(t0, o->rate, client_stream_sent(st), now)
                                  : 0);
            }
            last_receipted = receipted;
            next_progress = now + 1000000u;
        }
        if (!client_stream_heard(st) && now - t0 > o->timeout_ms * 1000u) {
            free(done_idx);
            return tally_errf(err, TALLY_EUNAVAIL,
                              "no replica answered within %llu ms (is the cluster running?)",
                              (unsigned long long)o->timeout_ms);
        }
    }
    free(done_idx);
    res->sent = client_stream_sent(st);
    if (o->count > 0)
        res->window_end_us =
            last_receipt_us > res->window_start_us ? last_receipt_us : res->window_start_us;
    /* Counts and latency of the measured transactions. */
    uint64_t m = res->measured_to - res->measured_from;
    uint64_t *lat = calloc(m > 0 ? m : 1, sizeof(*lat));
    if (lat == NULL)
        return tally_errf(err, TALLY_ENOMEM, "out of memory");
    size_t nl = 0;
    uint64_t measured_receipts = 0;
    for (uint64_t i = res->measured_from; i < res->measured_to; i++) {
        if (!rec[i].done) {
            res->missing++;
            continue;
        }
        measured_receipts++;
        if (rec[i].result < LEDGER_RESULT_COUNT)
            res->by[rec[i].result]++;
        if (rec[i].result == LEDGER_RESULT_OK)
            res->ok++;
        else
            res->rejected++;
        lat[nl++] = rec[i].latency_us;
    }
    bench_latency_summary(lat, nl, &res->lat);
    free(lat);
    res->seconds = (double)(res->window_end_us - res->window_start_us) / 1e6;
    /* Duration mode: receipts that arrived in the window (whenever sent);
     * count mode: the measured transactions over first send to last receipt. */
    uint64_t window_receipts = 0;
    for (uint64_t i = 0; i < res->sent && o->count == 0; i++) {
        uint64_t at = send_us[i] + rec[i].latency_us;
        if (rec[i].done && at >= res->window_start_us && at < res->window_end_us)
            window_receipts++;
    }
    res->window_receipts = o->count > 0 ? measured_receipts : window_receipts;
    res->tx_per_s = res->seconds > 0 ? (double)res->window_receipts / res->seconds : 0;
    return 0;
}

/* ---- report ----------------------------------------------------------------- */

static double ms(uint64_t us)
{
    return (double)us / 1000.0;
}

static void report_text(const struct bench_opts *o, const struct bench_machine *m,
                        const struct bench_result *r)
{
    char a[32], b[32], c[32], d[32];
    if (o->rate > 0) {
        bench_fmt_int(o->rate, a, sizeof(a));
        printf("mode         open loop, %s tx/s target, at most %llu outstanding\n", a,
               (unsigned long long)o->cap);
    } else {
        printf("mode         closed loop, %llu outstanding\n", (unsigned long long)o->outstanding);
    }
    if (o->count > 0)
        printf("window       %llu transactions after %.1f s warm-up\n",
               (unsigned long long)o->count, o->warmup_ms / 1000.0);
    else
        printf("window       %.1f s after %.1f s warm-up\n", o->duration_ms / 1000.0,
               o->warmup_ms / 1000.0);
    printf("cluster      n = %u, f = %u\n", m->n, m->f);
    printf("machine      %u cores, %s\n", m->cores, m->cpu);
    bench_fmt_int(r->tx_per_s, a, sizeof(a));
    bench_fmt_int((double)r->window_receipts, b, sizeof(b));
    printf("throughput   %s tx/s (%s receipts in %.2f s)\n", a, b, r->seconds);
    bench_fmt_int((double)r->lat.n, a, sizeof(a));
    printf("latency      p50 %.1f ms  p90 %.1f ms  p99 %.1f ms  p99.9 %.1f ms  max %.1f ms  "
           "(%s receipts)\n",
           ms(r->lat.p50), ms(r->lat.p90), ms(r->lat.p99), ms(r->lat.p999), ms(r->lat.max), a);
    bench_fmt_int((double)(r->measured_to - r->measured_from), a, sizeof(a));
    bench_fmt_int((double)r->ok, b, sizeof(b));
    bench_fmt_int((double)r->rejected, c, sizeof(c));
    bench_fmt_int((double)r->missing, d, sizeof(d));
    printf("counts       measured %s: ok %s, rejected %s, no receipt %s\n", a, b, c, d);
    for (int i = 1; i < LEDGER_RESULT_COUNT; i++)
        if (r->by[i] > 0)
            printf("             rejected: %s: %llu\n", ledger_result_text(i),
                   (unsigned long long)r->by[i]);
    if (o->rate > 0)
        printf("schedule     sends up to %.1f ms late; at the end of the window %.1f ms behind "
               "with %llu due transactions unsent\n",
               ms(r->behind_max_us), ms(r->behind_end_us), (unsigned long long)r->unsent);
    if (r->ran_out)
        printf("note         the %llu pre-signed transactions ran out: the window was cut to "
               "%.2f s (use --presign)\n",
               (unsigned long long)r->sent, r->seconds);
    bench_fmt_int(r->tx_per_s, a, sizeof(a));
    bench_fmt_int(m->ceiling, b, sizeof(b));
    printf("ceiling      %s tx/s = %.0f %% of the %s tx/s crypto ceiling for n = %u on %u "
           "cores\n",
           a, m->ceiling > 0 ? 100.0 * r->tx_per_s / m->ceiling : 0.0, b, m->n, m->cores);
    print_ceiling_formula(stdout, m, "             ");
}

static void report_json(const struct bench_opts *o, const struct bench_machine *m,
                        const struct bench_result *r)
{
    json_t *rej = json_object();
    for (int i = 1; i < LEDGER_RESULT_COUNT; i++)
        if (r->by[i] > 0)
            json_object_set_new(rej, ledger_result_name(i), json_integer((json_int_t)r->by[i]));
    json_t *lat = json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:I}", "p50_ms", ms(r->lat.p50),
                            "p90_ms", ms(r->lat.p90), "p99_ms", ms(r->lat.p99), "p999_ms",
                            ms(r->lat.p999), "max_ms", ms(r->lat.max), "mean_ms",
                            r->lat.mean / 1000.0, "receipts", (json_int_t)r->lat.n);
    json_t *j = json_pack(
        "{s:s, s:f, s:f, s:i, s:i, s:i, s:s, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:f, s:f, s:I, "
        "s:b, s:o}",
        "mode", o->rate > 0 ? "open" : "closed", "warmup_s", o->warmup_ms / 1000.0, "window_s",
        r->seconds, "n", (int)m->n, "f", (int)m->f, "cores", (int)m->cores, "cpu_model", m->cpu,
        "sent", (json_int_t)r->sent, "measured", (json_int_t)(r->measured_to - r->measured_from),
        "ok", (json_int_t)r->ok, "rejected", (json_int_t)r->rejected, "no_receipt",
        (json_int_t)r->missing, "rejected_by", rej, "latency", lat, "tx_per_s", r->tx_per_s,
        "ceiling_fraction", m->ceiling > 0 ? r->tx_per_s / m->ceiling : 0.0, "window_receipts",
        (json_int_t)r->window_receipts, "ran_out", r->ran_out, "ceiling", ceiling_json(m));
    if (j == NULL)
        return;
    if (o->rate > 0) {
        json_object_set_new(j, "rate", json_real(o->rate));
        json_object_set_new(j, "max_outstanding", json_integer((json_int_t)o->cap));
        json_object_set_new(j, "behind_max_ms", json_real(ms(r->behind_max_us)));
        json_object_set_new(j, "behind_end_ms", json_real(ms(r->behind_end_us)));
        json_object_set_new(j, "unsent_at_end", json_integer((json_int_t)r->unsent));
    } else {
        json_object_set_new(j, "outstanding", json_integer((json_int_t)o->outstanding));
    }
    if (o->count > 0)
        json_object_set_new(j, "count", json_integer((json_int_t)o->count));
    else
        json_object_set_new(j, "duration_s", json_real(o->duration_ms / 1000.0));
    print_json(j);
}

/* ---- the command ---------------------------------------------------------------- */

/* accounts/ next to the cluster file. */
static void default_accounts_dir(const char *config_path, char *out, size_t size)
{
    const char *p = config_path != NULL ? config_path : "testnet/cluster.json";
    const char *slash = strrchr(p, '/');
    if (slash == NULL)
        snprintf(out, size, "accounts");
    else
        snprintf(out, size, "%.*s/accounts", (int)(slash - p), p);
}

int cmd_bench(int argc, char **argv)
{
    struct bench_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    if (o.ceiling)
        return run_ceiling(&o);

    int status = 1;
    struct tally_config cfg = {0};
    struct tally_err err = {0};
    struct bench_accounts acc = {0};
    struct bench_machine m = {.cores = bench_cores()};
    struct client *cl = NULL;
    struct client_stream *st = NULL;
    struct client_account *ca = NULL;
    struct ledger_tx *txs = NULL;
    struct client_receipt *rec = NULL;
    uint64_t *send_us = NULL;
    char dir[4096];

    if (client_config_load(o.config_path, &cfg, &err) != 0) {
        fprintf(stderr, "tally bench: %s\n", tally_err_text(&err));
        goto out;
    }
    m.n = cfg.n;
    m.f = cfg.f;
    if (o.accounts_dir == NULL)
        default_accounts_dir(o.config_path, dir, sizeof(dir));
    else
        snprintf(dir, sizeof(dir), "%s", o.accounts_dir);
    if (accounts_load(dir, &acc, &err) != 0) {
        fprintf(stderr, "tally bench: %s\n", tally_err_text(&err));
        goto out;
    }
    if (client_open(&cfg, &cl, &err) != 0) {
        fprintf(stderr, "tally bench: %s\n", tally_err_text(&err));
        goto out;
    }
    /* The accounts' nonces, all at once (also: is the cluster there?). */
    uint64_t t = client_now_us();
    ca = calloc(acc.n, sizeof(*ca));
    if (ca == NULL) {
        fprintf(stderr, "tally bench: out of memory\n");
        goto out;
    }
    if (client_get_accounts(cl, acc.pk, acc.n, o.timeout_ms, ca, &err) != 0) {
        fprintf(stderr, "tally bench: asking for the accounts' nonces: %s\n", tally_err_text(&err));
        goto out;
    }
    for (size_t i = 0; i < acc.n; i++) {
        if (!ca[i].found) {
            char hex[65];
            tc_hex_encode(acc.pk[i].b, TC_PUBKEY_BYTES, hex);
            fprintf(stderr,
                    "tally bench: %s/account-%zu.key: account %s is not in the ledger "
                    "(not funded in this cluster's genesis?)\n",
                    dir, i, hex);
            goto out;
        }
        acc.nonce[i] = ca[i].nonce;
    }
    if (!o.quiet)
        fprintf(stderr, "bench: %zu accounts, nonces from f+1 replicas in %.0f ms\n", acc.n,
                (client_now_us() - t) / 1000.0);

    /* This machine's crypto ceiling, before any load. */
    bench_cpu_model(m.cpu, sizeof(m.cpu));
    if (bench_measure_crypto(BENCH_QUICK_SIGN_US, BENCH_QUICK_VERIFY_US, &m.crypto, &err) != 0) {
        fprintf(stderr, "tally bench: %s\n", tally_err_text(&err));
        goto out;
    }
    m.ceiling = bench_ceiling_tx_per_s(m.cores, m.crypto.verify_per_s, m.n);
    if (!o.quiet) {
        fprintf(stderr, "bench: crypto ");
        print_ceiling_formula(stderr, &m, "");
    }

    /* Sign everything ahead. */
    double est = 1.5 * m.ceiling > BENCH_EST_FLOOR ? 1.5 * m.ceiling : BENCH_EST_FLOOR;
    uint64_t window = o.rate > 0 ? o.cap : o.outstanding;
    uint64_t n = o.presign;
    if (n == 0 && o.count > 0)
        n = o.count + (o.warmup_ms > 0
                           ? bench_presign_count(0, o.rate, est, o.warmup_ms / 1000.0, window)
                           : 0);
    else if (n == 0)
        n = bench_presign_count(0, o.rate, est, (o.warmup_ms + o.duration_ms) / 1000.0, window);
    if (n > BENCH_MAX_TXS)
        n = BENCH_MAX_TXS;
    txs = calloc(n, sizeof(*txs));
    rec = calloc(n, sizeof(*rec));
    send_us = calloc(n, sizeof(*send_us));
    if (txs == NULL || rec == NULL || send_us == NULL) {
        fprintf(stderr, "tally bench: out of memory for %llu transactions\n",
                (unsigned long long)n);
        goto out;
    }
    sign_all(&acc, txs, n, o.amount, m.cores, o.quiet);
    struct client_submit_opts so = {.max_outstanding = o.rate > 0 ? o.cap : o.outstanding};
    if (client_stream_open(cl, txs, n, &so, rec, &st, &err) != 0) {
        fprintf(stderr, "tally bench: %s\n", tally_err_text(&err));
        goto out;
    }

    struct bench_result res;
    if (run_load(&o, st, rec, n, send_us, &res, &err) != 0) {
        fprintf(stderr, "tally bench: %s\n", tally_err_text(&err));
        goto out;
    }
    if (o.json)
        report_json(&o, &m, &res);
    else
        report_text(&o, &m, &res);
    if (res.rejected > 0)
        fprintf(stderr,
                "tally bench: warning: %llu transactions rejected (another client using these "
                "accounts?)\n",
                (unsigned long long)res.rejected);
    if (res.missing > 0)
        fprintf(stderr,
                "tally bench: warning: %llu transactions got no f+1 matching replies within "
                "--timeout after the window\n",
                (unsigned long long)res.missing);
    if (res.lat.n == 0) {
        fprintf(stderr, "tally bench: no transaction of the window got a receipt\n");
        goto out;
    }
    status = 0;
out:
    client_stream_close(st);
    client_close(cl);
    free(txs);
    free(rec);
    free(send_us);
    free(ca);
    accounts_free(&acc);
    config_free(&cfg);
    return status;
}
