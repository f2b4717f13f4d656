/* tally export --data DIR [--out FILE]: blocks, transactions and checkpoint
 * certificates as JSON lines. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "crypto/crypto.h"
#include "ledger/block.h"
#include "ledger/ledger.h"
#include "tools/cmds.h"
#include "tools/lib/checkpoint.h"

static void export_usage(FILE *out)
{
    fprintf(
        out,
        "usage: tally export --data DIR [--out FILE]\n"
        "\n"
        "Write a data directory's blocks and transactions as JSON lines, in height\n"
        "order: one object per block, followed by one per transaction (genesis:\n"
        "one per allocation); then one per checkpoint certificate, in height order.\n"
        "Heights, amounts, balances and nonces are JSON integers, or decimal strings\n"
        "when above 2^63-1. Export a stopped replica or a copy.\n"
        "\n"
        "  {\"type\":\"block\",\"height\",\"hash\",\"prev_hash\",\"tx_root\",\"results_hash\",\n"
        "   \"state_digest\",\"tx_count\"}\n"
        "  {\"type\":\"tx\",\"height\",\"index\",\"hash\",\"from\",\"to\",\"amount\",\"nonce\",\n"
        "   \"signature\",\"result\"}   (malformed: \"bytes\" instead of the fields)\n"
        "  {\"type\":\"allocation\",\"height\":0,\"index\",\"account\",\"balance\"}\n"
        "  {\"type\":\"checkpoint\",\"height\",\"block_hash\",\"state_digest\",\n"
        "   \"signatures\":[{\"signer\",\"sig\"},...]}   (tally verify-checkpoint --export)\n"
        "\n"
        "  --data DIR    the data directory\n"
        "  --out FILE    write here instead of standard output (a new file: an\n"
        "                existing one is never overwritten)\n"
        "  --help        show this help\n");
}

static json_t *json_u64(uint64_t v)
{
    if (v <= (uint64_t)INT64_MAX)
        return json_integer((json_int_t)v);
    char buf[24];
    snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
    return json_string(buf);
}

static void set_hex(json_t *o, const char *key, const uint8_t *b, size_t len)
{
    char hex[2 * LEDGER_TX_BYTES + 1];
    tc_hex_encode(b, len, hex);
    json_object_set_new(o, key, json_string(hex));
}

static int emit(FILE *f, json_t *o)
{
    int rc = o != NULL ? json_dumpf(o, f, JSON_COMPACT | JSON_PRESERVE_ORDER) : -1;
    json_decref(o);
    if (rc != 0 || fputc('\n', f) == EOF)
        return -1;
    return 0;
}

static int export_block(FILE *f, const struct ledger_block *b)
{
    tc_hash hash;
    ledger_block_header_hash(&b->h, &hash);
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("block"));
    json_object_set_new(o, "height", json_u64(b->h.height));
    set_hex(o, "hash", hash.b, TC_HASH_BYTES);
    set_hex(o, "prev_hash", b->h.prev_hash.b, TC_HASH_BYTES);
    set_hex(o, "tx_root", b->h.tx_root.b, TC_HASH_BYTES);
    set_hex(o, "results_hash", b->h.results_hash.b, TC_HASH_BYTES);
    set_hex(o, "state_digest", b->h.state_digest.b, TC_HASH_BYTES);
    json_object_set_new(o, "tx_count", json_integer(b->h.tx_count));
    if (emit(f, o) != 0)
        return -1;
    for (uint32_t i = 0; i < b->h.tx_count; i++) {
        const uint8_t *item = b->items + (size_t)i * b->item_bytes;
        o = json_object();
        if (b->h.height == 0) {
            tc_pubkey pk;
            uint64_t balance;
            ledger_genesis_entry_decode(item, &pk, &balance);
            json_object_set_new(o, "type", json_string("allocation"));
            json_object_set_new(o, "height", json_integer(0));
            json_object_set_new(o, "index", json_integer(i));
            set_hex(o, "account", pk.b, TC_PUBKEY_BYTES);
            json_object_set_new(o, "balance", json_u64(balance));
        } else {
            struct ledger_tx tx;
            tc_hash h;
            ledger_tx_hash_bytes(item, &h);
            json_object_set_new(o, "type", json_string("tx"));
            json_object_set_new(o, "height", json_u64(b->h.height));
            json_object_set_new(o, "index", json_integer(i));
            set_hex(o, "hash", h.b, TC_HASH_BYTES);
            if (ledger_tx_decode(item, LEDGER_TX_BYTES, &tx) == TALLY_OK) {
                set_hex(o, "from", tx.from.b, TC_PUBKEY_BYTES);
                set_hex(o, "to", tx.to.b, TC_PUBKEY_BYTES);
                json_object_set_new(o, "amount", json_u64(tx.amount));
                json_object_set_new(o, "nonce", json_u64(tx.nonce));
                set_hex(o, "signature", tx.sig.b, TC_SIG_BYTES);
            } else {
                set_hex(o, "bytes", item, LEDGER_TX_BYTES);
            }
            json_object_set_new(o, "result", json_string(ledger_result_name(b->results[i])));
        }
        if (emit(f, o) != 0)
            return -1;
    }
    return 0;
}

int cmd_export(int argc, char **argv)
{
    static const struct option opts[] = {{"data", required_argument, NULL, 'd'},
                                         {"out", required_argument, NULL, 'o'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *dir = NULL, *out = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+d:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'h':
            export_usage(stdout);
            return 0;
        default:
            fprintf(stderr,
                    "tally export: option '%s' is unknown or lacks its value (see tally export "
                    "--help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tally export: unexpected argument '%s' (see tally export --help)\n",
                argv[optind]);
        return 2;
    }
    if (dir == NULL || dir[0] == '\0') {
        fprintf(stderr, "tally export: --data DIR is required (see tally export --help)\n");
        return 2;
    }

    int status = 1;
    struct ledger *l = NULL;
    struct tally_err err = {0};
    FILE *f = stdout;
    uint8_t *bytes = NULL;
    bool created = false;
    struct ledger_open_opts o = {.read_only = true};
    if (config_check_data_dir(NULL, NULL, dir, false, &err) != TALLY_OK ||
        ledger_open_opts(dir, &o, &l, &err) != TALLY_OK) {
        fprintf(stderr, "tally export: %s\n", tally_err_text(&err));
        goto out;
    }
    if (!ledger_has_genesis(l)) {
        fprintf(stderr, "tally export: data directory %s has no genesis block\n", dir);
        goto out;
    }
    if (out != NULL) {
        /* Never over an existing file; removed again if the export fails. */
        int fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 && errno == EEXIST) {
            fprintf(stderr, "tally export: %s already exists; not overwriting it\n", out);
            goto out;
        }
        if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
            fprintf(stderr, "tally export: cannot create %s: %m\n", out);
            if (fd >= 0) {
                close(fd);
                unlink(out);
            }
            f = stdout;
            goto out;
        }
        created = true;
    }
    uint64_t head = ledger_height(l);
    for (uint64_t h = 0; h <= head; h++) {
        size_t len;
        bool found;
        struct ledger_block b;
        if (ledger_get_block(l, h, &bytes, &len, &found, &err) != TALLY_OK) {
            fprintf(stderr, "tally export: %s\n", tally_err_text(&err));
            goto out;
        }
        if (!found) {
            fprintf(stderr, "tally export: %s: block %llu is missing\n", dir,
                    (unsigned long long)h);
            goto out;
        }
        if (ledger_block_decode(bytes, len, &b, &err) != TALLY_OK) {
            fprintf(stderr, "tally export: %s: block %llu: %s\n", dir, (unsigned long long)h,
                    tally_err_text(&err));
            goto out;
        }
        if (export_block(f, &b) != 0) {
            fprintf(stderr, "tally export: writing %s failed: %m\n", out ? out : "output");
            goto out;
        }
        free(bytes);
        bytes = NULL;
    }
    /* Checkpoint certificates, in height order. */
    for (uint64_t from = 0;;) {
        struct ledger_cert cert;
        bool found = false;
        if (ledger_find_cert_from(l, from, &cert, &found, &err) != TALLY_OK) {
            fprintf(stderr, "tally export: %s\n", tally_err_text(&err));
            goto out;
        }
        if (!found)
            break;
        if (emit(f, checkpoint_cert_to_json(&cert)) != 0) {
            fprintf(stderr, "tally export: writing %s failed: %m\n", out ? out : "output");
            goto out;
        }
        if (cert.ck.height == UINT64_MAX)
            break;
        from = cert.ck.height + 1;
    }
    if (fflush(f) != 0) {
        fprintf(stderr, "tally export: writing %s failed: %m\n", out ? out : "output");
        goto out;
    }
    status = 0;
out:
    free(bytes);
    if (f != stdout && f != NULL && fclose(f) != 0 && status == 0) {
        fprintf(stderr, "tally export: writing %s failed: %m\n", out);
        status = 1;
    }
    if (created && status != 0)
        unlink(out);
    ledger_close(l);
    return status;
}
