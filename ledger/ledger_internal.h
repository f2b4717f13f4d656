/* Internal to ledger/: key layout and access to the RocksDB handle for the
 * audit and export, which read the database directly. Not a public API. */
#ifndef TALLY_LEDGER_INTERNAL_H
#define TALLY_LEDGER_INTERNAL_H

#include <rocksdb/c.h>

#include "ledger/ledger.h"

/* Key prefixes (docs/FORMAT.md, "RocksDB keys"). */
#define LEDGER_KEY_BLOCK 'B' /* 'B' || u64 BE height      -> encoded block */
#define LEDGER_KEY_CERT 'C'  /* 'C' || u64 BE height      -> checkpoint certificate (cert.h) */
#define LEDGER_KEY_TX 'T'    /* 'T' || 32 tx hash         -> u64 height, u32 index, u8 result */
#define LEDGER_KEY_ACCOUNT                                                                         \
    'A'                       /* 'A' || 32 pk              -> u64 balance, u64 nonce, u64 height   \
                               */
#define LEDGER_KEY_HEAD 'H'   /* 'H'                       -> head record */
#define LEDGER_KEY_META 'P'   /* 'P' || key                -> protocol state (src/) */
#define LEDGER_KEY_FORMAT 'V' /* 'V'                       -> "tally-ledger-v3" */

/* v3: the 'A' keys live in their own column family, LEDGER_ACCOUNTS_CF; every
 * other key in "default". */
#define LEDGER_FORMAT_TAG "tally-ledger-v3"
#define LEDGER_ACCOUNTS_CF "accounts"
#define LEDGER_TXINDEX_BYTES 13
#define LEDGER_ACCOUNT_BYTES 24
/* u64 height || 32 head hash || 32 genesis hash || 2048 LtHash lanes */
#define LEDGER_HEAD_BYTES (8 + 32 + 32 + TC_LTHASH_BYTES)

/* Open read-only without loading or checking the head record (the audit
 * checks everything itself and must not stop at the first inconsistency). */
int ledger_open_unchecked(const char *dir, struct ledger **out, struct tally_err *err);
rocksdb_t *ledger_rocksdb(struct ledger *l);
rocksdb_column_family_handle_t *ledger_accounts_cf(struct ledger *l); /* the 'A' keys */
rocksdb_readoptions_t *ledger_readoptions(struct ledger *l);
/* The LtHash state at the head. */
const tc_lthash *ledger_lthash(const struct ledger *l);

static inline void ledger_block_key(uint64_t height, uint8_t key[9])
{
    key[0] = LEDGER_KEY_BLOCK;
    for (int i = 0; i < 8; i++)
        key[1 + i] = (uint8_t)(height >> (8 * (7 - i)));
}

static inline void ledger_cert_key(uint64_t height, uint8_t key[9])
{
    key[0] = LEDGER_KEY_CERT;
    for (int i = 0; i < 8; i++)
        key[1 + i] = (uint8_t)(height >> (8 * (7 - i)));
}

/* The height in a 9-byte 'B' or 'C' key. */
static inline uint64_t ledger_key_height(const uint8_t key[9])
{
    uint64_t h = 0;
    for (int i = 0; i < 8; i++)
        h = (h << 8) | key[1 + i];
    return h;
}

#endif
