/* libFuzzer: checkpoint certificate decoder; what decodes must re-encode to
 * the same bytes, sort, and go through verification without crashing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ledger/cert.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (tc_init() != TALLY_OK)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ledger_cert c;
    struct tally_err err = {0};
    if (ledger_cert_decode(data, size, &c, &err) != TALLY_OK)
        return 0;
    uint8_t again[LEDGER_CERT_MAX_BYTES];
    if (ledger_cert_encoded_size(&c) != size || ledger_cert_encode(&c, again) != size ||
        memcmp(again, data, size) != 0)
        abort();
    /* Verify against the signers' own keys, so the signature checks run too
     * (on a zero chain id; small certificates only, to keep the rate up). */
    tc_pubkey keys[LEDGER_CERT_MAX_SIGS];
    for (uint32_t i = 0; i < c.count; i++)
        keys[i] = c.sigs[i].signer;
    tc_hash chain = {{0}};
    if (c.count <= 4)
        (void)!ledger_cert_verify(&c, &chain, keys, c.count, c.count, &err);
    ledger_cert_sort(&c);
    return 0;
}
