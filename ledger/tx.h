/* Transactions: a signed transfer, fixed size, canonical little-endian bytes.
 *
 *   offset size field
 *   0      1    version   (1)
 *   1      1    kind      (1 = transfer)
 *   2      32   from      sender's Ed25519 public key
 *   34     32   to        recipient's Ed25519 public key
 *   66     8    amount    u64 LE
 *   74     8    nonce     u64 LE, the sender's account nonce + 1
 *   82     64   signature Ed25519 by `from` over "TALLY-TX-V1\0" (12 bytes) || bytes 0..81
 *   = 146 bytes. tx hash = SHA-256 of all 146 bytes. See docs/FORMAT.md. */
#ifndef TALLY_LEDGER_TX_H
#define TALLY_LEDGER_TX_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"

#define LEDGER_TX_VERSION 1
#define LEDGER_TX_KIND_TRANSFER 1
#define LEDGER_TX_BODY_BYTES 82
#define LEDGER_TX_BYTES 146
#define LEDGER_TX_SIGN_TAG "TALLY-TX-V1"
#define LEDGER_TX_SIGN_TAG_BYTES 12 /* including the terminating NUL */

struct ledger_tx {
    uint8_t version;
    uint8_t kind;
    tc_pubkey from;
    tc_pubkey to;
    uint64_t amount;
    uint64_t nonce;
    tc_sig sig;
};

/* Results recorded for every transaction in a block (one byte each). */
#define LEDGER_RESULTS(X)                                                                          \
    X(LEDGER_RESULT_OK, 0, "ok")                                                                   \
    X(LEDGER_RESULT_BAD_SIGNATURE, 1, "bad signature")                                             \
    X(LEDGER_RESULT_BAD_NONCE, 2, "wrong nonce")                                                   \
    X(LEDGER_RESULT_INSUFFICIENT_FUNDS, 3, "insufficient funds")                                   \
    X(LEDGER_RESULT_OVERFLOW, 4, "recipient balance would overflow")                               \
    X(LEDGER_RESULT_SELF_TRANSFER, 5, "transfer to self")                                          \
    X(LEDGER_RESULT_ZERO_AMOUNT, 6, "zero amount")                                                 \
    X(LEDGER_RESULT_DUPLICATE, 7, "duplicate transaction (already in the ledger)")                 \
    X(LEDGER_RESULT_MALFORMED, 8, "malformed transaction")

enum ledger_result {
#define LEDGER_RESULT_ENUM(name, value, text) name = value,
    LEDGER_RESULTS(LEDGER_RESULT_ENUM)
#undef LEDGER_RESULT_ENUM
        LEDGER_RESULT_COUNT
};

const char *ledger_result_text(int result); /* "insufficient funds"; "unknown result" */
const char *ledger_result_name(int result); /* "insufficient_funds" for JSON */

/* Encode into exactly LEDGER_TX_BYTES bytes. */
void ledger_tx_encode(const struct ledger_tx *tx, uint8_t out[LEDGER_TX_BYTES]);
/* Decode len bytes; TALLY_ETRUNC / TALLY_ETOOBIG when len != LEDGER_TX_BYTES,
 * TALLY_EFORMAT for an unknown version or kind. The signature is not checked. */
int ledger_tx_decode(const uint8_t *in, size_t len, struct ledger_tx *tx);
/* The bytes the signature covers (tag || body); out holds 12 + 82 bytes. */
#define LEDGER_TX_SIGNED_BYTES (LEDGER_TX_SIGN_TAG_BYTES + LEDGER_TX_BODY_BYTES)
void ledger_tx_signed_bytes(const struct ledger_tx *tx, uint8_t out[LEDGER_TX_SIGNED_BYTES]);
void ledger_tx_sign(struct ledger_tx *tx, const tc_keypair *kp);
int ledger_tx_verify(const struct ledger_tx *tx) __attribute__((warn_unused_result));
/* Hash of the encoded tx; and of already-encoded bytes. */
void ledger_tx_hash(const struct ledger_tx *tx, tc_hash *out);
void ledger_tx_hash_bytes(const uint8_t in[LEDGER_TX_BYTES], tc_hash *out);

#endif
