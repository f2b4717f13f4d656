/* SP framing: see spframe.h. */
#include "src/spframe.h"

#include <string.h>

void spframe_handshake(uint8_t out[SPFRAME_HANDSHAKE], enum spframe_proto self)
{
    const uint8_t hs[SPFRAME_HANDSHAKE] = {
        0, 'S', 'P', 0, (uint8_t)((unsigned)self >> 8), (uint8_t)self, 0, 0};
    memcpy(out, hs, sizeof(hs));
}

bool spframe_handshake_ok(const uint8_t in[SPFRAME_HANDSHAKE], enum spframe_proto peer)
{
    uint8_t want[SPFRAME_HANDSHAKE];
    spframe_handshake(want, peer);
    return memcmp(in, want, SPFRAME_HANDSHAKE) == 0;
}

size_t spframe_header(uint8_t out[SPFRAME_MAX_HEADER], size_t body_len, bool pair1)
{
    uint64_t len = (uint64_t)body_len + (pair1 ? SPFRAME_HOPS : 0);
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)len;
        len >>= 8;
    }
    if (!pair1)
        return SPFRAME_HEADER;
    const uint8_t one_hop[SPFRAME_HOPS] = {0, 0, 0, 1};
    memcpy(out + SPFRAME_HEADER, one_hop, SPFRAME_HOPS);
    return SPFRAME_HEADER + SPFRAME_HOPS;
}

enum spframe_status spframe_parse(const uint8_t *buf, size_t have, size_t max_body, bool pair1,
                                  struct spframe_next *out)
{
    memset(out, 0, sizeof(*out));
    if (have < SPFRAME_HEADER) {
        out->need = SPFRAME_HEADER;
        return SPFRAME_NEED;
    }
    uint64_t len = 0;
    for (int i = 0; i < 8; i++)
        len = len << 8 | buf[i];
    uint64_t max = (uint64_t)max_body + (pair1 ? SPFRAME_HOPS : 0);
    if (len > max || (pair1 && len < SPFRAME_HOPS))
        return SPFRAME_BAD; /* never believed, never allocated */
    if (have - SPFRAME_HEADER < len) {
        out->need = SPFRAME_HEADER + (size_t)len;
        return SPFRAME_NEED;
    }
    out->consumed = SPFRAME_HEADER + (size_t)len;
    out->body = buf + SPFRAME_HEADER;
    out->len = (size_t)len;
    if (!pair1)
        return SPFRAME_FRAME;
    const uint8_t *hops = buf + SPFRAME_HEADER;
    if (hops[0] != 0 || hops[1] != 0 || hops[2] != 0)
        return SPFRAME_BAD; /* above 255 */
    out->body += SPFRAME_HOPS;
    out->len -= SPFRAME_HOPS;
    return hops[3] > SPFRAME_PAIR1_TTL ? SPFRAME_SKIP : SPFRAME_FRAME;
}
