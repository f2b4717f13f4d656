/* tally keygen --out FILE [--json]: write a new Ed25519 key pair to a key file. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "tools/cmds.h"

static void keygen_usage(FILE *out)
{
    fprintf(out, "usage: tally keygen --out FILE [--json]\n"
                 "\n"
                 "Write a new Ed25519 key pair to FILE (mode 0600; an existing file is never\n"
                 "overwritten) and print its public key.\n"
                 "\n"
                 "  --out FILE   key file to create\n"
                 "  --json       print {\"public_key\": HEX, \"key_file\": FILE}\n"
                 "  --help       show this help\n");
}

int cmd_keygen(int argc, char **argv)
{
    static const struct option opts[] = {{"out", required_argument, NULL, 'o'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *out = NULL;
    int json = 0;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+o:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            out = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            keygen_usage(stdout);
            return 0;
        default:
            fprintf(stderr,
                    "tally keygen: option '%s' is unknown or lacks its value (see tally keygen "
                    "--help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tally keygen: unexpected argument '%s' (see tally keygen --help)\n",
                argv[optind]);
        return 2;
    }
    if (out == NULL || out[0] == '\0') {
        fprintf(stderr, "tally keygen: --out FILE is required (see tally keygen --help)\n");
        return 2;
    }

    tc_keypair kp = {0};
    struct tally_err err = {0};
    char hex[2 * TC_PUBKEY_BYTES + 1];
    if (tc_keypair_generate(&kp) != TALLY_OK) {
        fprintf(stderr, "tally keygen: cannot generate a key pair\n");
        return 1;
    }
    int rc = tc_keyfile_write(out, &kp, &err);
    tc_hex_encode(kp.pk.b, TC_PUBKEY_BYTES, hex);
    tc_keypair_free(&kp);
    if (rc != TALLY_OK) {
        fprintf(stderr, "tally keygen: %s\n", tally_err_text(&err));
        return 1;
    }
    if (json) {
        json_t *obj = json_pack("{s:s, s:s}", "public_key", hex, "key_file", out);
        char *text = obj != NULL ? json_dumps(obj, JSON_COMPACT) : NULL;
        json_decref(obj);
        if (text == NULL) {
            fprintf(stderr, "tally keygen: out of memory\n");
            return 1;
        }
        printf("%s\n", text);
        free(text);
    } else {
        printf("%s\n", hex);
    }
    return 0;
}
