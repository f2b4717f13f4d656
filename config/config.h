/* Cluster configuration and genesis: parse (jansson), validate, explain errors.
 *
 * Two files. cluster.json:
 *   {
 *     "cluster_name": "testnet",
 *     "genesis": "genesis.json",            path, relative to cluster.json's directory
 *     "replicas": [
 *       {"id": 0, "peer_address": "tcp://127.0.0.1:27000",
 *        "client_address": "tcp://127.0.0.1:27001", "public_key": "<64 hex>"}, ...
 *     ],
 *     "checkpoint_interval": 128,           K (optional, default below)
 *     "log_window": 512,                    L, a positive multiple of K (optional)
 *     "batch_max_txs": 2048,                (optional)
 *     "batch_timeout_ms": 4,                (optional)
 *     "max_inflight_batches": 2,            (optional)
 *     "request_timeout_ms": 1000,           (optional)
 *     "max_message_bytes": 4194304          (optional)
 *   }
 * genesis.json:
 *   {"accounts": [{"public_key": "<64 hex>", "balance": 1000}, ...]}
 *
 * Validation rejects, with a message naming the file, the field and the
 * problem ("cluster.json: replicas[2].public_key: must be 64 hex characters"):
 * n not 3f+1 with f >= 1; ids not exactly 0..n-1; duplicate keys or
 * addresses; addresses not tcp://HOST:PORT (port 1..65535); numbers that are
 * not JSON integers in range; log_window not a positive multiple of
 * checkpoint_interval; max_message_bytes too small for a full batch; unknown
 * fields; genesis with no accounts, duplicate accounts or balances whose sum
 * overflows u64; unreadable files; JSON syntax errors (with line and column).
 *
 * Prefix: config_. Errors: 0 or TALLY_E* with err filled in (TALLY_ECONFIG for
 * invalid content, TALLY_ENOTFOUND / TALLY_EIO for files, TALLY_EEXIST when
 * a writer would overwrite). */
#ifndef TALLY_CONFIG_H
#define TALLY_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "ledger/ledger.h"
#include "src/err.h"

#define CONFIG_MAX_REPLICAS 16 /* = PBFT_MAX_REPLICAS */
#define CONFIG_NAME_MAX 64     /* cluster_name: 1..63 chars */
#define CONFIG_ADDR_MAX 128    /* addresses: "tcp://HOST:PORT", < 128 chars */

/* Defaults for the optional fields. */
#define CONFIG_DEFAULT_CHECKPOINT_INTERVAL 128
#define CONFIG_DEFAULT_LOG_WINDOW (4 * CONFIG_DEFAULT_CHECKPOINT_INTERVAL)
/* 2,048 transactions and 2 batches in flight, not 512 and 8: on 2 cores the
 * replicas are CPU-bound under load, and every block costs each replica a
 * fixed ~2 ms (messages, signatures, synced writes) on top of its
 * transactions. With 8 in flight the primary kept cutting blocks of ~250;
 * with 2 they grow to ~650 at 4,096 outstanding and the cluster does 11-14 %
 * more (8,100 -> 9,000-9,200 tx/s), with p50 at 6,000 tx/s open loop 117 ->
 * 55 ms and light load unchanged (BENCHMARKS.md, "Fewer, bigger blocks").
 * The price is memory: the core keeps up to 2 x log_window batches (the
 * retransmission history), so its worst case with every block full is
 * 1,024 x 2,048 x 178 B = ~370 MB per replica (~93 MB with 512). */
#define CONFIG_DEFAULT_BATCH_MAX_TXS 2048
/* 4 ms. Each block costs the cluster a fixed ~5-7 ms of CPU on 2 cores
 * whatever its size (more when other tenants load the host), so the timeout
 * trades waiting for a cut against CPU spent on more blocks: 2 ms saturated
 * the machine at ~550 tx/s (p99 38-125 ms, BENCHMARKS.md "Batch timeout");
 * 3 ms raised p50 at 2,000 tx/s by 2-5 ms. Since the transport went to NNG
 * streams a block costs ~20 % less, and 4 ms against 5 ms (alternated,
 * BENCHMARKS.md "Seventh pass") gave p50 5.2-5.5 against 5.6-5.9 ms at 950
 * tx/s, 4.5-4.7 against 5.1-5.5 at 300 and 7.0-8.3 against 7.2-9.0 at
 * 2,000. Light load is served by the quiet cut (pbft_try_propose: nothing in
 * flight, no cut for T). */
#define CONFIG_DEFAULT_BATCH_TIMEOUT_MS 4
#define CONFIG_DEFAULT_MAX_INFLIGHT_BATCHES 2
#define CONFIG_DEFAULT_REQUEST_TIMEOUT_MS 1000
#define CONFIG_DEFAULT_MAX_MESSAGE_BYTES (4u << 20)

/* Limits (inclusive) for the numeric fields. */
#define CONFIG_MAX_CHECKPOINT_INTERVAL 1000000
#define CONFIG_MAX_LOG_WINDOW 10000000
#define CONFIG_MAX_BATCH_TXS 4096 /* = MSG_MAX_BATCH */
#define CONFIG_MAX_BATCH_TIMEOUT_MS 60000
#define CONFIG_MAX_INFLIGHT_BATCHES 1024
#define CONFIG_MIN_REQUEST_TIMEOUT_MS 10
#define CONFIG_MAX_REQUEST_TIMEOUT_MS 3600000
/* max_message_bytes must be at least batch_max_txs * LEDGER_TX_BYTES plus this
 * allowance for headers, signatures and certificates, and at most the max. */
