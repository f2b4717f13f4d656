/* Writes the fuzzers' seed corpus: valid transactions, blocks and messages of
 * every kind, and sample configs, into tests/fuzz/corpus/NAME/. Run by
 * `make fuzz-corpus`; the output is committed so a fuzz run starts from
 * inputs that reach deep into each decoder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ledger/block.h"
#include "ledger/ledger.h"
#include "src/msg.h"

static void put(const char *target, const char *name, const void *data, size_t len)
{
    char path[256];
    snprintf(path, sizeof(path), "tests/fuzz/corpus/%s", target);
    mkdir("tests/fuzz/corpus", 0755);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "tests/fuzz/corpus/%s/%s", target, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

static void make_tx(struct ledger_tx *tx, const tc_keypair *from, const tc_pubkey *to,
                    uint64_t amount, uint64_t nonce)
{
    memset(tx, 0, sizeof(*tx));
    tx->version = LEDGER_TX_VERSION;
    tx->kind = LEDGER_TX_KIND_TRANSFER;
    tx->from = from->pk;
    tx->to = *to;
    tx->amount = amount;
    tx->nonce = nonce;
    ledger_tx_sign(tx, from);
}

int main(void)
{
    struct tally_err err = {0};
    tc_keypair a = {0}, b = {0};
    uint8_t seed[TC_SEED_BYTES] = {1};
    if (tc_init() != TALLY_OK || tc_keypair_from_seed(&a, seed) != TALLY_OK)
        return 1;
    seed[0] = 2;
    if (tc_keypair_from_seed(&b, seed) != TALLY_OK)
        return 1;

    uint8_t txs[3 * LEDGER_TX_BYTES];
    struct ledger_tx tx;
    make_tx(&tx, &a, &b.pk, 10, 1);
    ledger_tx_encode(&tx, txs);
    make_tx(&tx, &a, &b.pk, 20, 2);
    ledger_tx_encode(&tx, txs + LEDGER_TX_BYTES);
    make_tx(&tx, &b, &a.pk, 5, 1);
    ledger_tx_encode(&tx, txs + 2 * LEDGER_TX_BYTES);
    put("fuzz_tx", "transfer", txs, LEDGER_TX_BYTES);

    /* Blocks: genesis and one block of three transfers, from a real ledger. */
    char dir[] = "/tmp/tally-corpus-XXXXXX";
    struct ledger *l = NULL;
    struct ledger_open_opts opts = {.in_memory = true, .sync = false};
    struct ledger_genesis_account accts[2] = {{a.pk, 1000}, {b.pk, 1000}};
    struct ledger_block_result res;
    if (mkdtemp(dir) == NULL || ledger_open_opts(dir, &opts, &l, &err) != TALLY_OK ||
        ledger_init_genesis(l, accts, 2, &err) != TALLY_OK ||
        ledger_apply_block(l, 1, txs, 3, &res, &err) != TALLY_OK) {
        fprintf(stderr, "ledger: %s\n", tally_err_text(&err));
        return 1;
    }
    for (uint64_t h = 0; h <= 1; h++) {
        uint8_t *bytes = NULL;
        size_t len = 0;
        bool found = false;
        if (ledger_get_block(l, h, &bytes, &len, &found, &err) != TALLY_OK || !found)
            return 1;
        put("fuzz_block", h == 0 ? "genesis" : "block1", bytes, len);
        free(bytes);
    }
    ledger_close(l);
    rmdir(dir);

    /* Messages of every type. */
    struct msg_buf m;
    struct msg_signer signer = msg_signer_keypair(&a);
    struct msg_batch batch = {.count = 3, .tx_bytes = txs};
    struct msg_reply_entry entries[2] = {{res.tx_hashes[0], 0}, {res.tx_hashes[1], 3}};
    tc_hash digest;
    msg_batch_digest(&batch, &digest);
    msg_buf_init(&m);
#define EMIT(name, call)                                                                           \
    do {                                                                                           \
        msg_buf_reset(&m);                                                                         \
        if ((call) != TALLY_OK)                                                                    \
            return 1;                                                                              \
        put("fuzz_msg", name, m.data, m.len);                                                      \
    } while (0)
    EMIT("request", msg_encode_request(&m, &batch));
    EMIT("pre_prepare", msg_encode_pre_prepare(&m, 0, 0, 1, &batch, &signer));
    EMIT("prepare", msg_encode_phase(&m, MSG_PREPARE, 1, 0, 1, &digest, &signer));
    EMIT("commit", msg_encode_phase(&m, MSG_COMMIT, 2, 0, 1, &digest, &signer));
    EMIT("reply", msg_encode_reply(&m, 3, 0, 1, &res.block_hash, entries, 2, &signer));
    EMIT("query", msg_encode_query(&m, MSG_QUERY_BALANCE, 7, a.pk.b));
    EMIT("query_reply",
         msg_encode_query_reply(&m, 1, MSG_QUERY_BALANCE, 7, a.pk.b, 1, 1, 970, 2, 0, &signer));
    EMIT("status_req", msg_encode_status_req(&m));
    EMIT("status_reply", msg_encode_status_reply(&m, 0, "{\"view\":0}", 10, &signer));
#undef EMIT
    msg_buf_free(&m);

    /* Configs: cluster.json NUL genesis.json, as fuzz_config expects. */
    char pk_hex[4][65];
    for (int i = 0; i < 4; i++) {
        seed[0] = (uint8_t)(10 + i);
        tc_keypair r = {0};
        if (tc_keypair_from_seed(&r, seed) != TALLY_OK)
            return 1;
        tc_hex_encode(r.pk.b, 32, pk_hex[i]);
        tc_keypair_free(&r);
    }
    char a_hex[65];
    tc_hex_encode(a.pk.b, 32, a_hex);
    char cfg[4096];
    int n = snprintf(cfg, sizeof(cfg),
                     "{\"cluster_name\":\"fuzz\",\"genesis\":\"genesis.json\",\"replicas\":["
                     "{\"id\":0,\"peer_address\":\"tcp://127.0.0.1:27000\",\"client_address\":"
                     "\"tcp://127.0.0.1:27001\",\"public_key\":\"%s\"},"
                     "{\"id\":1,\"peer_address\":\"tcp://127.0.0.1:27002\",\"client_address\":"
                     "\"tcp://127.0.0.1:27003\",\"public_key\":\"%s\"},"
                     "{\"id\":2,\"peer_address\":\"tcp://127.0.0.1:27004\",\"client_address\":"
                     "\"tcp://127.0.0.1:27005\",\"public_key\":\"%s\"},"
                     "{\"id\":3,\"peer_address\":\"tcp://127.0.0.1:27006\",\"client_address\":"
                     "\"tcp://127.0.0.1:27007\",\"public_key\":\"%s\"}],"
                     "\"checkpoint_interval\":128,\"log_window\":512}",
                     pk_hex[0], pk_hex[1], pk_hex[2], pk_hex[3]);
    n++; /* keep the NUL separator */
    n += snprintf(cfg + n, sizeof(cfg) - (size_t)n,
                  "{\"accounts\":[{\"public_key\":\"%s\",\"balance\":1000}]}", a_hex);
    put("fuzz_config", "testnet", cfg, (size_t)n);
    tc_keypair_free(&a);
    tc_keypair_free(&b);
    printf("corpus written to tests/fuzz/corpus/\n");
    return 0;
}
