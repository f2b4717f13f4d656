/* crypto/: signatures, SHA-256, Merkle roots, hex, LtHash and key files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "crypto/crypto.h"
#include "tests/helpers/tmpdir.h"

/* Fail with err's message when rc is not TALLY_OK. */
#define assert_ok(rc, err)                                                                         \
    do {                                                                                           \
        int rc_ = (rc);                                                                            \
        if (rc_ != TALLY_OK)                                                                       \
            fail_msg("expected ok, got %d: %s", rc_, tally_err_text(err));                         \
    } while (0)

static void seeded_keypair(tc_keypair *kp, uint8_t fill)
{
    uint8_t seed[TC_SEED_BYTES];
    memset(seed, fill, sizeof(seed));
    assert_int_equal(tc_keypair_from_seed(kp, seed), TALLY_OK);
}

static int setup_tmp(void **state)
{
    static char dir[TMPDIR_PATH_MAX];
    if (tmpdir_create(dir, sizeof(dir)) != 0)
        return -1;
    *state = dir;
    return 0;
}

static int teardown_tmp(void **state)
{
    return tmpdir_remove(*state) == 0 ? 0 : -1;
}

/* ---- signatures ---------------------------------------------------------- */

static void test_sign_verify_round_trip(void **state)
{
    (void)state;
    tc_keypair kp;
    tc_sig sig;
    const uint8_t msg[] = "transfer 10 from a to b";
    assert_int_equal(tc_keypair_generate(&kp), TALLY_OK);
    tc_sign(&kp, msg, sizeof(msg), &sig);
    assert_int_equal(tc_verify(&kp.pk, msg, sizeof(msg), &sig), TALLY_OK);
    tc_keypair_free(&kp);
    assert_null(kp.sk);
}

static void test_verify_rejects_flipped_bits(void **state)
{
    (void)state;
    tc_keypair kp, other;
    tc_sig sig, bad;
    uint8_t msg[32] = {1, 2, 3};
    seeded_keypair(&kp, 0x11);
    seeded_keypair(&other, 0x22);
    tc_sign(&kp, msg, sizeof(msg), &sig);

    bad = sig;
    bad.b[5] ^= 0x01;
    assert_int_equal(tc_verify(&kp.pk, msg, sizeof(msg), &bad), TALLY_EBADSIG);

    msg[31] ^= 0x80;
    assert_int_equal(tc_verify(&kp.pk, msg, sizeof(msg), &sig), TALLY_EBADSIG);
    msg[31] ^= 0x80;

    assert_int_equal(tc_verify(&other.pk, msg, sizeof(msg), &sig), TALLY_EBADSIG);
    assert_int_equal(tc_verify(&kp.pk, msg, sizeof(msg), &sig), TALLY_OK);
    tc_keypair_free(&kp);
    tc_keypair_free(&other);
}

static void test_keypair_from_seed_is_deterministic(void **state)
{
    (void)state;
    tc_keypair a, b;
    uint8_t seed[TC_SEED_BYTES], back[TC_SEED_BYTES];
    memset(seed, 0x5a, sizeof(seed));
    seeded_keypair(&a, 0x5a);
    seeded_keypair(&b, 0x5a);
    assert_memory_equal(a.pk.b, b.pk.b, TC_PUBKEY_BYTES);
    tc_keypair_seed(&a, back);
    assert_memory_equal(seed, back, sizeof(seed));
    tc_keypair_free(&a);
    tc_keypair_free(&b);
}

/* ---- SHA-256 and Merkle ---------------------------------------------------- */

static void hash_from_hex(const char *hex, tc_hash *h)
{
    assert_int_equal(tc_hex_decode(hex, h->b, TC_HASH_BYTES), TALLY_OK);
}

