/* The ledger: a deterministic state machine over RocksDB.
 *
 * One data directory holds one RocksDB database with the blocks (a hash chain
 * from genesis, block 0), the account states, a transaction index, the head
 * and the state digest (LtHash), plus a small key/value space reserved for the
 * replica's protocol state (keys under prefix 'P', see "Meta" below). Key
 * layout and byte formats: docs/FORMAT.md and ledger/block.h.
 *
 * Every block is written with everything it changes in ONE RocksDB WriteBatch
 * (synced unless opened with .sync = false, or, with .defer_block_sync, when
 * no staged meta rides along), so a crash at any moment leaves the ledger at
 * some block boundary.
 *
 * Cost: applying a block does no allocation of its own per transaction
 * (scratch buffers live in struct ledger and grow to the largest block seen);
 * RocksDB's C API does copy every value it returns into a malloc'd buffer (one
 * per account first touched in a block). Execution keeps block-local state in
 * a hash table for lookups only; everything written or hashed is iterated in
 * transaction order.
 *
 * Threading: a struct ledger is used by one thread at a time (the replica's
 * loop thread). Several ledgers (different directories) may live in one
 * process. Prefix: ledger_. Errors: 0 or TALLY_E* with err filled in. */
#ifndef TALLY_LEDGER_H
#define TALLY_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "ledger/block.h"
#include "ledger/cert.h"
#include "ledger/tx.h"
#include "src/err.h"

struct ledger;

struct ledger_open_opts {
    bool in_memory; /* RocksDB in-memory env (tests): nothing touches the disk */
    bool sync;      /* fsync every block's WriteBatch (default true) */
    /* With sync: a block whose WriteBatch carries no staged meta is written
     * without an fsync of its own. It is in RocksDB's write-ahead log when
     * the call returns, so a killed process loses nothing; an OS crash or
     * power loss can lose it until the next synced write (the log is
     * written in order, and that write's fsync covers it) or ledger_sync. For
     * the replica, which can execute such a block again from its synced
     * protocol records (docs/PROTOCOL.md, "What is persisted"). */
    bool defer_block_sync;
    bool read_only;          /* audit, export: no writes, no lock taken (RocksDB read-only
                              * opens do not lock), sees the data as of the open */
    uint64_t min_free_bytes; /* free-space floor; 0: LEDGER_MIN_FREE_BYTES */
};
/* A writable ledger on disk keeps this much free on its filesystem. Every
 * write (a block, ledger_meta_flush, put/delete meta) that would leave less
 * than the floor plus twice its batch, and an open with less than the floor
 * plus 4 MiB (RocksDB's MANIFEST preallocation), fails with TALLY_ENOSPC
 * "data directory X is nearly full: ..." and writes nothing: RocksDB never
 * meets a full disk. 64 MiB: RocksDB's default write buffer, so that the
 * memtable can still be flushed at close. */
#define LEDGER_MIN_FREE_BYTES ((uint64_t)64 << 20)
#define LEDGER_OPEN_OPTS_DEFAULT                                                                   \
    {                                                                                              \
        .in_memory = false, .sync = true, .read_only = false                                       \
    }

/* Open or create the data directory `dir` (created if missing, one level).
 * Errors: TALLY_EBUSY "data directory X is in use by another process" when
 * another ledger (this process or another) has it open; TALLY_ECORRUPT when
 * RocksDB reports corruption or the stored head/blocks do not decode; TALLY_EIO
 * otherwise. On success *out is owned by the caller: release with ledger_close.
 * ledger_open uses LEDGER_OPEN_OPTS_DEFAULT; opts NULL means the same. */
int ledger_open(const char *dir, struct ledger **out, struct tally_err *err);
int ledger_open_opts(const char *dir, const struct ledger_open_opts *opts, struct ledger **out,
                     struct tally_err *err);
void ledger_close(struct ledger *l); /* NULL is fine */

/* ---- genesis --------------------------------------------------------------- */

struct ledger_genesis_account {
    tc_pubkey pk;
    uint64_t balance;
};

/* Write block 0 from n allocations (any order; stored sorted by pk). Rejects
 * duplicate pks (TALLY_EINVAL) and n > LEDGER_BLOCK_MAX_TXS (TALLY_ETOOBIG).
 * When the ledger already has a genesis: no-op if it is identical, else
 * TALLY_EMISMATCH "data directory belongs to another cluster". */
int ledger_init_genesis(struct ledger *l, const struct ledger_genesis_account *accts, size_t n,
                        struct tally_err *err);
