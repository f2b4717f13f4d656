/* Test helpers for the ledger: deterministic keys, signed transactions and
 * temporary data directories. Linked into every test binary. */
#ifndef TALLY_TESTS_LEDGER_FIXTURE_H
#define TALLY_TESTS_LEDGER_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "ledger/ledger.h"
#include "ledger/tx.h"

/* Key pair number i (seed = i as u32 LE, rest zero); release with tc_keypair_free. */
void lf_keypair(uint32_t i, tc_keypair *kp);
/* Encode a transfer signed by kp into out (146 bytes). */
void lf_transfer(const tc_keypair *kp, const tc_pubkey *to, uint64_t amount, uint64_t nonce,
                 uint8_t out[LEDGER_TX_BYTES]);
/* A fresh directory (tests/helpers/tmpdir.h); returns a malloc'd path (free with
 * lf_rmdir). Aborts on failure. */
char *lf_tmpdir(void);
/* rm -rf path, then free(path). */
void lf_rmdir(char *path);
/* cp -a src dst (dst must not exist). Returns 0 on success. */
int lf_copydir(const char *src, const char *dst);

/* Raw access to a closed ledger's RocksDB in dir, for writing what another
 * program or a fault would leave: opened with both column families, an 'A'
 * key in the accounts one, any other in "default". lf_raw_get returns a
 * malloc'd value (NULL when absent) and its size in *len; lf_raw_put with
 * val NULL deletes the key. Abort on a RocksDB error. */
char *lf_raw_get(const char *dir, const uint8_t *key, size_t klen, size_t *len);
void lf_raw_put(const char *dir, const uint8_t *key, size_t klen, const void *val, size_t vlen);

#endif
