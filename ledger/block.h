/* Blocks: canonical little-endian encoding, hashing and bounds-checked decoding.
 *
 * Header (LEDGER_BLOCK_HEADER_BYTES = 144):
 *   offset size field
 *   0      4    version       u32 LE (1)
 *   4      8    height        u64 LE (0 = genesis)
 *   12     32   prev_hash     hash of block height-1 (genesis: 32 zero bytes)
 *   44     32   tx_root       tc_merkle_root over the item leaves (below)
 *   76     32   results_hash  SHA-256 of the tx_count result bytes
 *   108    32   state_digest  tc_lthash_digest of the state after this block
 *   140    4    tx_count      u32 LE (<= LEDGER_BLOCK_MAX_TXS)
 * Body:
 *   tx_count items: 146-byte transactions (ledger/tx.h); in the genesis block
 *                   40-byte allocations (32 pk || u64 LE balance), sorted by pk,
 *                   no duplicates
 *   tx_count result bytes (enum ledger_result; all 0 in genesis)
 *
 * block hash = SHA-256(144 header bytes).
 * item leaf  = SHA-256(0x00 || item bytes) (146 or 40 bytes); inner nodes and
 *              odd-node promotion as tc_merkle_root; zero items: 32 zero bytes.
 * Prefix: ledger_block_. */
#ifndef TALLY_LEDGER_BLOCK_H
#define TALLY_LEDGER_BLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "ledger/tx.h"

#define LEDGER_BLOCK_VERSION 1
#define LEDGER_BLOCK_HEADER_BYTES 144
#define LEDGER_BLOCK_MAX_TXS 65536
#define LEDGER_GENESIS_ENTRY_BYTES 40

struct ledger_block_header {
    uint32_t version;
    uint64_t height;
    tc_hash prev_hash;
    tc_hash tx_root;
    tc_hash results_hash;
    tc_hash state_digest;
    uint32_t tx_count;
};

/* A decoded block. items and results borrow from the decoded buffer. */
struct ledger_block {
    struct ledger_block_header h;
    size_t item_bytes;      /* LEDGER_TX_BYTES, or LEDGER_GENESIS_ENTRY_BYTES at height 0 */
    const uint8_t *items;   /* h.tx_count * item_bytes */
    const uint8_t *results; /* h.tx_count */
};

void ledger_block_header_encode(const struct ledger_block_header *h,
                                uint8_t out[LEDGER_BLOCK_HEADER_BYTES]);
/* TALLY_ETRUNC when len < header size, TALLY_EFORMAT for a wrong version,
 * TALLY_ETOOBIG when tx_count exceeds LEDGER_BLOCK_MAX_TXS. */
int ledger_block_header_decode(const uint8_t *in, size_t len, struct ledger_block_header *h);
void ledger_block_header_hash(const struct ledger_block_header *h, tc_hash *out);

/* Size of a whole encoded block. */
size_t ledger_block_encoded_size(uint64_t height, uint32_t tx_count);

/* Decode a whole block; checks every bound and that len is exact. The item
 * bytes are not decoded (see ledger_tx_decode). Never crashes on garbage. */
int ledger_block_decode(const uint8_t *in, size_t len, struct ledger_block *b,
                        struct tally_err *err);

/* Leaf of one item, and the Merkle root of n items of item_bytes each. */
void ledger_block_leaf(const uint8_t *item, size_t item_bytes, tc_hash *out);
void ledger_block_tx_root(const uint8_t *items, size_t item_bytes, uint32_t n, tc_hash *out);
void ledger_block_results_hash(const uint8_t *results, uint32_t n, tc_hash *out);

/* Genesis allocation entries (40 bytes). */
void ledger_genesis_entry_encode(const tc_pubkey *pk, uint64_t balance,
                                 uint8_t out[LEDGER_GENESIS_ENTRY_BYTES]);
void ledger_genesis_entry_decode(const uint8_t in[LEDGER_GENESIS_ENTRY_BYTES], tc_pubkey *pk,
                                 uint64_t *balance);

/* LtHash element of an account state: 32 pk || u64 LE balance || u64 LE nonce. */
#define LEDGER_ACCOUNT_ELEM_BYTES 48
void ledger_account_elem(const tc_pubkey *pk, uint64_t balance, uint64_t nonce,
                         uint8_t out[LEDGER_ACCOUNT_ELEM_BYTES]);

/* Little-endian helpers shared by the ledger's codecs. */
static inline void ledger_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void ledger_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t ledger_get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}
static inline uint64_t ledger_get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#endif
