/* tally bench: load a running cluster with pre-signed transfers and report
 * throughput, receipt latency and how close that is to the machine's crypto
 * ceiling. Closed loop (--outstanding N in flight) or open loop (--rate R on a
 * schedule); a measured window after a warm-up, or a fixed count. The pure
 * parts (percentiles, ceiling, schedule) are in tools/lib/bench.c.
 * `tally bench --ledger` times the ledger alone (ledger_apply_block* on a
 * temporary data directory with N accounts), no cluster involved. */
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "ledger/ledger.h"
#include "ledger/ledger_internal.h" /* the RocksDB handle: wait for compactions */
#include "ledger/tx.h"
#include "src/mono.h"
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
/* Open loop: sends go out on a 1 ms tick, everything due by then in one
 * REQUEST per replica, as a client batching its submissions would (and as
 * poll()'s millisecond timeouts made the client library do until it moved to
 * NNG streams). On a finer schedule every transaction at 6,000 tx/s became
 * a REQUEST of its own, and the replicas spent on messages what they needed
 * for blocks: p50 80-85 ms against 31-37 ms with this tick. */
#define BENCH_SEND_TICK_US 1000
#define BENCH_EST_FLOOR 5000.0 /* closed loop: sign for at least this tx/s */
#define BENCH_DEFAULT_OUTSTANDING 256
#define BENCH_DEFAULT_CAP 4096
#define LB_BALANCE 1000000000ull /* --ledger: every account's starting balance */
#define LB_SETUP_BLOCK 50000u    /* transfers per account-creating block */
#define LB_WARMUP_BLOCKS 2u      /* applied (and not timed) before each timed run */
#define LB_MAX_ACCOUNTS 10000000ull

struct bench_opts {
    const char *config_path, *accounts_dir;
    uint64_t outstanding, cap, count, presign, amount;
    uint64_t duration_ms, warmup_ms, timeout_ms;
    double rate; /* > 0: open loop */
    bool outstanding_set, cap_set, warmup_set, duration_set;
    bool json, quiet, ceiling;
    bool ledger; /* --ledger: the options below */
    uint64_t accounts, block_txs, blocks, seed;
    const char *keep;
    bool in_memory, no_sync, ring, ledger_opt_set;
};