bool ledger_has_genesis(const struct ledger *l);

/* ---- head ------------------------------------------------------------------ */

/* Height of the last block (0 = only genesis; also 0 before genesis, check
 * ledger_has_genesis). */
uint64_t ledger_height(const struct ledger *l);
void ledger_head_hash(const struct ledger *l, tc_hash *out);    /* hash of the last block */
void ledger_state_digest(const struct ledger *l, tc_hash *out); /* tc_lthash_digest now */
void ledger_genesis_hash(const struct ledger *l, tc_hash *out); /* hash of block 0: chain id */

/* ---- blocks ---------------------------------------------------------------- */

/* What one applied block produced. The arrays point into buffers owned by the
 * ledger, valid until the next ledger_apply_block* call or ledger_close. */
struct ledger_block_result {
    uint64_t height;
    tc_hash block_hash;
    tc_hash state_digest;
    uint32_t count;           /* transactions in the block */
    const uint8_t *results;   /* count enum ledger_result bytes */
    const tc_hash *tx_hashes; /* count tx hashes (SHA-256 of the 146 bytes) */
};

/* Apply a batch as block `height`, which must be ledger_height() + 1 (blocks
 * are numbered by the PBFT sequence number; count 0 gives an empty block).
 * tx_bytes holds count * LEDGER_TX_BYTES bytes, count <= LEDGER_BLOCK_MAX_TXS.
 * Every signature is verified here. Transaction-level problems never fail the
 * call: they are recorded as results (rules in docs/FORMAT.md, "Execution").
 * Errors: TALLY_EINVAL (wrong height, no genesis, count too big), TALLY_EIO
 * (RocksDB write failed: the ledger is unchanged), TALLY_ECORRUPT (stored
 * account unreadable). out may be NULL. */
int ledger_apply_block(struct ledger *l, uint64_t height, const uint8_t *tx_bytes, uint32_t count,
                       struct ledger_block_result *out, struct tally_err *err);
/* The same, for a caller that already verified signatures (the replica's
 * verifier pool): sig_ok[i] is 1 when tx i's signature is valid, 0 when not;
 * sig_ok NULL means all are valid. The ledger does not verify again. */
int ledger_apply_block_verified(struct ledger *l, uint64_t height, const uint8_t *tx_bytes,
                                uint32_t count, const uint8_t *sig_ok,
                                struct ledger_block_result *out, struct tally_err *err);

/* The encoded block at `height` (header || body, ledger/block.h). On success
 * with *found true, *bytes is malloc'd and owned by the caller (free()), *len
 * its size; with *found false nothing is allocated. */
int ledger_get_block(struct ledger *l, uint64_t height, uint8_t **bytes, size_t *len, bool *found,
                     struct tally_err *err);

/* ---- queries --------------------------------------------------------------- */

struct ledger_account {
    uint64_t balance;
    uint64_t nonce;       /* nonce of the last accepted tx from it (0: none yet) */
    uint64_t last_height; /* height of the block that last changed it */
};

/* *found false (and *out zeroed) when the account does not exist. */
int ledger_get_account(struct ledger *l, const tc_pubkey *pk, struct ledger_account *out,
                       bool *found, struct tally_err *err);
/* Where a transaction is: block height, index in the block, recorded result.
 * Duplicates are not indexed: the first occurrence answers. Any out pointer
 * except found may be NULL. */
int ledger_get_tx(struct ledger *l, const tc_hash *h, uint64_t *height, uint32_t *index,
                  uint8_t *result, bool *found, struct tally_err *err);

/* ---- checkpoint certificates (ledger/cert.h) -------------------------------- */

/* Queue certificate c for writing under 'C' || height (BE), like
 * ledger_stage_meta_put: it goes out in the same WriteBatch as the next
 * ledger_apply_block* or with ledger_meta_flush. c->ck.height must be at most
 * the ledger's height once that write happens (TALLY_EINVAL when it is already
 * above ledger_height() + 1; ledger_meta_flush refuses, TALLY_EINVAL, writing
 * nothing, while a staged certificate is above ledger_height()). Also
 * TALLY_EINVAL without genesis, read-only, or c->count not 1..LEDGER_CERT_MAX_SIGS.
 * Stored in the canonical order (a sorted copy); the signatures are not
 * checked here. Replaces a stored certificate of the same height. */
int ledger_stage_cert(struct ledger *l, const struct ledger_cert *c, struct tally_err *err);
/* The certificate stored for exactly `height`; *found false when none.
 * TALLY_ECORRUPT when the stored bytes do not decode or name another height. */
