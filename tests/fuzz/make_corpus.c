/* Writes the fuzzers' seed corpus: valid transactions, blocks, checkpoint
 * certificates, messages of every kind, SP frames and sample configs, into tests/fuzz/corpus/NAME/.
 * Run by `make fuzz-corpus`; the output is committed so a fuzz run starts from inputs that reach
 * deep into each decoder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ledger/block.h"
#include "ledger/cert.h"
#include "ledger/ledger.h"
#include "src/msg.h"
#include "src/spframe.h"
#include "src/statexfer.h"

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

    /* Checkpoint certificates of block 1: signed by a and b (canonical
     * order), by a alone, and the largest, LEDGER_CERT_MAX_SIGS signers. */
    tc_hash chain;
    ledger_genesis_hash(l, &chain);
    struct ledger_cert cert = {.ck = {1, res.block_hash, res.state_digest}, .count = 2};
    cert.sigs[0].signer = a.pk;
    ledger_ckpt_sign(&a, &chain, &cert.ck, &cert.sigs[0].sig);
    cert.sigs[1].signer = b.pk;
    ledger_ckpt_sign(&b, &chain, &cert.ck, &cert.sigs[1].sig);
    ledger_cert_sort(&cert);
    uint8_t cbuf[LEDGER_CERT_MAX_BYTES];
    put("fuzz_cert", "two_signers", cbuf, ledger_cert_encode(&cert, cbuf));
    size_t two_len = ledger_cert_encode(&cert, cbuf);
    uint8_t two_cert[LEDGER_CERT_MAX_BYTES];
    memcpy(two_cert, cbuf, two_len);

    /* State chunks: block 1 complete, and block 1 as a header only. */
    struct stx_writer sw;
    uint8_t *chunk = NULL;
    size_t chunk_len = 0;
    for (int headers_only = 0; headers_only <= 1; headers_only++) {
        uint8_t *bytes = NULL;
        size_t len = 0;
        bool found = false;
        if (ledger_get_block(l, 1, &bytes, &len, &found, &err) != TALLY_OK || !found ||
            stx_writer_begin(&sw, 1u << 20, &cert, 1) != TALLY_OK)
            return 1;
        if (headers_only ? stx_writer_add_header(&sw, bytes) != TALLY_OK
                         : stx_writer_add_block(&sw, bytes, len) != TALLY_OK)
            return 1;
        free(bytes);
        stx_writer_finish(&sw);
        put("fuzz_statexfer", headers_only ? "headers" : "block1", sw.buf, sw.len);
        if (!headers_only) {
            chunk = malloc(sw.len);
            if (chunk == NULL)
                return 1;
            memcpy(chunk, sw.buf, sw.len);
            chunk_len = sw.len;
        }
        stx_writer_free(&sw);
    }
    cert.count = 1;
    cert.sigs[0].signer = a.pk;
    ledger_ckpt_sign(&a, &chain, &cert.ck, &cert.sigs[0].sig);
    put("fuzz_cert", "one_signer", cbuf, ledger_cert_encode(&cert, cbuf));
    cert.count = LEDGER_CERT_MAX_SIGS;
    for (uint32_t i = 0; i < LEDGER_CERT_MAX_SIGS; i++) {
        tc_keypair k = {0};
        seed[0] = (uint8_t)(100 + i);
        if (tc_keypair_from_seed(&k, seed) != TALLY_OK)
            return 1;
        cert.sigs[i].signer = k.pk;
        ledger_ckpt_sign(&k, &chain, &cert.ck, &cert.sigs[i].sig);
        tc_keypair_free(&k);
    }
    seed[0] = 2;
    ledger_cert_sort(&cert);
    put("fuzz_cert", "max_signers", cbuf, ledger_cert_encode(&cert, cbuf));
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
    EMIT("status_active", msg_encode_status_active(&m, 1, 0, 1, 0, 0, 1, &signer));
    tc_sig ssig;
    ledger_ckpt_sign(&a, &chain, &(struct ledger_ckpt){1, res.block_hash, res.state_digest}, &ssig);
    EMIT("checkpoint",
         msg_encode_checkpoint(&m, 1, 4, &res.block_hash, &res.state_digest, &ssig, &signer));
    EMIT("state_req", msg_encode_state_req(&m, 2, 1, 4, &signer));
    EMIT("state_resp", msg_encode_state_resp(&m, 3, 1, chunk, chunk_len, &signer));
    /* A VIEW-CHANGE with a checkpoint and one prepared entry, and a NEW-VIEW
     * that embeds it with one re-proposal. */
    struct msg_buf body, vc;
    msg_buf_init(&body);
    msg_buf_init(&vc);
    bool ok = msg_put_u64(&body, 1) && msg_put_u64(&body, 4) &&
              msg_put_u32(&body, (uint32_t)two_len) && msg_put(&body, two_cert, two_len) &&
              msg_put_u32(&body, 1) && msg_put_u64(&body, 0) && msg_put_u64(&body, 5) &&
              msg_put(&body, digest.b, TC_HASH_BYTES) && msg_put_u32(&body, 3) &&
              msg_put(&body, txs, 3 * LEDGER_TX_BYTES) && msg_put_u32(&body, 2);
    for (uint16_t i = 1; i <= 2 && ok; i++)
        ok = msg_put_u16(&body, i) && msg_put(&body, ssig.b, TC_SIG_BYTES);
    if (!ok || msg_encode_body(&vc, MSG_VIEW_CHANGE, 2, body.data, body.len, &signer) != TALLY_OK)
        return 1;
    put("fuzz_msg", "view_change", vc.data, vc.len);
    msg_buf_reset(&body);
    ok = msg_put_u64(&body, 1) && msg_put_u32(&body, 1) && msg_put_u32(&body, (uint32_t)vc.len) &&
         msg_put(&body, vc.data, vc.len) && msg_put_u64(&body, 4) && msg_put_u32(&body, 1) &&
         msg_put_u64(&body, 5) && msg_put_u32(&body, 3) &&
         msg_put(&body, txs, 3 * LEDGER_TX_BYTES) && msg_put(&body, ssig.b, TC_SIG_BYTES);
    EMIT("new_view",
         ok ? msg_encode_body(&m, MSG_NEW_VIEW, 1, body.data, body.len, &signer) : TALLY_ENOMEM);
    msg_buf_free(&body);
    msg_buf_free(&vc);
    free(chunk);
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

    /* SP frames: three transactions as back-to-back push0 frames, the same
     * as pair1 frames, and one pair1 frame cut short. */
    uint8_t frames[3 * (SPFRAME_MAX_HEADER + LEDGER_TX_BYTES)];
    for (int pair1 = 0; pair1 <= 1; pair1++) {
        size_t off = 0;
        for (size_t i = 0; i < 3; i++) {
            off += spframe_header(frames + off, LEDGER_TX_BYTES, pair1);
            memcpy(frames + off, txs + i * LEDGER_TX_BYTES, LEDGER_TX_BYTES);
            off += LEDGER_TX_BYTES;
        }
        put("fuzz_spframe", pair1 ? "pair1" : "push0", frames, off);
        if (pair1)
            put("fuzz_spframe", "pair1_short", frames, off - 7);
    }
    tc_keypair_free(&a);
    tc_keypair_free(&b);
    printf("corpus written to tests/fuzz/corpus/\n");
    return 0;
}