static void test_sha256_known_answers(void **state)
{
    (void)state;
    tc_hash got, want, two;
    tc_sha256((const uint8_t *)"abc", 3, &got);
    hash_from_hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", &want);
    assert_memory_equal(got.b, want.b, TC_HASH_BYTES);

    tc_sha256((const uint8_t *)"", 0, &got);
    hash_from_hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", &want);
    assert_memory_equal(got.b, want.b, TC_HASH_BYTES);

    /* The two-part form hashes the concatenation. */
    tc_sha256((const uint8_t *)"abcdef", 6, &got);
    tc_sha256_2((const uint8_t *)"abc", 3, (const uint8_t *)"def", 3, &two);
    assert_memory_equal(got.b, two.b, TC_HASH_BYTES);
}

static void inner_node(const tc_hash *l, const tc_hash *r, tc_hash *out)
{
    uint8_t node[1 + 2 * TC_HASH_BYTES];
    node[0] = 0x01;
    memcpy(node + 1, l->b, TC_HASH_BYTES);
    memcpy(node + 1 + TC_HASH_BYTES, r->b, TC_HASH_BYTES);
    tc_sha256(node, sizeof(node), out);
}

static void test_merkle_roots(void **state)
{
    (void)state;
    tc_hash leaves[5], root, want, ab, cd, abcd;
    for (int i = 0; i < 5; i++) {
        uint8_t item[2] = {0x00, (uint8_t)i};
        tc_sha256(item, sizeof(item), &leaves[i]);
    }
    tc_hash zero;
    memset(zero.b, 0, sizeof(zero.b));

    tc_merkle_root(leaves, 0, &root);
    assert_memory_equal(root.b, zero.b, TC_HASH_BYTES);

    tc_merkle_root(leaves, 1, &root);
    assert_memory_equal(root.b, leaves[0].b, TC_HASH_BYTES);

    tc_merkle_root(leaves, 2, &root);
    inner_node(&leaves[0], &leaves[1], &ab);
    assert_memory_equal(root.b, ab.b, TC_HASH_BYTES);

    /* Three leaves: the odd third is promoted unchanged, not duplicated. */
    tc_merkle_root(leaves, 3, &root);
    inner_node(&ab, &leaves[2], &want);
    assert_memory_equal(root.b, want.b, TC_HASH_BYTES);
    tc_hash dup;
    inner_node(&leaves[2], &leaves[2], &dup);
    inner_node(&ab, &dup, &dup);
    assert_memory_not_equal(root.b, dup.b, TC_HASH_BYTES);

    /* Five: ((ab, cd), e). */
    tc_merkle_root(leaves, 5, &root);
    inner_node(&leaves[2], &leaves[3], &cd);
    inner_node(&ab, &cd, &abcd);
    inner_node(&abcd, &leaves[4], &want);
    assert_memory_equal(root.b, want.b, TC_HASH_BYTES);
}

static void test_merkle_large_matches_small_rule(void **state)
{
    (void)state;
    /* More than the 64-entry stack scratch: heap path, same rule. */
    enum { N = 130 };
    static tc_hash leaves[N];
    tc_hash root, left, right, want;
    for (int i = 0; i < N; i++) {
        uint8_t item[3] = {0x00, (uint8_t)(i >> 8), (uint8_t)i};
        tc_sha256(item, sizeof(item), &leaves[i]);
    }
    tc_merkle_root(leaves, N, &root);
    /* 130 = 128 + 2: the left 128 form a full tree, the right 2 are promoted up. */
    tc_merkle_root(leaves, 128, &left);
    tc_merkle_root(leaves + 128, 2, &right);
    inner_node(&left, &right, &want);
    assert_memory_equal(root.b, want.b, TC_HASH_BYTES);
}

/* ---- hex ------------------------------------------------------------------- */

