/* tally verify-checkpoint --config CLUSTER (--data DIR | --export FILE) [--height H] [--json]:
 * check one checkpoint certificate offline. The checks live in tools/lib/checkpoint.c. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "tools/cmds.h"
#include "tools/lib/checkpoint.h"

static void verify_checkpoint_usage(FILE *out)
{
    fprintf(
        out,
        "usage: tally verify-checkpoint --config CLUSTER (--data DIR | --export FILE)\n"
        "                               [--height H] [--json]\n"
        "\n"
        "Check a checkpoint certificate offline: that 2f+1 distinct replicas named in\n"
        "the configuration signed the same checkpoint statement for this chain, that\n"
        "the ledger's genesis is the configuration's, and that the ledger's block at\n"
        "that height has the certified block hash and state digest. Without --height\n"
        "the last certificate is checked.\n"
        "\n"
        "  --config CLUSTER  cluster.json: the replicas' public keys and f\n"
        "  --data DIR        a data directory (opened read-only; works next to a\n"
        "                    running replica, seeing it as of the start)\n"
        "  --export FILE     a file written by `tally export` instead\n"
        "  --height H        the certificate at exactly this height\n"
        "  --json            print {\"height\",\"valid\",\"signers\",\"needed\",\"problem\",...}\n"
        "  --help            show this help\n"
        "\n"
        "Prints \"checkpoint at height H: OK, signed by replicas 0, 1, 3 (3 of 4, 3\n"
        "needed); block HASH state DIGEST\" or \"checkpoint at height H: INVALID: REASON\".\n"
        "\n"
        "Exit status: 0 valid, 1 invalid or the check could not run (no certificate\n"
        "at that height, unreadable input), 2 usage error.\n");
}

static void print_text(const struct checkpoint_verdict *v)
{
    if (!v->valid) {
        printf("checkpoint at height %llu: INVALID: %s\n", (unsigned long long)v->height,
               v->problem);
        return;
    }
    char block[65], state[65];
    tc_hex_encode(v->block_hash.b, TC_HASH_BYTES, block);
    tc_hex_encode(v->state_digest.b, TC_HASH_BYTES, state);
    block[16] = state[16] = '\0';
    printf("checkpoint at height %llu: OK, signed by replicas ", (unsigned long long)v->height);
    for (uint32_t i = 0; i < v->nsigners; i++)
        printf("%s%u", i ? ", " : "", (unsigned)v->signers[i]);
    printf(" (%u of %u, %u needed); block %s state %s\n", (unsigned)v->nsigners,
           (unsigned)v->replicas, (unsigned)v->needed, block, state);
}

static void print_json(const struct checkpoint_verdict *v)
{
    char block[65], state[65];
    tc_hex_encode(v->block_hash.b, TC_HASH_BYTES, block);
    tc_hex_encode(v->state_digest.b, TC_HASH_BYTES, state);
    json_t *signers = json_array();
    for (uint32_t i = 0; i < v->nsigners; i++)
        json_array_append_new(signers, json_integer(v->signers[i]));
    json_t *o =
        json_pack("{s:I, s:b, s:o, s:I, s:I, s:s, s:s, s:o}", "height", (json_int_t)v->height,
                  "valid", v->valid, "signers", signers, "needed", (json_int_t)v->needed,
                  "replicas", (json_int_t)v->replicas, "block_hash", block, "state_digest", state,
                  "problem", v->valid ? json_null() : json_string(v->problem));
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (text != NULL)
        printf("%s\n", text);
    free(text);
    json_decref(o);
}

int cmd_verify_checkpoint(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"data", required_argument, NULL, 'd'},
                                         {"export", required_argument, NULL, 'e'},
                                         {"height", required_argument, NULL, 'H'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *cluster = NULL, *dir = NULL, *export = NULL;
    uint64_t height = 0;
    bool has_height = false;
    int json = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+c:d:e:H:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            cluster = optarg;
            break;
        case 'd':
            dir = optarg;
            break;
        case 'e':
            export = optarg;
            break;
        case 'H': {
            char *end = NULL;
            errno = 0;
            unsigned long long h = strtoull(optarg, &end, 10);
            if (optarg[0] < '0' || optarg[0] > '9' || *end != '\0' || errno != 0) {
                fprintf(stderr,
                        "tally verify-checkpoint: --height takes a block height, not "
                        "'%s'\n",
                        optarg);
                return 2;
            }
            height = (uint64_t)h;
            has_height = true;
            break;
        }
        case 'j':
            json = 1;
            break;
        case 'h':
            verify_checkpoint_usage(stdout);
            return 0;
        default:
            fprintf(stderr,
                    "tally verify-checkpoint: option '%s' is unknown or lacks its value (see "
                    "tally verify-checkpoint --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr,
                "tally verify-checkpoint: unexpected argument '%s' (see tally verify-checkpoint "
                "--help)\n",
                argv[optind]);
        return 2;
    }
    if (cluster == NULL || cluster[0] == '\0') {
        fprintf(stderr, "tally verify-checkpoint: --config CLUSTER is required (see tally "
                        "verify-checkpoint --help)\n");
        return 2;
    }
    if ((dir == NULL) == (export == NULL) || (dir != NULL && dir[0] == '\0') ||
        (export != NULL && export[0] == '\0')) {
        fprintf(stderr, "tally verify-checkpoint: give exactly one of --data DIR and --export "
                        "FILE (see tally verify-checkpoint --help)\n");
        return 2;
    }

    struct tally_config cfg;
    struct tally_err err = {0};
    if (config_load(cluster, &cfg, &err) != TALLY_OK) {
        fprintf(stderr, "tally verify-checkpoint: %s\n", tally_err_text(&err));
        config_free(&cfg);
        return 1;
    }
    if (dir != NULL && config_check_data_dir(&cfg, cluster, dir, false, &err) != TALLY_OK) {
        fprintf(stderr, "tally verify-checkpoint: %s\n", tally_err_text(&err));
        config_free(&cfg);
        return 1;
    }
    struct checkpoint_verdict v;
    const uint64_t *hp = has_height ? &height : NULL;
    int rc = dir != NULL ? checkpoint_verify_data(dir, &cfg, hp, &v, &err)
                         : checkpoint_verify_export(export, &cfg, hp, &v, &err);
    config_free(&cfg);
    if (rc != TALLY_OK) {
        fprintf(stderr, "tally verify-checkpoint: %s\n", tally_err_text(&err));
        return 1;
    }
    if (json)
        print_json(&v);
    else
        print_text(&v);
    return v.valid ? 0 : 1;
}
