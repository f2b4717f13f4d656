/* Offline audit of a data directory: re-derive everything from genesis.
 *
 * ledger_audit opens the RocksDB database read-only (RocksDB takes no lock for
 * read-only opens, so this also works next to a running tallyd, but then sees
 * the data as of the moment it opened; audit a stopped replica or a copy for
 * a definitive answer). It walks blocks 0..head and checks, in order:
 *   - every block decodes, is stored under its own height, heights are
 *     contiguous and the head record names the last block;
 *   - prev_hash links, tx_root, results_hash;
 *   - every transaction signature (verified again, in parallel);
 *   - re-execution on an in-memory state gives the recorded result of every
 *     transaction and the recorded state digest of every block;
 *   - the tx index has exactly one correct entry per first occurrence;
 *   - the stored accounts equal the re-executed ones, both ways, and the head
 *     record's LtHash equals the re-executed one;
 *   - every stored checkpoint certificate (ledger/cert.h) decodes, is stored
 *     under its own height, certifies a height <= head, and names the audited
 *     chain's block hash and state digest at that height; with cert_keys in
 *     the options, its signatures are verified too (ledger_cert_verify, the
 *     genesis hash as chain id).
 * It stops at the first problem and reports it with its height.
 * Prefix: ledger_audit. */
#ifndef TALLY_LEDGER_AUDIT_H
#define TALLY_LEDGER_AUDIT_H

#include <stdbool.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "src/err.h"

/* Called on the auditing thread now and then (every few thousand
 * transactions): height reached, head height, transactions so far. */
typedef void (*ledger_audit_progress_fn)(void *ctx, uint64_t height, uint64_t head, uint64_t txs);

struct ledger_audit_opts {
    ledger_audit_progress_fn progress; /* may be NULL */
    void *progress_ctx;
    /* Worker threads for signatures, hashes and the per-block LtHash deltas
     * (the auditing thread executes); 0 = number of CPUs (max 64). */
    unsigned workers;
    /* The cluster's replica keys, to verify checkpoint certificate signatures
     * with `cert_quorum` (2f+1); NULL: certificates are checked against the
     * chain only. */
    const tc_pubkey *cert_keys;
    uint32_t cert_n;
    uint32_t cert_quorum;
};

#define LEDGER_AUDIT_NO_HEIGHT UINT64_MAX

struct ledger_audit_report {
    bool intact;                  /* true: no problem found */
    char problem[512];            /* the first problem ("height 5: prev_hash does not ...") */
    uint64_t problem_height;      /* its block height, or LEDGER_AUDIT_NO_HEIGHT */
    uint64_t blocks;              /* blocks checked (including genesis) */
    uint64_t txs;                 /* transactions checked (genesis entries not counted) */
    uint64_t accounts;            /* accounts in the re-executed state */
    uint64_t head_height;         /* of the last block checked */
    tc_hash head_hash;            /* its hash */
    tc_hash state_digest;         /* re-executed state digest at the head */
    tc_hash genesis_hash;         /* the chain id */
    uint64_t certs;               /* checkpoint certificates checked */
    uint64_t last_cert_height;    /* highest certified height, or LEDGER_AUDIT_NO_HEIGHT */
    bool cert_signatures_checked; /* their signatures were verified (opts->cert_keys) */
    double seconds;               /* wall time */
    double tx_per_sec;            /* txs / seconds */
};

/* Audit the data directory dir. Returns 0 when the audit ran to a verdict
 * (read out->intact), or a TALLY_E* code with err set when it could not run
 * (missing directory, unreadable database, out of memory). opts may be NULL. */
int ledger_audit(const char *dir, const struct ledger_audit_opts *opts,
                 struct ledger_audit_report *out, struct tally_err *err);

#endif