#define CONFIG_MESSAGE_OVERHEAD_BYTES (64u << 10)
#define CONFIG_MAX_MESSAGE_BYTES (256u << 20)
#define CONFIG_MAX_GENESIS_ACCOUNTS 1000000

struct tally_replica_config {
    uint32_t id;                          /* = its index in replicas[] */
    char peer_address[CONFIG_ADDR_MAX];   /* replica-to-replica, "tcp://HOST:PORT" */
    char client_address[CONFIG_ADDR_MAX]; /* clients and status, "tcp://HOST:PORT" */
    tc_pubkey pk;
};

/* Initial balances. accounts is owned by the config (freed by config_free),
 * sorted by pk (memcmp order), no duplicates, count >= 1. The element type is
 * the ledger's, so the shell can pass it to ledger_init_genesis directly. */
struct tally_genesis {
    size_t count;
    struct ledger_genesis_account *accounts;
};

struct tally_config {
    char cluster_name[CONFIG_NAME_MAX];
    uint32_t n;                                                /* replicas, n = 3f+1 */
    uint32_t f;                                                /* faults tolerated, >= 1 */
    struct tally_replica_config replicas[CONFIG_MAX_REPLICAS]; /* replicas[i].id == i */
    uint64_t checkpoint_interval;                              /* K */
    uint64_t log_window;                                       /* L, multiple of K */
    uint32_t batch_max_txs;
    uint64_t batch_timeout_ms;
    uint32_t max_inflight_batches;
    uint64_t request_timeout_ms;
    uint64_t max_message_bytes;
    char genesis_path[PATH_MAX]; /* resolved: relative to the cluster file's dir */
    struct tally_genesis genesis;
};

/* Load and validate cluster_path and the genesis file it names. On success
 * *out is filled and owns genesis.accounts (release with config_free). On
 * failure *out holds nothing to free (config_free on it is still safe). */
int config_load(const char *cluster_path, struct tally_config *out, struct tally_err *err);

/* Release what config_load allocated; c stays safe to free again. NULL ok. */
void config_free(struct tally_config *c);

/* Fill c with the defaults for every optional field; zero everything else. */
void config_set_defaults(struct tally_config *c);

/* Index (= id) of the replica with public key pk, or -1 if none. */
int config_replica_index_by_key(const struct tally_config *c, const tc_pubkey *pk);

static inline uint32_t config_quorum(const struct tally_config *c)
{
    return 2 * c->f + 1; /* certificates: prepared, committed, checkpoint, view change */
}

static inline uint32_t config_reply_quorum(const struct tally_config *c)
{
    return c->f + 1; /* matching replies a client needs */
}

/* Check the in-memory config the way config_load checks files (n = 3f+1, ids,
 * keys, addresses, ranges, genesis). `what` names the source in messages
 * (e.g. "cluster.json"). Returns 0 or TALLY_ECONFIG. */
int config_validate(const struct tally_config *c, const char *what, struct tally_err *err);

/* Parse "tcp://HOST:PORT" (port 1..65535). host gets HOST (NUL-terminated,
 * hostlen bytes at most, may be NULL). Returns 0 or TALLY_ECONFIG with err
 * saying what is wrong (no field prefix). */
int config_parse_address(const char *addr, char *host, size_t hostlen, uint16_t *port,
                         struct tally_err *err);

/* ---- a configuration against a data directory ------------------------------ */

/* The chain id c's genesis gives: the hash of the block 0 that
 * ledger_init_genesis writes for c->genesis (built in memory, nothing on disk). */
int config_genesis_hash(const struct tally_config *c, tc_hash *out, struct tally_err *err);

/* May data directory dir be used with c? Checked before anything opens it for
 * writing; the database is only opened read-only (no lock, nothing written).
 *   - missing: TALLY_ENOTFOUND, or fine when may_create (tallyd's first start);
 *   - not a directory: TALLY_EINVAL;
 *   - no RocksDB database in it: fine when may_create and it is empty (or a
 *     first start stopped early); other files only: TALLY_EINVAL; else
 *     TALLY_ENOTFOUND "holds no tally ledger";
 *   - no genesis block: fine when may_create, else TALLY_ENOTFOUND;
 *   - a genesis block other than c's: TALLY_EMISMATCH "belongs to another
 *     cluster" (cfg_what names c's file in the message).
 * c NULL: no genesis comparison. */
int config_check_data_dir(const struct tally_config *c, const char *cfg_what, const char *dir,
                          bool may_create, struct tally_err *err);

/* ---- writers (tally init) ---------------------------------------------------
 * Never overwrite: an existing file is TALLY_EEXIST. Files are written to a
 * temporary name, fsynced and linked into place (no partial files). */

/* Write c as cluster.json at path; its "genesis" field is genesis_ref verbatim
 * (a path relative to the cluster file's directory, e.g. "genesis.json").
 * Fields equal to the defaults are written too, so the file documents them. */
int config_write_cluster(const char *path, const struct tally_config *c, const char *genesis_ref,
                         struct tally_err *err);

/* Write g as genesis.json at path. */
int config_write_genesis(const char *path, const struct tally_genesis *g, struct tally_err *err);

#endif
