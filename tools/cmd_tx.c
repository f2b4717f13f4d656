/* tally tx: where a transaction is and its result, from f+1 matching replies. */
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "ledger/tx.h"
#include "tools/cmds.h"
#include "tools/lib/client.h"

static void tx_usage(FILE *out)
{
    fprintf(out, "usage: tally tx [--config CLUSTER] HASH [--timeout S] [--json]\n"
                 "\n"
                 "Look up the transaction with hash HASH (64 hex chars): the block it is in,\n"
                 "its index there and its recorded result, as f+1 replicas agree.\n"
                 "\n"
                 "  --config CLUSTER  cluster.json (default ./testnet/cluster.json)\n"
                 "  --timeout S       seconds to wait (default 5)\n"
                 "  --json            print {\"tx_hash\", \"found\", \"height\", \"index\", "
                 "\"result\", ...}\n"
                 "  --help            show this help\n"
                 "\n"
                 "Exit status: 0 found, 1 not found or an error, 2 usage error.\n");
}

int cmd_tx(int argc, char **argv)
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
                fprintf(stderr, "tally tx: --timeout '%s': expected seconds\n", optarg);
                return 2;
            }
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            tx_usage(stdout);
            return 0;
        default:
            fprintf(stderr, "tally tx: unknown or incomplete option '%s' (see tally tx --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "tally tx: expected one HASH (see tally tx --help)\n");
        return 2;
    }
    int status = 1;
    struct tally_config cfg = {0};
    struct tally_err err = {0};
    struct client *cl = NULL;
    tc_hash h;
    if (client_parse_hash(argv[optind], &h, &err) != 0) {
        fprintf(stderr, "tally tx: %s\n", tally_err_text(&err));
        return 2;
    }
    if (client_config_load(config_path, &cfg, &err) != 0 || client_open(&cfg, &cl, &err) != 0) {
        fprintf(stderr, "tally tx: %s\n", tally_err_text(&err));
        goto out;
    }
    struct client_tx_info t;
    if (client_get_tx(cl, &h, timeout_ms, &t, &err) != 0) {
        fprintf(stderr, "tally tx: %s\n", tally_err_text(&err));
        goto out;
    }
    char hex[65];
    tc_hex_encode(h.b, TC_HASH_BYTES, hex);
    if (json) {
        json_t *o = t.found ? json_pack("{s:s, s:b, s:I, s:I, s:s, s:b, s:s, s:I}", "tx_hash", hex,
                                        "found", 1, "height", (json_int_t)t.height, "index",
                                        (json_int_t)t.index, "result", ledger_result_name(t.result),
                                        "ok", t.result == LEDGER_RESULT_OK, "reason",
                                        ledger_result_text(t.result), "ledger_height",
                                        (json_int_t)t.ledger_height)
                            : json_pack("{s:s, s:b, s:I}", "tx_hash", hex, "found", 0,
                                        "ledger_height", (json_int_t)t.ledger_height);
        char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
        if (text != NULL)
            printf("%s\n", text);
        free(text);
        json_decref(o);
    } else if (t.found) {
        printf("tx      %s\nheight  %llu\nindex   %u\nresult  %s\n", hex,
               (unsigned long long)t.height, t.index,
               t.result == LEDGER_RESULT_OK ? "ok" : ledger_result_text(t.result));
    } else {
        printf("tx %s: not found (ledger height %llu)\n", hex, (unsigned long long)t.ledger_height);
    }
    status = t.found ? 0 : 1;
out:
    client_close(cl);
    config_free(&cfg);
    return status;
}
