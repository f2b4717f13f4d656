#include "ledger/tx.h"

#include <string.h>

#include "ledger/block.h"

static const char *const result_texts[LEDGER_RESULT_COUNT] = {
#define LEDGER_RESULT_TEXT(name, value, text) [value] = text,
    LEDGER_RESULTS(LEDGER_RESULT_TEXT)
#undef LEDGER_RESULT_TEXT
};

static const char *const result_names[LEDGER_RESULT_COUNT] = {
    [LEDGER_RESULT_OK] = "ok",
    [LEDGER_RESULT_BAD_SIGNATURE] = "bad_signature",
    [LEDGER_RESULT_BAD_NONCE] = "bad_nonce",
    [LEDGER_RESULT_INSUFFICIENT_FUNDS] = "insufficient_funds",
    [LEDGER_RESULT_OVERFLOW] = "overflow",
    [LEDGER_RESULT_SELF_TRANSFER] = "self_transfer",
    [LEDGER_RESULT_ZERO_AMOUNT] = "zero_amount",
    [LEDGER_RESULT_DUPLICATE] = "duplicate",
    [LEDGER_RESULT_MALFORMED] = "malformed",
};

const char *ledger_result_text(int result)
{
    if (result < 0 || result >= LEDGER_RESULT_COUNT)
        return "unknown result";
    return result_texts[result];
}

const char *ledger_result_name(int result)
{
    if (result < 0 || result >= LEDGER_RESULT_COUNT)
        return "unknown";
    return result_names[result];
}

static void tx_encode_body(const struct ledger_tx *tx, uint8_t *out)
{
    out[0] = tx->version;
    out[1] = tx->kind;
    memcpy(out + 2, tx->from.b, TC_PUBKEY_BYTES);
    memcpy(out + 34, tx->to.b, TC_PUBKEY_BYTES);
    ledger_put_u64(out + 66, tx->amount);
    ledger_put_u64(out + 74, tx->nonce);
}

void ledger_tx_encode(const struct ledger_tx *tx, uint8_t out[LEDGER_TX_BYTES])
{
    tx_encode_body(tx, out);
    memcpy(out + LEDGER_TX_BODY_BYTES, tx->sig.b, TC_SIG_BYTES);
}

int ledger_tx_decode(const uint8_t *in, size_t len, struct ledger_tx *tx)
{
    memset(tx, 0, sizeof(*tx));
    if (in == NULL || len < LEDGER_TX_BYTES)
        return TALLY_ETRUNC;
    if (len > LEDGER_TX_BYTES)
        return TALLY_ETOOBIG;
    if (in[0] != LEDGER_TX_VERSION || in[1] != LEDGER_TX_KIND_TRANSFER)
        return TALLY_EFORMAT;
    tx->version = in[0];
    tx->kind = in[1];
    memcpy(tx->from.b, in + 2, TC_PUBKEY_BYTES);
    memcpy(tx->to.b, in + 34, TC_PUBKEY_BYTES);
    tx->amount = ledger_get_u64(in + 66);
    tx->nonce = ledger_get_u64(in + 74);
    memcpy(tx->sig.b, in + LEDGER_TX_BODY_BYTES, TC_SIG_BYTES);
    return TALLY_OK;
}

void ledger_tx_signed_bytes(const struct ledger_tx *tx, uint8_t out[LEDGER_TX_SIGNED_BYTES])
{
    memcpy(out, LEDGER_TX_SIGN_TAG, LEDGER_TX_SIGN_TAG_BYTES); /* includes the NUL */
    tx_encode_body(tx, out + LEDGER_TX_SIGN_TAG_BYTES);
}

void ledger_tx_sign(struct ledger_tx *tx, const tc_keypair *kp)
{
    uint8_t msg[LEDGER_TX_SIGNED_BYTES];
    ledger_tx_signed_bytes(tx, msg);
    tc_sign(kp, msg, sizeof(msg), &tx->sig);
}

int ledger_tx_verify(const struct ledger_tx *tx)
{
    uint8_t msg[LEDGER_TX_SIGNED_BYTES];
    ledger_tx_signed_bytes(tx, msg);
    return tc_verify(&tx->from, msg, sizeof(msg), &tx->sig);
}

void ledger_tx_hash(const struct ledger_tx *tx, tc_hash *out)
{
    uint8_t bytes[LEDGER_TX_BYTES];
    ledger_tx_encode(tx, bytes);
    tc_sha256(bytes, sizeof(bytes), out);
}

void ledger_tx_hash_bytes(const uint8_t in[LEDGER_TX_BYTES], tc_hash *out)
{
    tc_sha256(in, LEDGER_TX_BYTES, out);
}