static void bench_usage(FILE *out)
{
    fprintf(out,
            "usage: tally bench [--config CLUSTER] [--accounts-dir DIR]\n"
            "                   [--outstanding N | --rate R [--max-outstanding N]]\n"
            "                   [--duration S] [--warmup S] [--count N] [--timeout S]\n"
            "                   [--presign N] [--amount N] [--quiet] [--json]\n"
            "       tally bench --ceiling [--config CLUSTER] [--json]\n"
            "       tally bench --ledger [--accounts N] [--block-txs N] [--blocks B]\n"
            "                   [--keep DIR] [--in-memory] [--no-sync] [--seed S]\n"
            "                   [--workload random|ring] [--json]\n"
            "\n"
            "Load a running cluster with transfers and measure it. Every transfer is\n"
            "signed before the clock starts, round robin over the funded accounts in\n"
            "DIR (account-K.key, as `tally init --accounts N` writes them) with\n"
            "consecutive nonces, so nonces never collide. Latency is from the first\n"
            "send to f+1 matching replies. Reports throughput over the measured window,\n"
            "latency p50/p90/p99/p99.9/max, counts, the machine and the cluster's n\n"
            "and f, and the throughput as a fraction of the crypto ceiling (measured\n"
            "first, ~0.5 s): cores x Ed25519 verifies/s per core / n, as every replica\n"
            "verifies every client signature once. The ceiling is measured again after\n"
            "the run; a warning says when the two differ by more than 10 %% (other load\n"
            "on the host), as the fraction is then not to be trusted.\n"
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
            "--ledger: time the ledger alone (no cluster). Creates a data directory\n"
            "(temporary unless --keep) synced like a replica's, N funded accounts (up to\n"
            "65,536 in the genesis, the rest created by signed transfers from them; keys\n"
            "derived from a counter), reopens it (memtables flushed), then applies B\n"
            "blocks of pre-signed transfers between random accounts twice: with the\n"
            "signatures pre-verified (ledger_apply_block_verified, the replica's path)\n"
            "and verified in the ledger (ledger_apply_block). Reports per-block time\n"
            "p50/p90/p99/max and tx/s for each.\n"
            "  --accounts N        accounts in the ledger (default 1000, up to 10,000,000)\n"
            "  --block-txs N       transfers per timed block (default 1000, up to 65536)\n"
            "  --blocks B          timed blocks each way (default 50)\n"
            "  --keep DIR          build the ledger in DIR (must not exist) and keep it\n"
            "                      (a signed, auditable ledger: tally audit --data DIR)\n"
            "  --in-memory         RocksDB's in-memory environment (no disk, no reopen)\n"
            "  --no-sync           do not fsync each block's WriteBatch\n"
            "  --seed S            random seed for the timed transfers (default 1)\n"
            "  --workload W        the timed transfers: 'random' (default): random\n"
            "                      sender, random other recipient, so a block names\n"
            "                      ~865 distinct accounts of 1,000 but ~2,000 of\n"
            "                      1,000,000; 'ring': each block is a ring over M =\n"
            "                      min(block-txs, N) distinct random accounts (each\n"
            "                      sends once and receives once), so a block touches\n"
            "                      the same number of accounts whatever N: compares\n"
            "                      the cost of N like with like\n"
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
                                         {"ledger", no_argument, NULL, 'L'},
                                         {"accounts", required_argument, NULL, 'n'},
                                         {"block-txs", required_argument, NULL, 'b'},
                                         {"blocks", required_argument, NULL, 'B'},
                                         {"keep", required_argument, NULL, 'k'},
                                         {"in-memory", no_argument, NULL, 'M'},
                                         {"no-sync", no_argument, NULL, 'Y'},
                                         {"seed", required_argument, NULL, 'S'},
                                         {"workload", required_argument, NULL, 'W'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    *o = (struct bench_opts){.outstanding = BENCH_DEFAULT_OUTSTANDING,
                             .cap = BENCH_DEFAULT_CAP,
                             .amount = 1,
                             .duration_ms = 10000,
                             .warmup_ms = 2000,
                             .timeout_ms = 10000,
                             .accounts = 1000,
                             .block_txs = 1000,
                             .blocks = 50,
                             .seed = 1};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+c:a:o:r:m:d:w:N:T:P:A:qjChLn:b:B:k:MYS:W:", opts,
                            NULL)) != -1) {
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
        case 'L':
            o->ledger = true;
            break;
        case 'n':
            if (client_parse_u64(optarg, &o->accounts) != 0 || o->accounts < 2 ||
                o->accounts > LB_MAX_ACCOUNTS)
                return bench_usage_error("--accounts '%s': expected 2..10000000", optarg);
            o->ledger_opt_set = true;
            break;
        case 'b':
            if (client_parse_u64(optarg, &o->block_txs) != 0 || o->block_txs == 0 ||
                o->block_txs > LEDGER_BLOCK_MAX_TXS)
                return bench_usage_error("--block-txs '%s': expected 1..65536", optarg);
            o->ledger_opt_set = true;
            break;
        case 'B':
            if (client_parse_u64(optarg, &o->blocks) != 0 || o->blocks == 0 || o->blocks > 100000)
                return bench_usage_error("--blocks '%s': expected 1..100000", optarg);
            o->ledger_opt_set = true;
            break;
        case 'k':
            o->keep = optarg;
            o->ledger_opt_set = true;
            break;
        case 'M':
            o->in_memory = true;
            o->ledger_opt_set = true;
            break;
        case 'Y':
            o->no_sync = true;
            o->ledger_opt_set = true;
            break;
        case 'S':
            if (client_parse_u64(optarg, &o->seed) != 0)
                return bench_usage_error("--seed '%s': expected a number", optarg);
            o->ledger_opt_set = true;
            break;
        case 'W':
            if (strcmp(optarg, "ring") == 0)
                o->ring = true;
            else if (strcmp(optarg, "random") != 0)
                return bench_usage_error("--workload '%s': expected random or ring", optarg);
            o->ledger_opt_set = true;
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
    if (o->ledger_opt_set && !o->ledger)
        return bench_usage_error("%s", "--accounts, --block-txs, --blocks, --keep, --in-memory, "
                                       "--no-sync, --seed and --workload go with --ledger");
    if (o->ledger && o->ceiling)
        return bench_usage_error("%s", "--ledger and --ceiling exclude each other");
    if (o->keep != NULL && o->in_memory)
        return bench_usage_error("%s", "--keep and --in-memory exclude each other");
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
    /* The same, measured again after the run (0 when that failed): a host
     * that slowed down or sped up meanwhile makes the fraction unreliable. */
    struct bench_crypto crypto_after;
    double ceiling_after;
    uint32_t n, f;
};

#define BENCH_CEILING_DRIFT_WARN 0.10

