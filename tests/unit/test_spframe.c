/* SP framing (src/spframe.c): handshakes, headers, and parsing of whole,
 * partial, oversized, lying and pair1 frames. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "src/spframe.h"

static void test_handshake(void **state)
{
    (void)state;
    uint8_t hs[SPFRAME_HANDSHAKE];
    spframe_handshake(hs, SPFRAME_PULL0);
    const uint8_t pull0[SPFRAME_HANDSHAKE] = {0, 'S', 'P', 0, 0, 0x51, 0, 0};
    assert_memory_equal(hs, pull0, sizeof(pull0));
    assert_true(spframe_handshake_ok(hs, SPFRAME_PULL0));
    assert_false(spframe_handshake_ok(hs, SPFRAME_PUSH0));
    assert_false(spframe_handshake_ok(hs, SPFRAME_PAIR1));
    hs[6] = 1; /* reserved bytes must be zero */
    assert_false(spframe_handshake_ok(hs, SPFRAME_PULL0));
}

static void test_push_round_trip(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t h = spframe_header(buf, 5, false);
    assert_int_equal(h, SPFRAME_HEADER);
    memcpy(buf + h, "hello", 5);
    struct spframe_next f;
    /* Every prefix is incomplete and says how much the frame needs. */
    for (size_t have = 0; have < h + 5; have++) {
        assert_int_equal(spframe_parse(buf, have, 100, false, &f), SPFRAME_NEED);
        assert_int_equal(f.need, have < SPFRAME_HEADER ? SPFRAME_HEADER : h + 5);
    }
    assert_int_equal(spframe_parse(buf, h + 5, 100, false, &f), SPFRAME_FRAME);
    assert_int_equal(f.consumed, h + 5);
    assert_int_equal(f.len, 5);
    assert_memory_equal(f.body, "hello", 5);
    /* Exactly at the bound is fine, one above is not. */
    assert_int_equal(spframe_parse(buf, h + 5, 5, false, &f), SPFRAME_FRAME);
    assert_int_equal(spframe_parse(buf, h + 5, 4, false, &f), SPFRAME_BAD);
}

static void test_lying_length(void **state)
{
    (void)state;
    /* A header claiming 2^40 (or 2^64 - 1) bytes is rejected at once, with
     * nothing more read and nothing allocated. */
    uint8_t buf[SPFRAME_HEADER] = {0, 0, 1, 0, 0, 0, 0, 0};
    struct spframe_next f;
    assert_int_equal(spframe_parse(buf, sizeof(buf), 1u << 20, false, &f), SPFRAME_BAD);
    memset(buf, 0xff, sizeof(buf));
    assert_int_equal(spframe_parse(buf, sizeof(buf), 1u << 20, true, &f), SPFRAME_BAD);
}

static void test_pair1(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t h = spframe_header(buf, 3, true);
    assert_int_equal(h, SPFRAME_HEADER + SPFRAME_HOPS);
    assert_int_equal(buf[7], 3 + SPFRAME_HOPS); /* the length counts the hop count */
    assert_int_equal(buf[11], 1);
    memcpy(buf + h, "abc", 3);
    struct spframe_next f;
    assert_int_equal(spframe_parse(buf, h + 3, 3, true, &f), SPFRAME_FRAME);
    assert_int_equal(f.len, 3);
    assert_memory_equal(f.body, "abc", 3);
    assert_int_equal(f.consumed, h + 3);
    /* max_body bounds the message without its hop count. */
    assert_int_equal(spframe_parse(buf, h + 3, 2, true, &f), SPFRAME_BAD);

    buf[11] = SPFRAME_PAIR1_TTL + 1; /* too many hops: dropped, not fatal */
    assert_int_equal(spframe_parse(buf, h + 3, 3, true, &f), SPFRAME_SKIP);
    assert_int_equal(f.consumed, h + 3);
    buf[11] = 1;
    buf[9] = 1; /* a hop count above 255 is malformed */
    assert_int_equal(spframe_parse(buf, h + 3, 3, true, &f), SPFRAME_BAD);

    /* A pair1 frame too short to hold its hop count. */
    uint8_t shorty[SPFRAME_HEADER + 2] = {0, 0, 0, 0, 0, 0, 0, 2, 0, 0};
    assert_int_equal(spframe_parse(shorty, sizeof(shorty), 100, true, &f), SPFRAME_BAD);
}

static void test_back_to_back(void **state)
{
    (void)state;
    uint8_t buf[128];
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        off += spframe_header(buf + off, (size_t)i, false);
        memset(buf + off, 'a' + i, (size_t)i);
        off += (size_t)i;
    }
    size_t at = 0;
    for (int i = 0; i < 3; i++) {
        struct spframe_next f;
        assert_int_equal(spframe_parse(buf + at, off - at, 10, false, &f), SPFRAME_FRAME);
        assert_int_equal(f.len, (size_t)i);
        at += f.consumed;
    }
    assert_int_equal(at, off);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake),    cmocka_unit_test(test_push_round_trip),
        cmocka_unit_test(test_lying_length), cmocka_unit_test(test_pair1),
        cmocka_unit_test(test_back_to_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
