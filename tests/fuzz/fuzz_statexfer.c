/* libFuzzer: the state chunk decoder (STATE-RESP bodies from peers), then
 * everything a lagging replica checks before applying: each block decoded,
 * the chain walked from a fixed head. Signatures cannot be forged by a
 * fuzzer, so the certificate's are left to ledger_cert_verify's own tests. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "src/statexfer.h"

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
    struct stx_chunk c;
    struct tally_err err = {0};
    if (stx_decode(data, size, &c, &err) != TALLY_OK)
        return 0;
    for (uint32_t i = 0; i < c.nblocks && i < 64; i++) {
        struct ledger_block b;
        (void)stx_block(&c, i, &b, &err);
    }
    tc_hash head;
    memset(head.b, 0, sizeof(head.b));
    (void)stx_verify_chain(&c, c.first - 1, &head, &err);
    return 0;
}
