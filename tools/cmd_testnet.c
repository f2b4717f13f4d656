/* tally testnet start|status|stop: a local cluster of tallyd processes. */
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "tools/cmds.h"
#include "tools/lib/client.h"
#include "tools/lib/testnet.h"

static void testnet_usage(FILE *out)
{
    fprintf(
        out,
        "usage: tally testnet start  --dir DIR [--nodes 4] [--base-port P] [--wait S] [--json]\n"
        "       tally testnet status --dir DIR [--timeout S] [--json]\n"
        "       tally testnet stop   --dir DIR [--wait S] [--json]\n"
        "\n"
        "start   write a configuration with `tally init` when DIR has no cluster.json,\n"
        "        then start every replica in the background (tallyd next to this\n"
        "        tally binary): data DIR/data-I, log DIR/replica-I.log, pid file\n"
        "        DIR/replica-I.pid; wait until every replica answers (default 20 s).\n"
        "status  the status table of DIR's cluster (see tally status).\n"
        "stop    SIGTERM every replica from its pid file, wait (default 10 s), then\n"
        "        SIGKILL the ones still running.\n"
        "\n"
        "  --dir DIR        the testnet directory (required)\n"
        "  --nodes N        replicas for a new configuration (default 4)\n"
        "  --base-port P    first port for a new configuration (default: tally init's)\n"
        "  --wait S         seconds to wait for start or stop\n"
        "  --timeout S      seconds to wait for status answers (default 1)\n"
        "  --json           machine-readable output\n"
        "  --help           show this help\n");
}

int cmd_testnet(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "tally testnet: expected an action: start, status or stop (see tally "
                        "testnet --help)\n");
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        testnet_usage(stdout);
        return 0;
    }
    const char *action = argv[1];
    if (strcmp(action, "start") != 0 && strcmp(action, "status") != 0 &&
        strcmp(action, "stop") != 0) {
        fprintf(stderr, "tally testnet: unknown action '%s' (start, status or stop)\n", action);
        return 2;
    }
    static const struct option opts[] = {{"dir", required_argument, NULL, 'd'},
                                         {"nodes", required_argument, NULL, 'n'},
                                         {"base-port", required_argument, NULL, 'p'},
                                         {"wait", required_argument, NULL, 'w'},
                                         {"timeout", required_argument, NULL, 'T'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *dir = NULL;
    uint64_t nodes = 4, base_port = 0, wait_ms = 0, timeout_ms = 1000;
    bool json = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc - 1, argv + 1, "d:n:p:w:T:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'n':
            if (client_parse_u64(optarg, &nodes) != 0 || nodes < 4 || nodes > CONFIG_MAX_REPLICAS ||
                (nodes - 1) % 3 != 0) {
                fprintf(stderr,
                        "tally testnet: --nodes '%s': n must be 3f+1 with f >= 1 (4, 7, 10, 13 "
                        "or 16)\n",
                        optarg);
                return 2;
            }
            break;
        case 'p':
            if (client_parse_u64(optarg, &base_port) != 0 || base_port == 0 || base_port > 65535) {
                fprintf(stderr, "tally testnet: --base-port '%s': expected 1..65535\n", optarg);
                return 2;
            }
            break;
        case 'w':
            if (client_parse_seconds(optarg, &wait_ms) != 0) {
                fprintf(stderr, "tally testnet: --wait '%s': expected seconds\n", optarg);
                return 2;
            }
            break;
        case 'T':
            if (client_parse_seconds(optarg, &timeout_ms) != 0 || timeout_ms == 0) {
                fprintf(stderr, "tally testnet: --timeout '%s': expected seconds\n", optarg);
                return 2;
            }
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            testnet_usage(stdout);
            return 0;
        default:
            fprintf(stderr,
                    "tally testnet: unknown or incomplete option '%s' (see tally testnet "
                    "--help)\n",
                    argv[optind]);
            return 2;
        }
    }
    if (optind < argc - 1) {
        fprintf(stderr, "tally testnet: unexpected argument '%s' (see tally testnet --help)\n",
                argv[optind + 1]);
        return 2;
    }
    if (dir == NULL) {
        fprintf(stderr, "tally testnet %s: --dir DIR is required\n", action);
        return 2;
    }
    if (strcmp(action, "start") == 0) {
        struct testnet_start_opts o = {.dir = dir,
                                       .nodes = (uint32_t)nodes,
                                       .base_port = (uint32_t)base_port,
                                       .wait_ms = wait_ms ? wait_ms : 20000,
                                       .json = json};
        return testnet_start(&o);
    }
    if (strcmp(action, "stop") == 0)
        return testnet_stop(dir, wait_ms ? wait_ms : 10000, json);

    char cluster[PATH_MAX];
    if (snprintf(cluster, sizeof(cluster), "%s/cluster.json", dir) >= (int)sizeof(cluster)) {
        fprintf(stderr, "tally testnet: --dir: path too long\n");
        return 2;
    }
    struct tally_config cfg = {0};
    struct tally_err err = {0};
    if (config_load(cluster, &cfg, &err) != 0) {
        fprintf(stderr, "tally testnet status: %s\n", tally_err_text(&err));
        return 1;
    }
    uint32_t up = testnet_print_status(&cfg, json, timeout_ms);
    int status = up == cfg.n ? 0 : 1;
    config_free(&cfg);
    return status;
}