int ledger_get_cert(struct ledger *l, uint64_t height, struct ledger_cert *out, bool *found,
                    struct tally_err *err);
/* The stored certificate with the lowest height >= `height` (state transfer
 * serves blocks up to it); *found false when none. */
int ledger_find_cert_from(struct ledger *l, uint64_t height, struct ledger_cert *out, bool *found,
                          struct tally_err *err);
/* The stored certificate with the highest height (the last stable checkpoint). */
int ledger_last_cert(struct ledger *l, struct ledger_cert *out, bool *found, struct tally_err *err);
/* Does c hold for this ledger? Its signatures (ledger_cert_verify with the
 * ledger's genesis hash as chain id, keys[0..n-1], quorum) and the stored
 * block at c->ck.height: it exists, hashes to c->ck.block_hash and its header's
 * state_digest is c->ck.state_digest. 0 when all hold; otherwise the first
 * problem in err ("height 256: the certified block hash 3f9a… is not the
 * ledger's 77b1…", "height 256: no such block (the ledger ends at 200)"). */
int ledger_cert_check(struct ledger *l, const struct ledger_cert *c, const tc_pubkey *keys,
                      uint32_t n, uint32_t quorum, struct tally_err *err)
    __attribute__((warn_unused_result));

/* ---- integrity -------------------------------------------------------------- */

/* Read every key and value once with RocksDB's block checksums verified (and
 * nothing cached): TALLY_ECORRUPT "data directory X is corrupt: ..." when any
 * stored file is damaged. A replica runs this before serving anything; cost:
 * one sequential read of the database. *keys (may be NULL) gets the count. */
int ledger_verify_files(struct ledger *l, uint64_t *keys, struct tally_err *err);

/* ---- meta: the protocol's key/value space ---------------------------------- */

/* Keys are arbitrary bytes (1..LEDGER_META_MAX_KEY); the ledger stores them
 * as 'P' || key, so they can never collide with ledger keys, and ledger keys
 * are never visible here. Values up to LEDGER_META_MAX_VALUE bytes.
 *
 * put/delete/delete_range write immediately (synced per opts). The stage_*
 * variants only queue the change; queued changes are written in the SAME
 * WriteBatch as the next ledger_apply_block* (atomic with that block) or by
 * ledger_meta_flush. Keys sort bytewise: encode numbers big-endian for ranges. */
#define LEDGER_META_MAX_KEY 256
#define LEDGER_META_MAX_VALUE (64u * 1024 * 1024)

int ledger_put_meta(struct ledger *l, const void *key, size_t key_len, const void *val,
                    size_t val_len, struct tally_err *err);
/* On success with *found true, *val is malloc'd, owned by the caller (free()). */
int ledger_get_meta(struct ledger *l, const void *key, size_t key_len, void **val, size_t *val_len,
                    bool *found, struct tally_err *err);
int ledger_delete_meta(struct ledger *l, const void *key, size_t key_len, struct tally_err *err);
/* Delete every key k with begin <= k < end. */
int ledger_delete_meta_range(struct ledger *l, const void *begin, size_t begin_len, const void *end,
                             size_t end_len, struct tally_err *err);
int ledger_stage_meta_put(struct ledger *l, const void *key, size_t key_len, const void *val,
                          size_t val_len, struct tally_err *err);
int ledger_stage_meta_delete(struct ledger *l, const void *key, size_t key_len,
                             struct tally_err *err);
int ledger_stage_meta_delete_range(struct ledger *l, const void *begin, size_t begin_len,
                                   const void *end, size_t end_len, struct tally_err *err);
/* Write the staged changes now (no-op when none). */
int ledger_meta_flush(struct ledger *l, struct tally_err *err);
/* The same without an fsync on a ledger opened with defer_block_sync (as
 * a block without staged meta: in RocksDB's write-ahead log, which survives
 * a crash of the process; durable with the next synced write, ledger_sync or
 * ledger_close), else synced as ledger_meta_flush. For staged meta the caller
 * may lose in a power loss. */
int ledger_meta_flush_unsynced(struct ledger *l, struct tally_err *err);

/* defer_block_sync: true while a block written without an fsync is not yet
 * covered by a later synced write; ledger_sync makes it durable (fsync of
 * RocksDB's write-ahead log; no-op when nothing is unsynced). ledger_close
 * syncs too. Errors: TALLY_EIO. */
bool ledger_unsynced(const struct ledger *l);
int ledger_sync(struct ledger *l, struct tally_err *err);

#endif