static double ceiling_drift(const struct bench_machine *m)
{
    return bench_ceiling_drift(m->ceiling, m->ceiling_after);
}

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
    uint64_t t0 = mono_now_us();
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
        double secs = (double)(mono_now_us() - t0) / 1e6;
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
    uint64_t *per_second; /* duration mode: receipts in each whole second of the window */
    size_t nseconds;
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
    uint64_t t0 = mono_now_us();
    uint64_t warm_end = t0 + o->warmup_ms * 1000u;
    uint64_t end = warm_end + o->duration_ms * 1000u; /* duration mode */
    uint64_t measured_from = UINT64_MAX, stop_us = 0, receipted = 0, measured_done = 0;
    uint64_t next_progress = t0 + 1000000u, last_receipted = 0;
    uint64_t last_receipt_us = 0;
    bool stopping = false;
    memset(res, 0, sizeof(*res));
    for (;;) {
        uint64_t now = mono_now_us();
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
        /* Wait for receipts, or until the next send is due, in whole
         * BENCH_SEND_TICK_US: what falls due meanwhile goes out together. */
        uint64_t wait = BENCH_POLL_US;
        if (!stopping && o->rate > 0 && client_stream_outstanding(st) < cap) {
            uint64_t due = bench_due_us(t0, o->rate, client_stream_sent(st));
            now = mono_now_us();
            wait = due > now ? due - now : 0;
            wait = (wait + BENCH_SEND_TICK_US - 1) / BENCH_SEND_TICK_US * BENCH_SEND_TICK_US;
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
        now = mono_now_us();
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
    uint64_t *at = o->count == 0 ? calloc(res->sent > 0 ? res->sent : 1, sizeof(*at)) : NULL;
    if (o->count == 0 && at == NULL)
        return tally_errf(err, TALLY_ENOMEM, "out of memory");
    for (uint64_t i = 0; i < res->sent && o->count == 0; i++) {
        uint64_t t = send_us[i] + rec[i].latency_us;
        if (rec[i].done && t >= res->window_start_us && t < res->window_end_us)
            at[window_receipts++] = t;
    }
    /* Whole seconds only: a partial last second would read as a dip. */
    res->nseconds = o->count == 0 ? (size_t)res->seconds : 0;
    if (res->nseconds > 0) {
        res->per_second = calloc(res->nseconds, sizeof(*res->per_second));
        if (res->per_second == NULL) {
            free(at);
            return tally_errf(err, TALLY_ENOMEM, "out of memory");
        }
        bench_per_second(at, window_receipts, res->window_start_us, res->per_second, res->nseconds);
    }
    free(at);
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
    if (r->nseconds >= 2) {
        uint64_t lo = UINT64_MAX, hi = 0;
        for (size_t k = 0; k < r->nseconds; k++) {
            lo = r->per_second[k] < lo ? r->per_second[k] : lo;
            hi = r->per_second[k] > hi ? r->per_second[k] : hi;
        }
        bench_fmt_int((double)lo, a, sizeof(a));
        bench_fmt_int((double)hi, b, sizeof(b));
        printf("per second   slowest %s, fastest %s tx/s over %zu whole seconds\n", a, b,
               r->nseconds);
    }
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
    if (m->ceiling_after > 0) {
        bench_fmt_int(m->ceiling_after, b, sizeof(b));
        printf("             measured again after the run: %s tx/s (%+.0f %%), %.0f %% of it\n", b,
               100.0 * ceiling_drift(m), 100.0 * r->tx_per_s / m->ceiling_after);
    }
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
    if (m->ceiling_after > 0) {
        json_object_set_new(j, "ceiling_after_tx_per_s", json_real(m->ceiling_after));
        json_object_set_new(j, "ceiling_fraction_after", json_real(r->tx_per_s / m->ceiling_after));
        json_object_set_new(j, "ceiling_drift", json_real(ceiling_drift(m)));
    }
    if (o->rate > 0) {
        json_object_set_new(j, "rate", json_real(o->rate));
        json_object_set_new(j, "max_outstanding", json_integer((json_int_t)o->cap));
        json_object_set_new(j, "behind_max_ms", json_real(ms(r->behind_max_us)));
        json_object_set_new(j, "behind_end_ms", json_real(ms(r->behind_end_us)));
        json_object_set_new(j, "unsent_at_end", json_integer((json_int_t)r->unsent));
    } else {
        json_object_set_new(j, "outstanding", json_integer((json_int_t)o->outstanding));
    }
    if (r->nseconds > 0) {
        json_t *ps = json_array();
        for (size_t k = 0; k < r->nseconds; k++)
            json_array_append_new(ps, json_integer((json_int_t)r->per_second[k]));
        json_object_set_new(j, "per_second", ps);
    }
    if (o->count > 0)
        json_object_set_new(j, "count", json_integer((json_int_t)o->count));
    else
        json_object_set_new(j, "duration_s", json_real(o->duration_ms / 1000.0));
    print_json(j);
}

/* ---- tally bench --ledger: the ledger alone, no cluster ------------------------ */

struct lb_opts {
    uint64_t accounts, block_txs, blocks, seed;
    const char *keep; /* data directory to create and keep, or NULL: a temporary one */
    bool in_memory, no_sync, json, quiet;
    bool ring; /* --workload ring: each block a ring over distinct accounts */
};

/* One timed run: `blocks` blocks, per-block wall time in microseconds, and
 * the applying thread's CPU time (steadier than wall time on a shared
 * machine; leaves out fsync waits and RocksDB's background threads). */
struct lb_run {
    struct bench_latency lat; /* per block, wall */
    struct bench_latency cpu; /* per block, this thread's CPU */
    double seconds, tx_per_s;
    uint64_t txs, not_ok;
};

/* Fill pks[from..to) from the accounts' seeds (a scalar multiplication each). */
struct lb_derive {
    tc_pubkey *pks;
    uint64_t from, to;
};

static void *lb_derive_main(void *arg)
{
    struct lb_derive *d = arg;
    uint8_t seed[BENCH_SEED_BYTES];
    uint8_t sk[crypto_sign_SECRETKEYBYTES];
    for (uint64_t i = d->from; i < d->to; i++) {
        bench_account_seed(i, seed);
        crypto_sign_seed_keypair(d->pks[i].b, sk, seed);
    }
    sodium_memzero(sk, sizeof(sk));
    return NULL;
}

/* Sign encoded transfers out[from..to): txs[i] has every field but the
 * signature; sender index snd[i]. One guarded key pair per thread, re-derived
 * only when the sender changes (account-creating transfers come grouped by
 * funder). */
struct lb_sign {
    const struct ledger_tx *txs;
    const uint64_t *snd;
    uint8_t *out;
    uint64_t from, to;
    int rc;
};

static void *lb_sign_main(void *arg)
{
    struct lb_sign *s = arg;
    tc_keypair kp = {0};
    uint8_t seed[BENCH_SEED_BYTES];
    uint64_t cur = UINT64_MAX;
    if (tc_keypair_generate(&kp) != 0) {
        s->rc = TALLY_ENOMEM;
        return NULL;
    }
    for (uint64_t i = s->from; i < s->to; i++) {
        if (s->snd[i] != cur) {
            cur = s->snd[i];
            bench_account_seed(cur, seed);
            crypto_sign_seed_keypair(kp.pk.b, kp.sk, seed);
        }
        struct ledger_tx tx = s->txs[i];
        ledger_tx_sign(&tx, &kp);
        ledger_tx_encode(&tx, s->out + i * LEDGER_TX_BYTES);
    }
    tc_keypair_free(&kp);
    return NULL;
}

/* Run fn over [0, n) split in `threads` ranges; args[t] gets from/to set by set_range. */
static void lb_parallel(void *(*fn)(void *), void *args, size_t arg_size, unsigned threads,
                        void (*set_range)(void *, uint64_t, uint64_t), uint64_t n)
{
    pthread_t th[BENCH_MAX_SIGNERS];
    bool started[BENCH_MAX_SIGNERS] = {0};
    if (threads > BENCH_MAX_SIGNERS)
        threads = BENCH_MAX_SIGNERS;
    if (threads == 0 || n < 1024)
        threads = 1;
    for (unsigned t = 0; t < threads; t++) {
        void *a = (char *)args + t * arg_size;
        set_range(a, n * t / threads, n * (t + 1) / threads);
        started[t] = t > 0 && pthread_create(&th[t], NULL, fn, a) == 0;
    }
    fn(args);
    for (unsigned t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            fn((char *)args + t * arg_size);
    }
}

static void lb_derive_range(void *a, uint64_t from, uint64_t to)
{
    ((struct lb_derive *)a)->from = from;
    ((struct lb_derive *)a)->to = to;
}

static void lb_sign_range(void *a, uint64_t from, uint64_t to)
{
    ((struct lb_sign *)a)->from = from;
    ((struct lb_sign *)a)->to = to;
}

static int lb_sign_all(const struct ledger_tx *txs, const uint64_t *snd, uint8_t *out, uint64_t n,
                       unsigned threads, struct tally_err *err)
{
    struct lb_sign sg[BENCH_MAX_SIGNERS];
    for (unsigned t = 0; t < BENCH_MAX_SIGNERS; t++)
        sg[t] = (struct lb_sign){.txs = txs, .snd = snd, .out = out};
    lb_parallel(lb_sign_main, sg, sizeof(sg[0]), threads, lb_sign_range, n);
    for (unsigned t = 0; t < BENCH_MAX_SIGNERS; t++)
        if (sg[t].rc != 0)
            return tally_errf(err, TALLY_ENOMEM, "out of guarded memory for a key pair");
    return 0;
}

static int lb_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void lb_note(const struct lb_opts *o, uint64_t t0, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void lb_note(const struct lb_opts *o, uint64_t t0, const char *fmt, ...)
{
    if (o->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench: %6.1f s  ", (mono_now_us() - t0) / 1e6);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* Apply `blocks` blocks of bt transfers from tx_bytes, timing each; verify:
 * ledger_apply_block (signatures checked in the ledger) or
 * ledger_apply_block_verified with every sig_ok 1. */
static uint64_t lb_thread_cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int lb_timed(struct ledger *l, const uint8_t *tx_bytes, uint64_t blocks, uint32_t bt,
                    bool verify, const uint8_t *sig_ok, uint64_t *block_us, uint64_t *cpu_us,
                    struct lb_run *run, struct tally_err *err)
{
    memset(run, 0, sizeof(*run));
    uint64_t total = 0;
    for (uint64_t b = 0; b < blocks; b++) {
        struct ledger_block_result res;
        const uint8_t *p = tx_bytes + b * bt * LEDGER_TX_BYTES;
        uint64_t c0 = lb_thread_cpu_us();
        uint64_t t0 = mono_now_us();
        int rc =
            verify ? ledger_apply_block(l, ledger_height(l) + 1, p, bt, &res, err)
                   : ledger_apply_block_verified(l, ledger_height(l) + 1, p, bt, sig_ok, &res, err);
        uint64_t dt = mono_now_us() - t0;
        cpu_us[b] = lb_thread_cpu_us() - c0;
        if (rc != 0)
            return rc;
        block_us[b] = dt;
        total += dt;
        for (uint32_t i = 0; i < res.count; i++)
            run->not_ok += res.results[i] != LEDGER_RESULT_OK;
    }
    run->txs = blocks * bt;
    run->seconds = (double)total / 1e6;
    run->tx_per_s = total > 0 ? (double)run->txs * 1e6 / (double)total : 0;
    bench_latency_summary(block_us, blocks, &run->lat);
    bench_latency_summary(cpu_us, blocks, &run->cpu);
    return 0;
}

/* Wait (up to max_s) until RocksDB has no compaction running or pending, so
 * that the timed blocks do not share the CPU with compacting the setup's
 * ~250 MB (1,000,000 accounts): a replica in steady state compacts only what
 * it writes. Returns the seconds waited. */
static double lb_quiesce(struct ledger *l, double max_s)
{
    rocksdb_t *db = ledger_rocksdb(l);
    uint64_t t0 = mono_now_us();
    for (;;) {
        uint64_t pending = 0, acct_pending = 0, running = 0;
        if (rocksdb_property_int(db, "rocksdb.compaction-pending", &pending) != 0 ||
            rocksdb_property_int_cf(db, ledger_accounts_cf(l), "rocksdb.compaction-pending",
                                    &acct_pending) != 0 ||
            rocksdb_property_int(db, "rocksdb.num-running-compactions", &running) != 0)
            break;
        if ((pending == 0 && acct_pending == 0 && running == 0) || mono_now_us() - t0 > max_s * 1e6)
            break;
        usleep(100000);
    }
    return (mono_now_us() - t0) / 1e6;
}

static void lb_print_run(const char *what, const struct lb_run *r)
{
    char t[32];
    bench_fmt_int(r->tx_per_s, t, sizeof(t));
    printf("%-22s p50 %7.2f ms  p90 %7.2f ms  p99 %7.2f ms  max %7.2f ms  mean %7.2f ms  "
           "%s tx/s\n",
           what, r->lat.p50 / 1000.0, r->lat.p90 / 1000.0, r->lat.p99 / 1000.0, r->lat.max / 1000.0,
           r->lat.mean / 1000.0, t);
    printf("%-22s p50 %7.2f ms  p90 %7.2f ms  p99 %7.2f ms  (CPU time of the applying "
           "thread)\n",
           "", r->cpu.p50 / 1000.0, r->cpu.p90 / 1000.0, r->cpu.p99 / 1000.0);
}

static json_t *lb_run_json(const struct lb_run *r)
{
    json_t *cpu = json_pack("{s:f, s:f, s:f, s:f}", "p50_ms", r->cpu.p50 / 1000.0, "p90_ms",
                            r->cpu.p90 / 1000.0, "p99_ms", r->cpu.p99 / 1000.0, "mean_ms",
                            r->cpu.mean / 1000.0);
    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:f, s:o}", "p50_ms", r->lat.p50 / 1000.0,
                     "p90_ms", r->lat.p90 / 1000.0, "p99_ms", r->lat.p99 / 1000.0, "max_ms",
                     r->lat.max / 1000.0, "mean_ms", r->lat.mean / 1000.0, "blocks_s", r->seconds,
                     "txs", (json_int_t)r->txs, "tx_per_s", r->tx_per_s, "thread_cpu", cpu);
}

static int run_ledger(const struct lb_opts *o)
{
    int status = 1, rc;
    struct tally_err err = {0};
    struct ledger *l = NULL;
    struct ledger_genesis_account *gen = NULL;
    tc_pubkey *pks = NULL;
    uint64_t *nonce = NULL, *snd = NULL, *block_us = NULL, *cpu_us = NULL, *perm = NULL;
    struct ledger_tx *txs = NULL;
    uint8_t *enc = NULL, *sig_ok = NULL;
    char tmp[4096] = "", dir[4096 + 16];
    unsigned cores = bench_cores();
    uint64_t t0 = mono_now_us();
    uint32_t bt = (uint32_t)o->block_txs;
    struct bench_ledger_plan plan;
    bench_ledger_plan(o->accounts, LEDGER_BLOCK_MAX_TXS, &plan);
    struct ledger_open_opts lo = {.in_memory = o->in_memory, .sync = !o->no_sync};

    if (o->keep != NULL) {
        snprintf(dir, sizeof(dir), "%s", o->keep);
        struct stat st;
        if (stat(dir, &st) == 0) {
            fprintf(stderr, "tally bench: --keep %s: already exists (give a new directory)\n", dir);
            return 1;
        }
    } else {
        const char *td = getenv("TMPDIR");
        snprintf(tmp, sizeof(tmp), "%s/tally-bench-ledger-XXXXXX", td && *td ? td : "/tmp");
        if (mkdtemp(tmp) == NULL) {
            fprintf(stderr, "tally bench: cannot create a temporary directory %s: %s\n", tmp,
                    strerror(errno));
            tmp[0] = '\0';
            return 1;
        }
        snprintf(dir, sizeof(dir), "%s/data", tmp);
    }

    /* 1. Every account's public key (derived from its seed, in parallel). */
    pks = malloc(o->accounts * sizeof(*pks));
    nonce = calloc(o->accounts, sizeof(*nonce));
    gen = calloc(plan.funders, sizeof(*gen));
    if (pks == NULL || nonce == NULL || gen == NULL)
        goto oom;
    {
        struct lb_derive dv[BENCH_MAX_SIGNERS];
        for (unsigned t = 0; t < BENCH_MAX_SIGNERS; t++)
            dv[t] = (struct lb_derive){.pks = pks};
        lb_parallel(lb_derive_main, dv, sizeof(dv[0]), cores, lb_derive_range, o->accounts);
    }
    lb_note(o, t0, "derived %llu account keys", (unsigned long long)o->accounts);

    /* 2. Genesis: the funders, each with enough for the accounts it creates. */
    for (uint64_t f = 0; f < plan.funders; f++) {
        gen[f].pk = pks[f];
        gen[f].balance = LB_BALANCE * (1 + bench_ledger_children(&plan, f));
    }
    rc = ledger_open_opts(dir, &lo, &l, &err);
    if (rc == 0)
        rc = ledger_init_genesis(l, gen, plan.funders, &err);
    if (rc != 0)
        goto fail;
    lb_note(o, t0, "genesis with %llu accounts in %s%s", (unsigned long long)plan.funders, dir,
            o->in_memory ? " (in memory)" : "");

    /* 3. The other accounts: signed transfers from the funders, grouped by funder. */
    uint64_t ncreate = o->accounts - plan.funders;
    uint64_t ntimed = 2 * (LB_WARMUP_BLOCKS + o->blocks) * bt;
    uint64_t nall = ncreate + ntimed;
    txs = calloc(nall, sizeof(*txs));
    snd = calloc(nall, sizeof(*snd));
    enc = malloc(nall * LEDGER_TX_BYTES);
    sig_ok = malloc(bt);
    block_us = calloc(o->blocks, sizeof(*block_us));
    cpu_us = calloc(o->blocks, sizeof(*cpu_us));
    if (txs == NULL || snd == NULL || enc == NULL || sig_ok == NULL || block_us == NULL ||
        cpu_us == NULL)
        goto oom;
    memset(sig_ok, 1, bt);
    for (uint64_t j = plan.funders; j < o->accounts; j++) {
        uint64_t k = j - plan.funders, f = k / plan.per_funder;
        struct ledger_tx *tx = &txs[k];
        tx->version = LEDGER_TX_VERSION;
        tx->kind = LEDGER_TX_KIND_TRANSFER;
        tx->from = pks[f];
        tx->to = pks[j];
        tx->amount = LB_BALANCE;
        tx->nonce = ++nonce[f];
        snd[k] = f;
    }
    /* 4. The timed transfers, amount 1: random sender, random other recipient;
     * or (ring) per block, a ring over m distinct accounts drawn by a partial
     * Fisher-Yates shuffle of perm (which stays a permutation of 0..N-1). */
    uint64_t rng = o->seed;
    uint64_t m = bt < o->accounts ? bt : o->accounts;
    if (m < 2)
        m = 2;
    if (o->ring) {
        perm = malloc(o->accounts * sizeof(*perm));
        if (perm == NULL)
            goto oom;
        for (uint64_t j = 0; j < o->accounts; j++)
            perm[j] = j;
    }
    for (uint64_t i = ncreate; i < nall; i++) {
        uint64_t s, r, k = (i - ncreate) % bt;
        if (o->ring) {
            if (k == 0)
                for (uint64_t j = 0; j < m; j++) {
                    uint64_t x = j + bench_rand_below(&rng, o->accounts - j), t = perm[j];
                    perm[j] = perm[x];
                    perm[x] = t;
                }
            s = perm[k % m];
            r = perm[(k + 1) % m];
        } else {
            s = bench_rand_below(&rng, o->accounts);
            r = bench_rand_below(&rng, o->accounts - 1);
            if (r >= s)
                r++;
        }
        struct ledger_tx *tx = &txs[i];
        tx->version = LEDGER_TX_VERSION;
        tx->kind = LEDGER_TX_KIND_TRANSFER;
        tx->from = pks[s];
        tx->to = pks[r];
        tx->amount = 1;
        tx->nonce = ++nonce[s];
        snd[i] = s;
    }
    if (lb_sign_all(txs, snd, enc, nall, cores, &err) != 0)
        goto fail;
    free(txs);
    txs = NULL;
    lb_note(o, t0, "signed %llu account-creating and %llu timed transfers",
            (unsigned long long)ncreate, (unsigned long long)ntimed);
    for (uint64_t k = 0; k < ncreate; k += LB_SETUP_BLOCK) {
        uint32_t c = (uint32_t)(ncreate - k < LB_SETUP_BLOCK ? ncreate - k : LB_SETUP_BLOCK);
        struct ledger_block_result res;
        rc = ledger_apply_block_verified(l, ledger_height(l) + 1, enc + k * LEDGER_TX_BYTES, c,
                                         NULL, &res, &err);
        if (rc != 0)
            goto fail;
        for (uint32_t i = 0; i < c; i++)
            if (res.results[i] != LEDGER_RESULT_OK) {
                tally_errf(&err, TALLY_EINVAL, "setup transfer %llu: %s",
                           (unsigned long long)(k + i), ledger_result_text(res.results[i]));
                goto fail;
            }
    }
    if (ncreate > 0)
        lb_note(o, t0, "created %llu accounts in %llu blocks", (unsigned long long)ncreate,
                (unsigned long long)ledger_height(l));
    /* As a replica finds it after a restart: memtables flushed, nothing cached. */
    if (!o->in_memory) {
        ledger_close(l);
        l = NULL;
        rc = ledger_open_opts(dir, &lo, &l, &err);
        if (rc != 0)
            goto fail;
        double w = lb_quiesce(l, 300);
        lb_note(o, t0, "reopened the ledger (memtables flushed), compactions done after %.1f s", w);
    }

    /* 5. Timed: signatures checked by the caller (sig_ok all 1), then in the ledger. */
    struct lb_run pre, full;
    const uint8_t *p = enc + ncreate * LEDGER_TX_BYTES;
    uint64_t warm[LB_WARMUP_BLOCKS], warm_cpu[LB_WARMUP_BLOCKS];
    struct lb_run wr;
    size_t step = (size_t)bt * LEDGER_TX_BYTES;
    if ((rc = lb_timed(l, p, LB_WARMUP_BLOCKS, bt, false, sig_ok, warm, warm_cpu, &wr, &err)) != 0)
        goto fail;
    p += LB_WARMUP_BLOCKS * step;
    if ((rc = lb_timed(l, p, o->blocks, bt, false, sig_ok, block_us, cpu_us, &pre, &err)) != 0)
        goto fail;
    p += o->blocks * step;
    lb_note(o, t0, "timed %llu blocks, signatures pre-verified", (unsigned long long)o->blocks);
    if ((rc = lb_timed(l, p, LB_WARMUP_BLOCKS, bt, true, NULL, warm, warm_cpu, &wr, &err)) != 0)
        goto fail;
    p += LB_WARMUP_BLOCKS * step;
    if ((rc = lb_timed(l, p, o->blocks, bt, true, NULL, block_us, cpu_us, &full, &err)) != 0)
        goto fail;
    lb_note(o, t0, "timed %llu blocks, signatures verified in the ledger",
            (unsigned long long)o->blocks);
    if (pre.not_ok + full.not_ok > 0) {
        tally_errf(&err, TALLY_EINVAL, "%llu timed transfers were not applied ok",
                   (unsigned long long)(pre.not_ok + full.not_ok));
        goto fail;
    }

    if (o->json) {
        json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:b, s:b, s:i, s:o, s:o}",
                              "mode", "ledger", "workload", o->ring ? "ring" : "random", "accounts",
                              (json_int_t)o->accounts, "genesis_accounts", (json_int_t)plan.funders,
                              "block_txs", (json_int_t)bt, "blocks", (json_int_t)o->blocks,
                              "height", (json_int_t)ledger_height(l), "sync", !o->no_sync,
                              "in_memory", o->in_memory, "cores", (int)cores, "sig_preverified",
                              lb_run_json(&pre), "sig_verified_in_ledger", lb_run_json(&full));
        if (j != NULL && o->keep != NULL)
            json_object_set_new(j, "data", json_string(dir));
        print_json(j);
    } else {
        char a[32], b[32];
        bench_fmt_int((double)o->accounts, a, sizeof(a));
        bench_fmt_int((double)plan.funders, b, sizeof(b));
        printf("ledger       %s accounts (%s in the genesis), %s%s, height %llu\n", a, b,
               o->in_memory ? "in memory" : "on disk", o->no_sync ? ", not synced" : ", synced",
               (unsigned long long)ledger_height(l));
        printf("blocks       %llu timed blocks of %u transfers each way (after %u warm-up), %s\n",
               (unsigned long long)o->blocks, bt, LB_WARMUP_BLOCKS,
               o->ring ? "each a ring over distinct accounts" : "random accounts");
        lb_print_run("signatures pre-checked", &pre);
        lb_print_run("signatures in ledger", &full);
        if (o->keep != NULL)
            printf("data         %s (kept)\n", dir);
    }
    status = 0;
    goto out;
oom:
    tally_errf(&err, TALLY_ENOMEM, "out of memory for %llu accounts",
               (unsigned long long)o->accounts);
fail:
    fprintf(stderr, "tally bench: %s\n", tally_err_text(&err));
out:
    ledger_close(l);
    if (tmp[0] != '\0')
        nftw(tmp, lb_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(gen);
    free(pks);
    free(nonce);
    free(snd);
    free(perm);
    free(txs);
    free(enc);
    free(sig_ok);
    free(block_us);
    free(cpu_us);
    return status;
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
    if (o.ledger) {
        struct lb_opts lo = {.accounts = o.accounts,
                             .block_txs = o.block_txs,
                             .blocks = o.blocks,
                             .seed = o.seed,
                             .keep = o.keep,
                             .in_memory = o.in_memory,
                             .no_sync = o.no_sync,
                             .ring = o.ring,
                             .json = o.json,
                             .quiet = o.quiet};
        return run_ledger(&lo);
    }

    int status = 1;
    struct tally_config cfg = {0};
    struct tally_err err = {0};
    struct bench_accounts acc = {0};
    struct bench_machine m = {.cores = bench_cores()};
    struct client *cl = NULL;
    struct client_stream *st = NULL;
    struct bench_result res = {0};
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
    uint64_t t = mono_now_us();
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
                (mono_now_us() - t) / 1000.0);

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

    if (run_load(&o, st, rec, n, send_us, &res, &err) != 0) {
        fprintf(stderr, "tally bench: %s\n", tally_err_text(&err));
        goto out;
    }
    /* The ceiling again, now that the load is off: on a shared host it moves. */
    if (bench_measure_crypto(BENCH_QUICK_SIGN_US, BENCH_QUICK_VERIFY_US, &m.crypto_after, &err) ==
        0)
        m.ceiling_after = bench_ceiling_tx_per_s(m.cores, m.crypto_after.verify_per_s, m.n);
    if (o.json)
        report_json(&o, &m, &res);
    else
        report_text(&o, &m, &res);
    double drift = ceiling_drift(&m);
    if (drift > BENCH_CEILING_DRIFT_WARN || drift < -BENCH_CEILING_DRIFT_WARN)
        fprintf(stderr,
                "tally bench: warning: the crypto ceiling moved by %+.0f %% between before and "
                "after the run (other load on this host?): the fraction of the ceiling is not "
                "reliable; run again\n",
                100.0 * drift);
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
    free(res.per_second);
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
