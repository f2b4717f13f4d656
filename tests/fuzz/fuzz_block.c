/* libFuzzer: block decoder, then the hashes an auditor computes over it. */
#include <stdint.h>
#include <stdlib.h>

#include "ledger/block.h"

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
    struct ledger_block b;
    struct tally_err err = {0};
    if (ledger_block_decode(data, size, &b, &err) != TALLY_OK)
        return 0;
    size_t item_bytes = b.h.height == 0 ? LEDGER_GENESIS_ENTRY_BYTES : LEDGER_TX_BYTES;
    tc_hash root, results;
    ledger_block_tx_root(b.items, item_bytes, b.h.tx_count, &root);
    ledger_block_results_hash(b.results, b.h.tx_count, &results);
    return 0;
}
