/* libFuzzer: transaction decoder. Whatever decodes must re-encode to the same
 * bytes (the encoding is canonical). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ledger/tx.h"

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
    struct ledger_tx tx;
    if (ledger_tx_decode(data, size, &tx) != TALLY_OK)
        return 0;
    uint8_t again[LEDGER_TX_BYTES];
    ledger_tx_encode(&tx, again);
    if (memcmp(again, data, LEDGER_TX_BYTES) != 0)
        abort(); /* not canonical */
    return 0;
}
