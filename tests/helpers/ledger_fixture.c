#include "tests/helpers/ledger_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rocksdb/c.h>

#include "ledger/ledger_internal.h"
#include "tests/helpers/tmpdir.h"

void lf_keypair(uint32_t i, tc_keypair *kp)
{
    uint8_t seed[TC_SEED_BYTES] = {0};
    seed[0] = (uint8_t)i;
    seed[1] = (uint8_t)(i >> 8);
    seed[2] = (uint8_t)(i >> 16);
    seed[3] = (uint8_t)(i >> 24);
    seed[31] = 0x7a;
    if (tc_keypair_from_seed(kp, seed) != TALLY_OK)
        abort();
}

void lf_transfer(const tc_keypair *kp, const tc_pubkey *to, uint64_t amount, uint64_t nonce,
                 uint8_t out[LEDGER_TX_BYTES])
{
    struct ledger_tx tx = {.version = LEDGER_TX_VERSION,
                           .kind = LEDGER_TX_KIND_TRANSFER,
                           .from = kp->pk,
                           .to = *to,
                           .amount = amount,
                           .nonce = nonce};
    ledger_tx_sign(&tx, kp);
    ledger_tx_encode(&tx, out);
}

char *lf_tmpdir(void)
{
    char path[TMPDIR_PATH_MAX];
    if (tmpdir_create(path, sizeof(path)) != 0)
        abort();
    char *p = strdup(path);
    if (p == NULL)
        abort();
    return p;
}

void lf_rmdir(char *path)
{
    if (path == NULL)
        return;
    if (tmpdir_remove(path) != 0)
        fprintf(stderr, "warning: could not remove %s\n", path);
    free(path);
}

int lf_copydir(const char *src, const char *dst)
{
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", src, dst);
    return system(cmd) == 0 ? 0 : -1;
}

struct raw_db {
    rocksdb_options_t *opts;
    rocksdb_t *db;
    rocksdb_column_family_handle_t *cf[2]; /* default, accounts */
};

static void raw_open(struct raw_db *r, const char *dir)
{
    const char *names[2] = {"default", LEDGER_ACCOUNTS_CF};
    r->opts = rocksdb_options_create();
    const rocksdb_options_t *cf_opts[2] = {r->opts, r->opts};
    char *e = NULL;
    r->db = rocksdb_open_column_families(r->opts, dir, 2, names, cf_opts, r->cf, &e);
    if (e != NULL) {
        fprintf(stderr, "lf_raw: opening %s: %s\n", dir, e);
        abort();
    }
}

static rocksdb_column_family_handle_t *raw_cf(struct raw_db *r, const uint8_t *key, size_t klen)
{
    return r->cf[klen > 0 && key[0] == LEDGER_KEY_ACCOUNT];
}

static void raw_close(struct raw_db *r, char *e)
{
    if (e != NULL) {
        fprintf(stderr, "lf_raw: %s\n", e);
        abort();
    }
    rocksdb_column_family_handle_destroy(r->cf[0]);
    rocksdb_column_family_handle_destroy(r->cf[1]);
    rocksdb_close(r->db);
    rocksdb_options_destroy(r->opts);
}

char *lf_raw_get(const char *dir, const uint8_t *key, size_t klen, size_t *len)
{
    struct raw_db r;
    raw_open(&r, dir);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char *e = NULL;
    char *val = rocksdb_get_cf(r.db, ro, raw_cf(&r, key, klen), (const char *)key, klen, len, &e);
    rocksdb_readoptions_destroy(ro);
    raw_close(&r, e);
    return val;
}

void lf_raw_put(const char *dir, const uint8_t *key, size_t klen, const void *val, size_t vlen)
{
    struct raw_db r;
    raw_open(&r, dir);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    char *e = NULL;
    if (val == NULL)
        rocksdb_delete_cf(r.db, wo, raw_cf(&r, key, klen), (const char *)key, klen, &e);
    else
        rocksdb_put_cf(r.db, wo, raw_cf(&r, key, klen), (const char *)key, klen, (const char *)val,
                       vlen, &e);
    rocksdb_writeoptions_destroy(wo);
    raw_close(&r, e);
}
