/* tally status: each replica's view, sequence, checkpoint, peers and drops. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

#include "tools/cmds.h"
#include "tools/lib/client.h"
#include "tools/lib/testnet.h"

static void status_usage(FILE *out)
{
    fprintf(out, "usage: tally status [--config CLUSTER] [--timeout S] [--json]\n"
                 "\n"
                 "Ask every replica for its status and print one line per replica: id,\n"
                 "client address, up/down, view, primary, last executed sequence, last\n"
                 "stable checkpoint, peers connected, dropped messages, ledger height.\n"
                 "\n"
                 "  --config CLUSTER  cluster.json (default ./testnet/cluster.json)\n"
                 "  --timeout S       seconds to wait for the replicas (default 1)\n"
                 "  --json            print {\"n\", \"f\", \"up\", \"replicas\": [{\"id\", \"up\", "
                 "\"status\"}]}\n"
                 "  --help            show this help\n"
                 "\n"
                 "Exit status: 0 when every replica answered, 1 otherwise, 2 usage error.\n");
}

int cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"timeout", required_argument, NULL, 'T'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config_path = NULL;
    uint64_t timeout_ms = 1000;
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
                fprintf(stderr, "tally status: --timeout '%s': expected seconds\n", optarg);
                return 2;
            }
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            status_usage(stdout);
            return 0;
        default:
            fprintf(stderr,
                    "tally status: unknown or incomplete option '%s' (see tally status --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tally status: unexpected argument '%s' (see tally status --help)\n",
                argv[optind]);
        return 2;
    }
    struct tally_config cfg = {0};
    struct tally_err err = {0};
    if (client_config_load(config_path, &cfg, &err) != 0) {
        fprintf(stderr, "tally status: %s\n", tally_err_text(&err));
        return 1;
    }
    uint32_t up = testnet_print_status(&cfg, json, timeout_ms);
    int status = up == cfg.n ? 0 : 1;
    config_free(&cfg);
    return status;
}
