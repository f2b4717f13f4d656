/* tally submit: sign a transfer, submit it, wait for f+1 matching replies. */
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "ledger/tx.h"
#include "src/mono.h"
#include "tools/cmds.h"
#include "tools/lib/client.h"

#define SUBMIT_MAX_COUNT 1000000

static void submit_usage(FILE *out)
{
    fprintf(out, "usage: tally submit [--config CLUSTER] --key KEYFILE --to ACCOUNT --amount N\n"
                 "                    [--nonce N] [--count N] [--timeout S] [--json]\n"
                 "\n"
                 "Sign a transfer of N from the key's account to ACCOUNT, send it to every\n"
                 "replica and wait until f+1 replicas report the same result. Prints the\n"
                 "receipt: transaction hash, block height, block hash and result.\n"
                 "\n"
                 "  --config CLUSTER  cluster.json (default ./testnet/cluster.json)\n"
                 "  --key KEYFILE     the sender's key file\n"
                 "  --to ACCOUNT      recipient: 64 hex chars or @KEYFILE\n"
                 "  --amount N        amount to transfer\n"
                 "  --nonce N         nonce to use (default: the account's nonce + 1, asked from\n"
                 "                    f+1 replicas)\n"
                 "  --count N         submit N transfers with consecutive nonces at once and\n"
                 "                    print a summary (load testing; default 1)\n"
                 "  --timeout S       seconds to wait for the receipt(s) (default 10)\n"
                 "  --json            print the receipt (or summary) as JSON\n"
                 "  --help            show this help\n"
                 "\n"
                 "Exit status: 0 when the transfer(s) succeeded, 1 when rejected (the reason is\n"
                 "printed, e.g. \"rejected: insufficient funds\") or on an error, 2 on a usage\n"
                 "error.\n");
}

