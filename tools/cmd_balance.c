/* tally balance: an account's balance and nonce from f+1 matching replies. */
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "tools/cmds.h"
#include "tools/lib/client.h"

static void balance_usage(FILE *out)
{
    fprintf(out, "usage: tally balance [--config CLUSTER] ACCOUNT [--timeout S] [--json]\n"
                 "\n"
                 "Ask every replica for ACCOUNT's balance and nonce and print the answer\n"
                 "f+1 replicas agree on. ACCOUNT is 64 hex chars or @KEYFILE.\n"
                 "\n"
                 "  --config CLUSTER  cluster.json (default ./testnet/cluster.json)\n"
                 "  --timeout S       seconds to wait (default 5)\n"
                 "  --json            print {\"account\", \"found\", \"balance\", \"nonce\", "
                 "\"height\"}\n"
                 "  --help            show this help\n"
                 "\n"
                 "Exit status: 0 found, 1 not found or an error, 2 usage error.\n");
}

int cmd_balance(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"timeout", required_argument, NULL, 'T'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config_path = NULL;
    uint64_t timeout_ms = 5000;
    bool json = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "c:T:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 'T':
            if (client_parse_seconds(optarg, &timeout_ms) != 0 || timeout_ms == 0) {
                fprintf(stderr, "tally balance: --timeout '%s': expected seconds\n", optarg);
                return 2;
            }
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            balance_usage(stdout);
            return 0;
        default:
            fprintf(stderr,
                    "tally balance: unknown or incomplete option '%s' (see tally balance "
                    "--help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "tally balance: expected one ACCOUNT (see tally balance --help)\n");
        return 2;
    }
    int status = 1;
    struct tally_config cfg = {0};
    struct tally_err err = {0};
    struct client *cl = NULL;
    tc_pubkey pk;
    if (client_parse_account(argv[optind], &pk, &err) != 0) {
        fprintf(stderr, "tally balance: %s\n", tally_err_text(&err));
        return argv[optind][0] == '@' ? 1 : 2;
    }
    if (client_config_load(config_path, &cfg, &err) != 0 || client_open(&cfg, &cl, &err) != 0) {
        fprintf(stderr, "tally balance: %s\n", tally_err_text(&err));
        goto out;
    }
    struct client_account a;
    if (client_get_account(cl, &pk, timeout_ms, &a, &err) != 0) {
        fprintf(stderr, "tally balance: %s\n", tally_err_text(&err));
        goto out;
    }
    char hex[65];
    tc_hex_encode(pk.b, TC_PUBKEY_BYTES, hex);
    if (json) {
        json_t *o = json_pack("{s:s, s:b, s:I, s:I, s:I}", "account", hex, "found", a.found,
                              "balance", (json_int_t)a.balance, "nonce", (json_int_t)a.nonce,
                              "height", (json_int_t)a.height);
        char *t = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
        if (t != NULL)
            printf("%s\n", t);
        free(t);
        json_decref(o);
    } else if (a.found) {
        printf("account %s\nbalance %llu\nnonce   %llu\nheight  %llu\n", hex,
               (unsigned long long)a.balance, (unsigned long long)a.nonce,
               (unsigned long long)a.height);
    } else {
        printf("account %s: not found (no funds ever received)\n", hex);
    }
    status = a.found ? 0 : 1;
out:
    client_close(cl);
    config_free(&cfg);
    return status;
}