static void test_hex_round_trip_and_bad_hex(void **state)
{
    (void)state;
    uint8_t in[4] = {0x00, 0xab, 0x7f, 0xff}, out[4];
    char hex[9];
    tc_hex_encode(in, sizeof(in), hex);
    assert_string_equal(hex, "00ab7fff");
    assert_int_equal(tc_hex_decode(hex, out, sizeof(out)), TALLY_OK);
    assert_memory_equal(in, out, sizeof(in));
    assert_int_equal(tc_hex_decode("00AB7FFF", out, sizeof(out)), TALLY_OK);
    assert_memory_equal(in, out, sizeof(in));

    assert_int_equal(tc_hex_decode("00ab7ff", out, sizeof(out)), TALLY_EFORMAT);    /* short */
    assert_int_equal(tc_hex_decode("00ab7fff00", out, sizeof(out)), TALLY_EFORMAT); /* long */
    assert_int_equal(tc_hex_decode("00ab7fzz", out, sizeof(out)), TALLY_EFORMAT);   /* not hex */
    assert_int_equal(tc_hex_decode("00ab 7ff", out, sizeof(out)), TALLY_EFORMAT);   /* space */
    assert_int_equal(tc_hex_decode("", out, sizeof(out)), TALLY_EFORMAT);

    tc_pubkey pk;
    struct tally_err err = {0};
    assert_int_equal(tc_pubkey_parse("abcd", &pk, &err), TALLY_EFORMAT);
    assert_non_null(strstr(err.msg, "64 hex"));
}

/* ---- LtHash ------------------------------------------------------------------ */

static void test_lthash_add_remove_returns_to_zero(void **state)
{
    (void)state;
    static tc_lthash h, zero;
    tc_hash d0, d1, d2;
    tc_lthash_zero(&h);
    tc_lthash_zero(&zero);
    tc_lthash_digest(&h, &d0);
    tc_lthash_add(&h, (const uint8_t *)"alice:100", 9);
    tc_lthash_add(&h, (const uint8_t *)"bob:7", 5);
    tc_lthash_digest(&h, &d1);
    assert_memory_not_equal(d0.b, d1.b, TC_HASH_BYTES);
    tc_lthash_remove(&h, (const uint8_t *)"alice:100", 9);
    tc_lthash_remove(&h, (const uint8_t *)"bob:7", 5);
    tc_lthash_digest(&h, &d2);
    assert_memory_equal(d0.b, d2.b, TC_HASH_BYTES);
    assert_memory_equal(h.lane, zero.lane, sizeof(h.lane));
}

/* Known answers computed outside tally (Python: hashlib's SHA-256 and the
 * `cryptography` package's ChaCha20, RFC 8439): expand(e) is the ChaCha20
 * keystream under SHA-256("tally-lthash16-v1" || e), zero nonce, counter 0. */
static void test_lthash_known_answers(void **state)
{
    (void)state;
    static tc_lthash h;
    static uint8_t bytes[TC_LTHASH_BYTES];
    static const uint8_t lanes_abc[16] = {0x42, 0x21, 0x3e, 0x9d, 0x42, 0x4b, 0xb9, 0xa5,
                                          0x73, 0x14, 0x7c, 0xcf, 0xae, 0xaa, 0x97, 0xee};
    tc_hash got, want;
    tc_lthash_zero(&h);
    tc_lthash_add(&h, (const uint8_t *)"abc", 3);
    assert_int_equal(h.lane[0], 8514);
    assert_int_equal(h.lane[TC_LTHASH_LANES - 1], 4756);
    tc_lthash_serialize(&h, bytes);
    assert_memory_equal(bytes, lanes_abc, sizeof(lanes_abc));
    tc_lthash_digest(&h, &got);
    hash_from_hex("84961ad003f7ddda7d9527260f0fcc3f937e98b4608831f23ac075b55c76825f", &want);
    assert_memory_equal(got.b, want.b, TC_HASH_BYTES);

    tc_lthash_zero(&h);
    tc_lthash_add(&h, (const uint8_t *)"alice:100", 9);
    tc_lthash_add(&h, (const uint8_t *)"bob:7", 5);
    tc_lthash_digest(&h, &got);
    hash_from_hex("d7c82917b91344815544c274f5fb296ec2bbb021c3245380bf06444232a15f59", &want);
    assert_memory_equal(got.b, want.b, TC_HASH_BYTES);
}

