/* libFuzzer: SP frame parsing (src/spframe.c) as the transport runs it over
 * whatever a connection sends: frames are taken one after another from the
 * input, as push0 and as pair1, and every answer must stay inside the input
 * and inside the bound. */
#include <stdint.h>
#include <stdlib.h>

#include "src/spframe.h"

#define FUZZ_MAX_BODY 4096

static void walk(const uint8_t *data, size_t size, bool pair1)
{
    size_t off = 0;
    for (;;) {
        struct spframe_next f;
        enum spframe_status st = spframe_parse(data + off, size - off, FUZZ_MAX_BODY, pair1, &f);
        if (st == SPFRAME_BAD)
            return;
        if (st == SPFRAME_NEED) {
            if (f.need <= size - off || f.need > SPFRAME_HEADER + FUZZ_MAX_BODY + SPFRAME_HOPS)
                abort(); /* claims more is needed than is there, and never beyond the bound */
            return;
        }
        if (f.consumed == 0 || f.consumed > size - off || f.len > FUZZ_MAX_BODY ||
            f.body < data + off || f.body + f.len > data + off + f.consumed)
            abort();
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < f.len; i++) /* touch every byte handed out */
            sink ^= f.body[i];
        (void)sink;
        off += f.consumed;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= SPFRAME_HANDSHAKE) {
        (void)spframe_handshake_ok(data, SPFRAME_PUSH0);
        (void)spframe_handshake_ok(data, SPFRAME_PAIR1);
    }
    walk(data, size, false);
    walk(data, size, true);
    return 0;
}
