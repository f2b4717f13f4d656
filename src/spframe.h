/* SP framing: the bytes NNG's SP protocols put on a TCP connection, for the
 * transport's stream connections (src/transport.c).
 *
 * A connection starts with an 8-byte handshake each way: 0, 'S', 'P', 0, the
 * sender's protocol number (u16 big-endian), 0, 0. Then each message is a
 * frame: its length (u64 big-endian) and its bytes. pair1 messages begin with
 * a u32 big-endian hop count, which NNG's pair1 strips on receipt (above 255
 * it is malformed, above its TTL of 8 the message is dropped) and sets to 1
 * on send.
 *
 * Pure functions over caller-owned buffers; nothing here allocates, and the
 * length a frame claims is checked against the caller's bound before it is
 * believed. Prefix: spframe_. */
#ifndef TALLY_SPFRAME_H
#define TALLY_SPFRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPFRAME_HANDSHAKE 8
#define SPFRAME_HEADER 8      /* the u64 length */
#define SPFRAME_HOPS 4        /* pair1's hop count */
#define SPFRAME_PAIR1_TTL 8   /* NNG's default NNG_OPT_MAXTTL */
#define SPFRAME_MAX_HEADER 12 /* SPFRAME_HEADER + SPFRAME_HOPS */

/* NNG's protocol numbers (major << 4 | minor). */
enum spframe_proto { SPFRAME_PAIR1 = 0x11, SPFRAME_PUSH0 = 0x50, SPFRAME_PULL0 = 0x51 };

void spframe_handshake(uint8_t out[SPFRAME_HANDSHAKE], enum spframe_proto self);
/* Whether in is the handshake of a `peer` speaker. */
bool spframe_handshake_ok(const uint8_t in[SPFRAME_HANDSHAKE], enum spframe_proto peer);

/* Write the header of a frame carrying body_len bytes (with a hop count of 1
 * when pair1) to out; returns its length (8, or 12 for pair1). */
size_t spframe_header(uint8_t out[SPFRAME_MAX_HEADER], size_t body_len, bool pair1);

enum spframe_status {
    SPFRAME_NEED,  /* incomplete: `need` bytes from buf's start hold the frame */
    SPFRAME_FRAME, /* a message: body, len; `consumed` bytes used */
    SPFRAME_SKIP,  /* a well-formed pair1 message past its TTL: drop, `consumed` */
    SPFRAME_BAD,   /* malformed, or longer than max_body: close the connection */
};

struct spframe_next {
    size_t consumed, need;
    const uint8_t *body;
    size_t len;
};

/* Look at the frame at the start of buf[0..have). max_body bounds the
 * message (without pair1's hop count). */
enum spframe_status spframe_parse(const uint8_t *buf, size_t have, size_t max_body, bool pair1,
                                  struct spframe_next *out);

#endif
