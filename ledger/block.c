#include "ledger/block.h"

#include <stdlib.h>
#include <string.h>

void ledger_block_header_encode(const struct ledger_block_header *h,
                                uint8_t out[LEDGER_BLOCK_HEADER_BYTES])
{
    ledger_put_u32(out, h->version);
    ledger_put_u64(out + 4, h->height);
    memcpy(out + 12, h->prev_hash.b, TC_HASH_BYTES);
    memcpy(out + 44, h->tx_root.b, TC_HASH_BYTES);
    memcpy(out + 76, h->results_hash.b, TC_HASH_BYTES);
    memcpy(out + 108, h->state_digest.b, TC_HASH_BYTES);
    ledger_put_u32(out + 140, h->tx_count);
}

int ledger_block_header_decode(const uint8_t *in, size_t len, struct ledger_block_header *h)
{
    memset(h, 0, sizeof(*h));
    if (in == NULL || len < LEDGER_BLOCK_HEADER_BYTES)
        return TALLY_ETRUNC;
    uint32_t version = ledger_get_u32(in);
    if (version != LEDGER_BLOCK_VERSION)
        return TALLY_EFORMAT;
    uint32_t count = ledger_get_u32(in + 140);
    if (count > LEDGER_BLOCK_MAX_TXS)
        return TALLY_ETOOBIG;
    h->version = version;
    h->height = ledger_get_u64(in + 4);
    memcpy(h->prev_hash.b, in + 12, TC_HASH_BYTES);
    memcpy(h->tx_root.b, in + 44, TC_HASH_BYTES);
    memcpy(h->results_hash.b, in + 76, TC_HASH_BYTES);
    memcpy(h->state_digest.b, in + 108, TC_HASH_BYTES);
    h->tx_count = count;
    return TALLY_OK;
}

void ledger_block_header_hash(const struct ledger_block_header *h, tc_hash *out)
{
    uint8_t bytes[LEDGER_BLOCK_HEADER_BYTES];
    ledger_block_header_encode(h, bytes);
    tc_sha256(bytes, sizeof(bytes), out);
}

static size_t item_size(uint64_t height)
{
    return height == 0 ? LEDGER_GENESIS_ENTRY_BYTES : LEDGER_TX_BYTES;
}

size_t ledger_block_encoded_size(uint64_t height, uint32_t tx_count)
{
    return LEDGER_BLOCK_HEADER_BYTES + (size_t)tx_count * (item_size(height) + 1);
}

int ledger_block_decode(const uint8_t *in, size_t len, struct ledger_block *b,
                        struct tally_err *err)
{
    memset(b, 0, sizeof(*b));
    int rc = ledger_block_header_decode(in, len, &b->h);
    if (rc == TALLY_ETRUNC)
        return tally_errf(err, rc, "block of %zu bytes is shorter than its %d-byte header", len,
                          LEDGER_BLOCK_HEADER_BYTES);
    if (rc == TALLY_EFORMAT)
        return tally_errf(err, rc, "block has unknown version %u", (unsigned)ledger_get_u32(in));
    if (rc == TALLY_ETOOBIG)
        return tally_errf(err, rc, "block claims %u transactions (limit %d)",
                          (unsigned)ledger_get_u32(in + 140), LEDGER_BLOCK_MAX_TXS);
    size_t want = ledger_block_encoded_size(b->h.height, b->h.tx_count);
    if (len != want) {
        rc = len < want ? TALLY_ETRUNC : TALLY_ETOOBIG;
        tally_errf(err, rc, "block %llu with %u transactions must be %zu bytes, not %zu",
                   (unsigned long long)b->h.height, (unsigned)b->h.tx_count, want, len);
        memset(b, 0, sizeof(*b));
        return rc;
    }
    b->item_bytes = item_size(b->h.height);
    b->items = in + LEDGER_BLOCK_HEADER_BYTES;
    b->results = b->items + (size_t)b->h.tx_count * b->item_bytes;
    return TALLY_OK;
}

void ledger_block_leaf(const uint8_t *item, size_t item_bytes, tc_hash *out)
{
    static const uint8_t leaf_tag = 0x00;
    tc_sha256_2(&leaf_tag, 1, item, item_bytes, out);
}

void ledger_block_tx_root(const uint8_t *items, size_t item_bytes, uint32_t n, tc_hash *out)
{
    if (n == 0) {
        memset(out->b, 0, TC_HASH_BYTES);
        return;
    }
    tc_hash *leaves = malloc((size_t)n * sizeof(tc_hash));
    if (leaves == NULL)
        abort();
    for (uint32_t i = 0; i < n; i++)
        ledger_block_leaf(items + (size_t)i * item_bytes, item_bytes, &leaves[i]);
    tc_merkle_root(leaves, n, out);
    free(leaves);
}

void ledger_block_results_hash(const uint8_t *results, uint32_t n, tc_hash *out)
{
    static const uint8_t empty = 0;
    tc_sha256(n ? results : &empty, n, out);
}

void ledger_genesis_entry_encode(const tc_pubkey *pk, uint64_t balance,
                                 uint8_t out[LEDGER_GENESIS_ENTRY_BYTES])
{
    memcpy(out, pk->b, TC_PUBKEY_BYTES);
    ledger_put_u64(out + TC_PUBKEY_BYTES, balance);
}

void ledger_genesis_entry_decode(const uint8_t in[LEDGER_GENESIS_ENTRY_BYTES], tc_pubkey *pk,
                                 uint64_t *balance)
{
    memcpy(pk->b, in, TC_PUBKEY_BYTES);
    *balance = ledger_get_u64(in + TC_PUBKEY_BYTES);
}

void ledger_account_elem(const tc_pubkey *pk, uint64_t balance, uint64_t nonce,
                         uint8_t out[LEDGER_ACCOUNT_ELEM_BYTES])
{
    memcpy(out, pk->b, TC_PUBKEY_BYTES);
    ledger_put_u64(out + 32, balance);
    ledger_put_u64(out + 40, nonce);
}