static void test_lthash_order_independent_and_serializes(void **state)
{
    (void)state;
    static tc_lthash a, b, c;
    static uint8_t bytes[TC_LTHASH_BYTES];
    tc_hash da, db, dc;
    const char *elems[] = {"x", "yy", "zzz", "w"};
    tc_lthash_zero(&a);
    tc_lthash_zero(&b);
    for (int i = 0; i < 4; i++)
        tc_lthash_add(&a, (const uint8_t *)elems[i], strlen(elems[i]));
    for (int i = 3; i >= 0; i--)
        tc_lthash_add(&b, (const uint8_t *)elems[i], strlen(elems[i]));
    tc_lthash_digest(&a, &da);
    tc_lthash_digest(&b, &db);
    assert_memory_equal(da.b, db.b, TC_HASH_BYTES);

    /* A different multiset differs; a round trip through bytes does not. */
    tc_lthash_add(&b, (const uint8_t *)"x", 1);
    tc_lthash_digest(&b, &db);
    assert_memory_not_equal(da.b, db.b, TC_HASH_BYTES);
    tc_lthash_serialize(&a, bytes);
    tc_lthash_deserialize(&c, bytes);
    tc_lthash_digest(&c, &dc);
    assert_memory_equal(da.b, dc.b, TC_HASH_BYTES);
}

/* ---- key files ------------------------------------------------------------------ */

static void test_keyfile_round_trip_mode_0600(void **state)
{
    char path[TMPDIR_PATH_MAX];
    tc_keypair kp, back;
    struct tally_err err = {0};
    struct stat st;
    tmpdir_join(path, sizeof(path), *state, "k.key");
    seeded_keypair(&kp, 0x42);
    assert_ok(tc_keyfile_write(path, &kp, &err), &err);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_ok(tc_keyfile_read(path, &back, &err), &err);
    assert_memory_equal(kp.pk.b, back.pk.b, TC_PUBKEY_BYTES);
    /* The read-back key signs like the original. */
    tc_sig sig;
    tc_sign(&back, (const uint8_t *)"m", 1, &sig);
    assert_int_equal(tc_verify(&kp.pk, (const uint8_t *)"m", 1, &sig), TALLY_OK);
    tc_keypair_free(&kp);
    tc_keypair_free(&back);
}

static void test_keyfile_refuses_overwrite(void **state)
{
    char path[TMPDIR_PATH_MAX];
    tc_keypair a, b, back;
    struct tally_err err = {0};
    tmpdir_join(path, sizeof(path), *state, "k.key");
    seeded_keypair(&a, 1);
    seeded_keypair(&b, 2);
    assert_ok(tc_keyfile_write(path, &a, &err), &err);
    assert_int_equal(tc_keyfile_write(path, &b, &err), TALLY_EEXIST);
    assert_non_null(strstr(err.msg, path));
    assert_ok(tc_keyfile_read(path, &back, &err), &err);
    assert_memory_equal(back.pk.b, a.pk.b, TC_PUBKEY_BYTES); /* the first one survived */
    tc_keypair_free(&a);
    tc_keypair_free(&b);
    tc_keypair_free(&back);
}

static void test_keyfile_wrong_permissions(void **state)
{
    char path[TMPDIR_PATH_MAX];
    tc_keypair kp, back;
    struct tally_err err = {0};
    tmpdir_join(path, sizeof(path), *state, "k.key");
    seeded_keypair(&kp, 3);
    assert_ok(tc_keyfile_write(path, &kp, &err), &err);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(tc_keyfile_read(path, &back, &err), TALLY_EPERM);
    assert_non_null(strstr(err.msg, "chmod 600"));
    assert_null(back.sk);
    tc_keypair_free(&kp);
}

static int read_with_text(const char *dir, const char *text, struct tally_err *err)
{
    char path[TMPDIR_PATH_MAX];
    tc_keypair back;
    tmpdir_join(path, sizeof(path), dir, "k.key");
    remove(path);
    assert_int_equal(tmpdir_write(dir, "k.key", text), 0);
    assert_int_equal(chmod(path, 0600), 0);
    int rc = tc_keyfile_read(path, &back, err);
    if (rc == TALLY_OK)
        tc_keypair_free(&back);
    else
        assert_null(back.sk);
    return rc;
}

