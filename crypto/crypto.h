/* Tally crypto: Ed25519 (libsodium), SHA-256 and Merkle roots (OpenSSL EVP),
 * hex, and an incremental multiset hash (LtHash) for the ledger's state digest.
 *
 * In libsodium's manner: fixed-size types, caller-supplied buffers, verify is
 * warn_unused_result, secret keys live in sodium_malloc'd memory wiped on free.
 * Prefix: tc_. Call tc_init() once per process before anything else. */
#ifndef TALLY_CRYPTO_H
#define TALLY_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "src/err.h"

#define TC_PUBKEY_BYTES 32
#define TC_SEED_BYTES 32
#define TC_SECRET_BYTES 64
#define TC_SIG_BYTES 64
#define TC_HASH_BYTES 32

typedef struct tc_pubkey {
    uint8_t b[TC_PUBKEY_BYTES];
} tc_pubkey;

typedef struct tc_sig {
    uint8_t b[TC_SIG_BYTES];
} tc_sig;

typedef struct tc_hash {
    uint8_t b[TC_HASH_BYTES];
} tc_hash;

/* A signing key pair. sk points at TC_SECRET_BYTES of guarded memory owned by
 * the key pair; release with tc_keypair_free (wipes it). */
typedef struct tc_keypair {
    tc_pubkey pk;
    uint8_t *sk;
} tc_keypair;

/* Initialise libsodium and OpenSSL's digests. Returns 0 or TALLY_ECRYPTO. */
int tc_init(void);

int tc_keypair_generate(tc_keypair *kp);
/* Replace kp's key with a fresh random one, reusing its guarded memory (for
 * writing many keys: sodium_malloc per key costs more than the key). */
void tc_keypair_regenerate(tc_keypair *kp);
/* Deterministic key pair from a 32-byte seed (tests, key files). */
int tc_keypair_from_seed(tc_keypair *kp, const uint8_t seed[TC_SEED_BYTES]);
/* Copy the 32-byte seed out of kp (for writing key files). */
void tc_keypair_seed(const tc_keypair *kp, uint8_t seed[TC_SEED_BYTES]);
void tc_keypair_free(tc_keypair *kp);

void tc_sign(const tc_keypair *kp, const uint8_t *msg, size_t len, tc_sig *out);
/* 0 when sig is pk's signature over msg, TALLY_EBADSIG otherwise. */
int tc_verify(const tc_pubkey *pk, const uint8_t *msg, size_t len, const tc_sig *sig)
    __attribute__((warn_unused_result));

/* SHA-256. Thread-safe; the digest implementation is fetched once in tc_init. */
void tc_sha256(const uint8_t *data, size_t len, tc_hash *out);
/* SHA-256 of two buffers concatenated (Merkle inner nodes, domain tags). */
void tc_sha256_2(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, tc_hash *out);

/* Merkle root over n leaf hashes: inner node = SHA-256(0x01 || left || right),
 * an odd node at the end of a level is promoted unchanged; the root of zero
 * leaves is 32 zero bytes, of one leaf the leaf itself. Leaves are expected to
 * be domain-separated by the caller (SHA-256(0x00 || item) style). */
void tc_merkle_root(const tc_hash *leaves, size_t n, tc_hash *out);

int tc_equal(const void *a, const void *b, size_t len); /* constant time, 1 when equal */

/* Lower-case hex. out must hold 2*len+1 bytes; it is NUL-terminated. */
void tc_hex_encode(const uint8_t *in, size_t len, char *out);
/* Decode exactly outlen bytes from a hex string of exactly 2*outlen chars.
 * Returns 0 or TALLY_EFORMAT. */
int tc_hex_decode(const char *hex, uint8_t *out, size_t outlen);

/* LtHash16: a homomorphic multiset hash. The state is 1024 16-bit lanes; an
 * element e maps to lanes by expand(e), 2048 bytes read as little-endian u16s:
 *
 *     key       = SHA-256(TC_LTHASH_TAG || e)
 *     expand(e) = ChaCha20-IETF keystream (RFC 8439) under key, nonce all
 *                 zero, block counter 0..31
 *
 * add/remove cost one expansion each (~1.2 us; SHAKE256, used before, took
 * ~4.9 us), independent of how many elements the set holds.
 * tc_lthash_digest is SHA-256 over the 2048-byte lane vector.
 *
 * Why this is as sound as SHAKE256(e): LtHash's security argument (Bellare
 * and Micciancio 1997; Lewi et al. 2019, who use BLAKE2X) treats expand as a
 * random function of e; nothing here is secret. SHA-256's collision
 * resistance gives every element its own key (the fixed-length tag keeps
 * tag || e unambiguous); with SHA-256 idealised those keys are independent
 * uniform 256-bit strings, and ChaCha20's keystream under a uniform key is
 * indistinguishable from random bytes (its PRF security). The keys are
 * public, so what remains assumed is that ChaCha20's block function has no
 * structure an attacker could use to find a sum of expansions that cancels
 * mod 2^16, an idealisation of the same kind as SHAKE256's of Keccak-f. The
 * shape (hash to a key, expand with a counter) is BLAKE2X's. */
#define TC_LTHASH_LANES 1024
#define TC_LTHASH_BYTES (TC_LTHASH_LANES * 2)
#define TC_LTHASH_TAG "tally-lthash16-v1"
typedef struct tc_lthash {
    uint16_t lane[TC_LTHASH_LANES];
} tc_lthash;

void tc_lthash_zero(tc_lthash *h);
void tc_lthash_add(tc_lthash *h, const uint8_t *elem, size_t len);
void tc_lthash_remove(tc_lthash *h, const uint8_t *elem, size_t len);
void tc_lthash_digest(const tc_lthash *h, tc_hash *out);
/* Canonical bytes (2048, little-endian lanes) for storage; load checks size. */
void tc_lthash_serialize(const tc_lthash *h, uint8_t out[TC_LTHASH_BYTES]);
void tc_lthash_deserialize(tc_lthash *h, const uint8_t in[TC_LTHASH_BYTES]);

/* Key files: JSON {"type":"tally-ed25519-key","public_key":hex,"seed":hex},
 * written with mode 0600 (never overwriting an existing file), read back with
 * errors naming the file and what is wrong (missing, wrong permissions, wrong
 * format, wrong size, public key not matching the seed). */
int tc_keyfile_write(const char *path, const tc_keypair *kp, struct tally_err *err);
/* TC_KEYFILE_NOSYNC skips the per-file fsync: the caller makes a whole
 * directory of key files durable at once (syncfs). */
#define TC_KEYFILE_NOSYNC 1u
int tc_keyfile_write_flags(const char *path, const tc_keypair *kp, unsigned flags,
                           struct tally_err *err);
int tc_keyfile_read(const char *path, tc_keypair *kp, struct tally_err *err);
/* The same on the bytes of a key file already read (path names it in
 * messages): what tc_keyfile_read does after its permission and size checks. */
int tc_keyfile_parse(const char *buf, size_t len, const char *path, tc_keypair *kp,
                     struct tally_err *err);

/* A public key as 64 hex chars. Returns 0 or TALLY_EFORMAT (with err set). */
int tc_pubkey_parse(const char *hex, tc_pubkey *pk, struct tally_err *err);

#endif
