#include "tests/helpers/ledger_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