static void test_keyfile_bad_contents(void **state)
{
    struct tally_err err = {0};
    char text[512];
    tc_keypair kp;
    char pk_hex[65], other_hex[65];
    const char *seed_hex = "4242424242424242424242424242424242424242424242424242424242424242";
    seeded_keypair(&kp, 0x42);
    tc_hex_encode(kp.pk.b, TC_PUBKEY_BYTES, pk_hex);
    tc_keypair_free(&kp);
    seeded_keypair(&kp, 0x43);
    tc_hex_encode(kp.pk.b, TC_PUBKEY_BYTES, other_hex);
    tc_keypair_free(&kp);

    /* The well-formed file reads (the template below is right). */
    snprintf(text, sizeof(text),
             "{\"type\": \"tally-ed25519-key\", \"public_key\": \"%s\", \"seed\": \"%s\"}", pk_hex,
             seed_hex);
    assert_ok(read_with_text(*state, text, &err), &err);

    /* Seed of the wrong size (31 bytes). */
    snprintf(text, sizeof(text),
             "{\"type\": \"tally-ed25519-key\", \"public_key\": \"%s\", \"seed\": \"%.62s\"}",
             pk_hex, seed_hex);
    assert_int_equal(read_with_text(*state, text, &err), TALLY_EFORMAT);
    assert_non_null(strstr(err.msg, "seed"));

    /* Garbage. */
    assert_int_equal(read_with_text(*state, "\x01\x02 not json at all", &err), TALLY_EFORMAT);
    assert_int_equal(read_with_text(*state, "", &err), TALLY_EFORMAT);
    assert_int_equal(read_with_text(*state, "[1, 2]", &err), TALLY_EFORMAT);

    /* Wrong type tag. */
    snprintf(text, sizeof(text),
             "{\"type\": \"ssh-ed25519\", \"public_key\": \"%s\", \"seed\": \"%s\"}", pk_hex,
             seed_hex);
    assert_int_equal(read_with_text(*state, text, &err), TALLY_EFORMAT);

    /* Public key of another seed. */
    snprintf(text, sizeof(text),
             "{\"type\": \"tally-ed25519-key\", \"public_key\": \"%s\", \"seed\": \"%s\"}",
             other_hex, seed_hex);
    assert_int_equal(read_with_text(*state, text, &err), TALLY_EMISMATCH);
    assert_non_null(strstr(err.msg, "does not match"));
}

static void test_keyfile_missing(void **state)
{
    char path[TMPDIR_PATH_MAX];
    tc_keypair back;
    struct tally_err err = {0};
    tmpdir_join(path, sizeof(path), *state, "nope.key");
    assert_int_equal(tc_keyfile_read(path, &back, &err), TALLY_ENOTFOUND);
    assert_non_null(strstr(err.msg, "nope.key"));
    assert_null(back.sk);
}

int main(void)
{
    if (tc_init() != TALLY_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_verify_round_trip),
        cmocka_unit_test(test_verify_rejects_flipped_bits),
        cmocka_unit_test(test_keypair_from_seed_is_deterministic),
        cmocka_unit_test(test_sha256_known_answers),
        cmocka_unit_test(test_merkle_roots),
        cmocka_unit_test(test_merkle_large_matches_small_rule),
        cmocka_unit_test(test_hex_round_trip_and_bad_hex),
        cmocka_unit_test(test_lthash_add_remove_returns_to_zero),
        cmocka_unit_test(test_lthash_order_independent_and_serializes),
        cmocka_unit_test(test_lthash_known_answers),
        cmocka_unit_test_setup_teardown(test_keyfile_round_trip_mode_0600, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_keyfile_refuses_overwrite, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_keyfile_wrong_permissions, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_keyfile_bad_contents, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_keyfile_missing, setup_tmp, teardown_tmp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
