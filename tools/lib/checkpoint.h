/* Checkpoint certificates for the tools: the JSON form `tally export` writes
 * and the checks of `tally verify-checkpoint`, as a library so that the unit
 * tests run them directly (tests/unit/test_cert.c).
 *
 * JSON line of a certificate (one per stored certificate, after the blocks):
 *   {"type":"checkpoint","height":H,"block_hash":hex,"state_digest":hex,
 *    "signatures":[{"signer":hex public key,"sig":hex signature},...]}
 * H is a JSON integer, or a decimal string above 2^63-1 (like every u64 of
 * the export).
 *
 * A verdict says whether a certificate holds for a ledger (a data directory
 * or an export) and the cluster of a configuration: 2f+1 valid signatures by
 * distinct replicas of the configuration over the statement of one chain
 * (ledger_cert_verify), the ledger's genesis is the configuration's, and the
 * ledger's block at that height has the certified block hash and state
 * digest. Prefix: checkpoint_. */
#ifndef TALLY_TOOLS_CHECKPOINT_H
#define TALLY_TOOLS_CHECKPOINT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "ledger/cert.h"
#include "src/err.h"

struct checkpoint_verdict {
    uint64_t height; /* of the certificate checked */
    bool valid;
    uint32_t signers[LEDGER_CERT_MAX_SIGS]; /* replica ids with a valid signature, ascending */
    uint32_t nsigners;
    uint32_t replicas;               /* n of the configuration */
    uint32_t needed;                 /* 2f+1 */
    tc_hash block_hash;              /* as certified */
    tc_hash state_digest;            /* as certified */
    char problem[TALLY_ERRMSG_SIZE]; /* when !valid: the precise reason (no height prefix) */
};

/* The JSON object of c (new reference; NULL when out of memory). */
json_t *checkpoint_cert_to_json(const struct ledger_cert *c);
/* Parse such an object back; TALLY_EFORMAT with err naming the field. */
int checkpoint_cert_from_json(const json_t *o, struct ledger_cert *out, struct tally_err *err);

/* The hash of the genesis block cfg's genesis file produces (the chain id). */
int checkpoint_config_chain_id(const struct tally_config *cfg, tc_hash *out, struct tally_err *err);

/* Check the certificate stored in data directory dir (opened read-only) at
 * *height, or the last one when height is NULL. Returns 0 when it came to a
 * verdict (read out->valid), or TALLY_E* with err set when it could not
 * (unreadable directory; TALLY_ENOTFOUND when no certificate is stored at
 * *height, naming the nearest certified heights, or none at all). */
int checkpoint_verify_data(const char *dir, const struct tally_config *cfg, const uint64_t *height,
                           struct checkpoint_verdict *out, struct tally_err *err);

/* The same over the JSON lines of `tally export` in file path (read twice:
 * a regular file, not a pipe). The chain id is the hash of the export's
 * genesis block line; block lines are re-hashed from their fields. */
int checkpoint_verify_export(const char *path, const struct tally_config *cfg,
                             const uint64_t *height, struct checkpoint_verdict *out,
                             struct tally_err *err);

#endif
