/* libFuzzer: the key file parser (JSON via jansson, hex fields, the seed and
 * public key checked against each other). */
#include <stdint.h>
#include <stdlib.h>

#include "crypto/crypto.h"

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
    tc_keypair kp;
    struct tally_err err = {0};
    if (tc_keyfile_parse((const char *)data, size, "fuzz.key", &kp, &err) == TALLY_OK)
        tc_keypair_free(&kp);
    return 0;
}