static void print_receipt(const struct client_receipt *r, bool json)
{
    char h[65], b[65];
    tc_hex_encode(r->tx_hash.b, TC_HASH_BYTES, h);
    tc_hex_encode(r->block_hash.b, TC_HASH_BYTES, b);
    if (json) {
        json_t *o =
            json_pack("{s:s, s:I, s:s, s:s, s:b, s:s, s:f}", "tx_hash", h, "height",
                      (json_int_t)r->height, "block_hash", b, "result",
                      ledger_result_name(r->result), "ok", r->result == LEDGER_RESULT_OK, "reason",
                      ledger_result_text(r->result), "latency_ms", (double)r->latency_us / 1000.0);
        char *t = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
        if (t != NULL)
            printf("%s\n", t);
        free(t);
        json_decref(o);
        return;
    }
    printf("tx      %s\nheight  %llu\nblock   %s\nresult  %s\n", h, (unsigned long long)r->height,
           b, r->result == LEDGER_RESULT_OK ? "ok" : ledger_result_text(r->result));
    if (r->result != LEDGER_RESULT_OK)
        printf("rejected: %s\n", ledger_result_text(r->result));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int print_summary(const struct client_receipt *r, size_t n, uint64_t elapsed_us, bool json)
{
    size_t ok = 0, missing = 0, by[LEDGER_RESULT_COUNT] = {0};
    uint64_t *lat = calloc(n, sizeof(*lat));
    size_t nl = 0;
    for (size_t i = 0; i < n; i++) {
        if (!r[i].done) {
            missing++;
            continue;
        }
        if (r[i].result < LEDGER_RESULT_COUNT)
            by[r[i].result]++;
        if (r[i].result == LEDGER_RESULT_OK)
            ok++;
        if (lat != NULL)
            lat[nl++] = r[i].latency_us;
    }
    if (lat != NULL)
        qsort(lat, nl, sizeof(*lat), cmp_u64);
    double secs = (double)elapsed_us / 1e6;
    double p50 = nl ? (double)lat[nl / 2] / 1000.0 : 0,
           p99 = nl ? (double)lat[nl * 99 / 100] / 1000.0 : 0;
    if (json) {
        json_t *res = json_object();
        for (int i = 0; i < LEDGER_RESULT_COUNT; i++)
            if (by[i] > 0)
                json_object_set_new(res, ledger_result_name(i), json_integer((json_int_t)by[i]));
        json_t *o =
            json_pack("{s:I, s:I, s:I, s:o, s:f, s:f, s:f, s:f}", "submitted", (json_int_t)n, "ok",
                      (json_int_t)ok, "no_receipt", (json_int_t)missing, "results", res, "seconds",
                      secs, "tx_per_s", secs > 0 ? (double)(n - missing) / secs : 0.0,
                      "latency_p50_ms", p50, "latency_p99_ms", p99);
        char *t = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
        if (t != NULL)
            printf("%s\n", t);
        free(t);
        json_decref(o);
    } else {
        printf("submitted %zu, ok %zu, rejected %zu, no receipt %zu in %.2f s (%.0f tx/s, "
               "latency p50 %.1f ms, p99 %.1f ms)\n",
               n, ok, n - ok - missing, missing, secs,
               secs > 0 ? (double)(n - missing) / secs : 0.0, p50, p99);
        for (int i = 1; i < LEDGER_RESULT_COUNT; i++)
            if (by[i] > 0)
                printf("  rejected: %s: %zu\n", ledger_result_text(i), by[i]);
    }
    free(lat);
    return ok == n ? 0 : 1;
}

int cmd_submit(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"key", required_argument, NULL, 'k'},
                                         {"to", required_argument, NULL, 't'},
                                         {"amount", required_argument, NULL, 'a'},
                                         {"nonce", required_argument, NULL, 'n'},
                                         {"count", required_argument, NULL, 'N'},
                                         {"timeout", required_argument, NULL, 'T'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"corrupt-signature", no_argument, NULL, 'X'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config_path = NULL, *key_path = NULL, *to_arg = NULL, *amount_arg = NULL;
    const char *nonce_arg = NULL;
    uint64_t count = 1, timeout_ms = 10000;
    bool json = false, corrupt = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+c:k:t:a:n:N:T:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 'k':
            key_path = optarg;
            break;
        case 't':
            to_arg = optarg;
            break;
        case 'a':
            amount_arg = optarg;
            break;
        case 'n':
            nonce_arg = optarg;
            break;
        case 'N':
            if (client_parse_u64(optarg, &count) != 0 || count == 0 || count > SUBMIT_MAX_COUNT) {
                fprintf(stderr, "tally submit: --count '%s': expected 1..%d\n", optarg,
                        SUBMIT_MAX_COUNT);
                return 2;
            }
            break;
        case 'T':
            if (client_parse_seconds(optarg, &timeout_ms) != 0 || timeout_ms == 0) {
                fprintf(stderr, "tally submit: --timeout '%s': expected seconds (e.g. 10)\n",
                        optarg);
                return 2;
            }
            break;
        case 'j':
            json = true;
            break;
        case 'X':
            corrupt = true; /* testing: the replicas must reject it as a bad signature */
            break;
        case 'h':
            submit_usage(stdout);
            return 0;
        default:
            fprintf(stderr,
                    "tally submit: unknown or incomplete option '%s' (see tally submit "
                    "--help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tally submit: unexpected argument '%s' (see tally submit --help)\n",
                argv[optind]);
        return 2;
    }
    if (key_path == NULL || to_arg == NULL || amount_arg == NULL) {
        fprintf(stderr, "tally submit: --key, --to and --amount are required (see tally submit "
                        "--help)\n");
        return 2;
    }
    uint64_t amount = 0, nonce = 0;
    if (client_parse_u64(amount_arg, &amount) != 0) {
        fprintf(stderr, "tally submit: --amount '%s': expected a non-negative integer\n",
                amount_arg);
        return 2;
    }
    if (nonce_arg != NULL && (client_parse_u64(nonce_arg, &nonce) != 0 || nonce == 0)) {
        fprintf(stderr, "tally submit: --nonce '%s': expected a positive integer\n", nonce_arg);
        return 2;
    }

    int status = 1;
    struct tally_config cfg = {0};
    struct tally_err err = {0};
    tc_keypair kp = {0};
    tc_pubkey to;
    struct client *cl = NULL;
    struct ledger_tx *txs = NULL;
    struct client_receipt *rec = NULL;
    if (client_config_load(config_path, &cfg, &err) != 0) {
        fprintf(stderr, "tally submit: %s\n", tally_err_text(&err));
        goto out;
    }
    if (tc_keyfile_read(key_path, &kp, &err) != 0) {
        fprintf(stderr, "tally submit: --key: %s\n", tally_err_text(&err));
        goto out;
    }
    if (client_parse_account(to_arg, &to, &err) != 0) {
        fprintf(stderr, "tally submit: --to: %s\n", tally_err_text(&err));
        status = to_arg[0] == '@' ? 1 : 2;
        goto out;
    }
    if (client_open(&cfg, &cl, &err) != 0) {
        fprintf(stderr, "tally submit: %s\n", tally_err_text(&err));
        goto out;
    }
    if (nonce_arg == NULL) {
        struct client_account acct;
        uint64_t t = timeout_ms < 5000 ? timeout_ms : 5000;
        if (client_get_account(cl, &kp.pk, t, &acct, &err) != 0) {
            fprintf(stderr, "tally submit: asking for the account's nonce: %s\n",
                    tally_err_text(&err));
            goto out;
        }
        nonce = acct.nonce + 1;
    }
    txs = calloc(count, sizeof(*txs));
    rec = calloc(count, sizeof(*rec));
    if (txs == NULL || rec == NULL) {
        fprintf(stderr, "tally submit: out of memory\n");
        goto out;
    }
    for (uint64_t i = 0; i < count; i++) {
        struct ledger_tx *tx = &txs[i];
        tx->version = LEDGER_TX_VERSION;
        tx->kind = LEDGER_TX_KIND_TRANSFER;
        tx->from = kp.pk;
        tx->to = to;
        tx->amount = amount;
        tx->nonce = nonce + i;
        ledger_tx_sign(tx, &kp);
        if (corrupt)
            tx->sig.b[0] ^= 0x01;
    }
    struct client_submit_opts so = {.timeout_ms = timeout_ms};
    uint64_t start = mono_now_us();
    int rc = client_submit(cl, txs, count, &so, rec, &err);
    uint64_t elapsed = mono_now_us() - start;
    if (count > 1) {
        status = print_summary(rec, count, elapsed, json);
        if (rc != 0)
            fprintf(stderr, "tally submit: %s\n", tally_err_text(&err));
        goto out;
    }
    if (rc != 0) {
        fprintf(stderr, "tally submit: %s\n", tally_err_text(&err));
        goto out;
    }
    print_receipt(&rec[0], json);
    status = rec[0].result == LEDGER_RESULT_OK ? 0 : 1;
out:
    free(txs);
    free(rec);
    client_close(cl);
    tc_keypair_free(&kp);
    config_free(&cfg);
    return status;
}
