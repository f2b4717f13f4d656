/* Checkpoint certificates: 2f+1 replicas' signatures over one checkpoint
 * statement, verifiable offline with nothing but the cluster's public keys.
 *
 * Every K blocks each replica signs the checkpoint statement of the block it
 * just executed and broadcasts it (src/, message CHECKPOINT). 2f+1 matching
 * signed statements from distinct replicas form a stable checkpoint
 * certificate; the replica stores it in its ledger (key 'C', below) and
 * serves it with blocks during state transfer.
 *
 * Statement (LEDGER_CKPT_STATEMENT_BYTES = 120), the bytes each replica signs:
 *   offset size field
 *   0      16   tag "TALLY-CKPT-V1" padded with NULs to 16 bytes
 *   16     32   chain id: the hash of the ledger's genesis block (block 0)
 *   48     8    height u64 LE (= the PBFT sequence number of the checkpoint)
 *   56     32   block hash at that height
 *   88     32   state digest after that block (= the block header's state_digest)
 * The chain id binds a signature to one cluster: a statement signed for
 * another genesis never verifies here.
 *
 * Encoded certificate (ledger_cert_encode; LEDGER_CERT_FIXED_BYTES + 96 * count):
 *   0      8    height u64 LE
 *   8      32   block hash
 *   40     32   state digest
 *   72     4    count u32 LE (1..LEDGER_CERT_MAX_SIGS)
 *   76     ..   count x (32 signer public key || 64 Ed25519 signature over the statement)
 * Signers are listed in ascending public-key order (memcmp), so one set of
 * signatures has exactly one encoding. The decoder checks every length and
 * bound, rejects trailing bytes, and rejects count 0 or > LEDGER_CERT_MAX_SIGS;
 * ordering and duplicates are the verifier's business (so that a tampered
 * certificate decodes and gets a precise verdict).
 *
 * Storage: 'C' || height u64 BIG-endian -> encoded certificate, written only
 * for heights the ledger already holds (or in the same WriteBatch as that
 * block). Prefix: ledger_cert_ / ledger_ckpt_. */
#ifndef TALLY_LEDGER_CERT_H
#define TALLY_LEDGER_CERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "src/err.h"

#define LEDGER_CKPT_TAG "TALLY-CKPT-V1"
#define LEDGER_CKPT_TAG_BYTES 16
#define LEDGER_CKPT_STATEMENT_BYTES 120
#define LEDGER_CERT_MAX_SIGS 16 /* = PBFT_MAX_REPLICAS */
#define LEDGER_CERT_FIXED_BYTES 76
#define LEDGER_CERT_SIG_BYTES (TC_PUBKEY_BYTES + TC_SIG_BYTES) /* 96 */
#define LEDGER_CERT_MAX_BYTES                                                                      \
    (LEDGER_CERT_FIXED_BYTES + LEDGER_CERT_MAX_SIGS * LEDGER_CERT_SIG_BYTES)

/* What a checkpoint says: at `height` the chain's block hash and state digest. */
struct ledger_ckpt {
    uint64_t height;
    tc_hash block_hash;
    tc_hash state_digest;
};

struct ledger_cert_sig {
    tc_pubkey signer;
    tc_sig sig;
};

struct ledger_cert {
    struct ledger_ckpt ck;
    uint32_t count;
    struct ledger_cert_sig sigs[LEDGER_CERT_MAX_SIGS];
};

/* The 120 bytes a replica signs for ck on the chain with genesis hash chain_id. */
void ledger_ckpt_statement(const tc_hash *chain_id, const struct ledger_ckpt *ck,
                           uint8_t out[LEDGER_CKPT_STATEMENT_BYTES]);

/* Sign / verify one statement (tc_sign / tc_verify over the statement bytes). */
void ledger_ckpt_sign(const tc_keypair *kp, const tc_hash *chain_id, const struct ledger_ckpt *ck,
                      tc_sig *out);
int ledger_ckpt_verify(const tc_pubkey *pk, const tc_hash *chain_id, const struct ledger_ckpt *ck,
                       const tc_sig *sig) __attribute__((warn_unused_result));

/* Sort c->sigs by signer (the canonical order); call before encoding a
 * certificate assembled from messages. */
void ledger_cert_sort(struct ledger_cert *c);

/* Bytes ledger_cert_encode writes for c. */
size_t ledger_cert_encoded_size(const struct ledger_cert *c);
/* Encode c into out (ledger_cert_encoded_size(c) bytes); returns that size.
 * c->count must be 1..LEDGER_CERT_MAX_SIGS. */
size_t ledger_cert_encode(const struct ledger_cert *c, uint8_t *out);
/* Decode exactly len bytes. TALLY_ETRUNC / TALLY_ETOOBIG / TALLY_EFORMAT
 * with err saying which field. Never crashes on garbage. */
int ledger_cert_decode(const uint8_t *in, size_t len, struct ledger_cert *out,
                       struct tally_err *err);

/* Does c certify its checkpoint for the cluster whose replicas have keys
 * keys[0..n-1], on the chain chain_id? Checks, in this order, and stops at the
 * first failure with err naming it:
 *   - a signer that is not one of keys[]:  TALLY_EBADSIG "signature 2 is by
 *     key 3f9a…, not a replica of the cluster"
 *   - a signer listed twice:                TALLY_EBADSIG "replica 1 signed twice"
 *   - a signature that does not verify:     TALLY_EBADSIG "the signature of replica 2
 *     does not verify"
 *   - fewer than `quorum` distinct valid signers: TALLY_EBADSIG "too few
 *     signatures: 2 of the 3 needed"
 * Returns 0 when every signature is valid and there are at least `quorum`. */
int ledger_cert_verify(const struct ledger_cert *c, const tc_hash *chain_id, const tc_pubkey *keys,
                       uint32_t n, uint32_t quorum, struct tally_err *err)
    __attribute__((warn_unused_result));

#endif
