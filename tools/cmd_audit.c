/* tally audit --data DIR [--config CLUSTER] [--json] [--quiet]: verify a data
 * directory offline. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "crypto/crypto.h"
#include "ledger/audit.h"
#include "src/mono.h"
#include "tools/cmds.h"

static void audit_usage(FILE *out)
{
    fprintf(out, "usage: tally audit --data DIR [--config CLUSTER] [--json] [--quiet]\n"
                 "                   [--workers N]\n"
                 "\n"
                 "Verify a replica's data directory from genesis: the hash chain, every\n"
                 "transaction's signature, every recorded result and state digest (by\n"
                 "re-executing all transactions), the transaction index, the stored\n"
                 "accounts and every checkpoint certificate (its block hash and state\n"
                 "digest against the chain; with --config its 2f+1 replica signatures too).\n"
                 "Stops at the first problem and names its height.\n"
                 "Audit a stopped replica or a copy: a running one is seen as of the start.\n"
                 "\n"
                 "  --data DIR        the data directory (tallyd's --data)\n"
                 "  --config CLUSTER  cluster.json: also verify the certificates' signatures\n"
                 "                    against its replicas' keys (quorum 2f+1)\n"
                 "  --json            print the summary as one JSON object\n"
                 "  --quiet           print nothing but a problem (no progress, no summary)\n"
                 "  --workers N       worker threads: signatures, hashes, state digests\n"
                 "                    (default: all CPUs)\n"
                 "  --help            show this help\n"
                 "\n"
                 "Exit status: 0 intact, 1 a problem was found or the audit could not run,\n"
                 "2 usage error.\n");
}

struct progress {
    bool enabled;
    bool tty;
    bool printed;
    double last;
};

static void on_progress(void *ctx, uint64_t height, uint64_t head, uint64_t txs)
{
    struct progress *p = ctx;
    double now = mono_now_s();
    if (!p->enabled || now - p->last < 1.0)
        return;
    p->last = now;
    p->printed = true;
    fprintf(stderr, "%saudit: block %llu of %llu, %llu transactions%s", p->tty ? "\r" : "",
            (unsigned long long)height, (unsigned long long)head, (unsigned long long)txs,
            p->tty ? "   " : "\n");
}

static void print_json(const struct ledger_audit_report *r)
{
    char head[65], digest[65], genesis[65];
    tc_hex_encode(r->head_hash.b, TC_HASH_BYTES, head);
    tc_hex_encode(r->state_digest.b, TC_HASH_BYTES, digest);
    tc_hex_encode(r->genesis_hash.b, TC_HASH_BYTES, genesis);
    json_t *o =
        json_pack("{s:b, s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:f, s:f}", "intact", r->intact,
                  "blocks", (json_int_t)r->blocks, "transactions", (json_int_t)r->txs, "accounts",
                  (json_int_t)r->accounts, "head_height", (json_int_t)r->head_height, "head_hash",
                  head, "state_digest", digest, "genesis_hash", genesis, "seconds", r->seconds,
                  "tx_per_sec", r->tx_per_sec);
    if (o != NULL) {
        json_object_set_new(o, "certificates", json_integer((json_int_t)r->certs));
        json_object_set_new(o, "last_certified_height",
                            r->last_cert_height == LEDGER_AUDIT_NO_HEIGHT
                                ? json_null()
                                : json_integer((json_int_t)r->last_cert_height));
        json_object_set_new(o, "certificate_signatures_checked",
                            json_boolean(r->cert_signatures_checked));
    }
    if (o != NULL && !r->intact) {
        json_object_set_new(o, "problem", json_string(r->problem));
        if (r->problem_height != LEDGER_AUDIT_NO_HEIGHT)
            json_object_set_new(o, "problem_height", json_integer((json_int_t)r->problem_height));
    }
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    if (text != NULL)
        printf("%s\n", text);
    free(text);
    json_decref(o);
}

static void print_text(const struct ledger_audit_report *r)
{
    char head[65], digest[65], genesis[65];
    tc_hex_encode(r->head_hash.b, TC_HASH_BYTES, head);
    tc_hex_encode(r->state_digest.b, TC_HASH_BYTES, digest);
    tc_hex_encode(r->genesis_hash.b, TC_HASH_BYTES, genesis);
    printf("ledger:        %s\n", r->intact ? "intact" : "PROBLEM FOUND");
    printf("blocks:        %llu (genesis + %llu)\n", (unsigned long long)r->blocks,
           (unsigned long long)(r->blocks ? r->blocks - 1 : 0));
    printf("transactions:  %llu\n", (unsigned long long)r->txs);
    printf("accounts:      %llu\n", (unsigned long long)r->accounts);
    printf("head height:   %llu\n", (unsigned long long)r->head_height);
    printf("head hash:     %s\n", head);
    printf("state digest:  %s\n", digest);
    printf("genesis hash:  %s\n", genesis);
    if (r->certs == 0)
        printf("certificates:  none\n");
    else
        printf("certificates:  %llu, the last at height %llu (signatures %s)\n",
               (unsigned long long)r->certs, (unsigned long long)r->last_cert_height,
               r->cert_signatures_checked ? "verified" : "not verified: no --config");
    printf("time:          %.3f s (%.0f tx/s)\n", r->seconds, r->tx_per_sec);
}

int cmd_audit(int argc, char **argv)
{
    static const struct option opts[] = {{"data", required_argument, NULL, 'd'},
                                         {"config", required_argument, NULL, 'c'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"workers", required_argument, NULL, 'w'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *dir = NULL, *cluster = NULL;
    int json = 0, quiet = 0;
    long workers = 0;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+d:c:jqw:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'c':
            cluster = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'w': {
            char *end;
            workers = strtol(optarg, &end, 10);
            if (*end != '\0' || workers < 1 || workers > 64) {
                fprintf(stderr, "tally audit: --workers takes a number from 1 to 64\n");
                return 2;
            }
            break;
        }
        case 'h':
            audit_usage(stdout);
            return 0;
        default:
            fprintf(stderr,
                    "tally audit: option '%s' is unknown or lacks its value (see tally audit "
                    "--help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tally audit: unexpected argument '%s' (see tally audit --help)\n",
                argv[optind]);
        return 2;
    }
    if (dir == NULL || dir[0] == '\0') {
        fprintf(stderr, "tally audit: --data DIR is required (see tally audit --help)\n");
        return 2;
    }

    struct tally_err err = {0};
    struct tally_config cfg;
    tc_pubkey keys[CONFIG_MAX_REPLICAS];
    config_set_defaults(&cfg);
    if (cluster != NULL) {
        if (config_load(cluster, &cfg, &err) != TALLY_OK) {
            fprintf(stderr, "tally audit: %s\n", tally_err_text(&err));
            config_free(&cfg);
            return 1;
        }
        for (uint32_t i = 0; i < cfg.n; i++)
            keys[i] = cfg.replicas[i].pk;
    }
    /* A missing or foreign data directory is named before the audit starts. */
    if (config_check_data_dir(cluster != NULL ? &cfg : NULL, cluster, dir, false, &err) !=
        TALLY_OK) {
        fprintf(stderr, "tally audit: %s\n", tally_err_text(&err));
        config_free(&cfg);
        return 1;
    }
    struct progress prog = {.enabled = !quiet, .tty = isatty(STDERR_FILENO), .last = mono_now_s()};
    struct ledger_audit_opts aopts = {
        .progress = on_progress, .progress_ctx = &prog, .workers = (unsigned)workers};
    if (cluster != NULL) {
        aopts.cert_keys = keys;
        aopts.cert_n = cfg.n;
        aopts.cert_quorum = config_quorum(&cfg);
    }
    struct ledger_audit_report rep;
    int rc = ledger_audit(dir, &aopts, &rep, &err);
    config_free(&cfg);
    if (prog.tty && prog.printed)
        fprintf(stderr, "\n");
    if (rc != TALLY_OK) {
        fprintf(stderr, "tally audit: %s\n", tally_err_text(&err));
        return 1;
    }
    if (!rep.intact)
        fprintf(stderr, "tally audit: %s: %s\n", dir, rep.problem);
    if (json)
        print_json(&rep);
    else if (!quiet)
        print_text(&rep);
    return rep.intact ? 0 : 1;
}
