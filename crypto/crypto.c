#include "crypto/crypto.h"

#include <openssl/evp.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static EVP_MD *sha256_md;

int tc_init(void)
{
    if (sodium_init() < 0)
        return TALLY_ECRYPTO;
    if (sha256_md == NULL)
        sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (sha256_md == NULL)
        return TALLY_ECRYPTO;
    return TALLY_OK;
}

int tc_keypair_from_seed(tc_keypair *kp, const uint8_t seed[TC_SEED_BYTES])
{
    kp->sk = sodium_malloc(TC_SECRET_BYTES);
    if (kp->sk == NULL)
        return TALLY_ENOMEM;
    crypto_sign_seed_keypair(kp->pk.b, kp->sk, seed);
    return TALLY_OK;
}

int tc_keypair_generate(tc_keypair *kp)
{
    uint8_t seed[TC_SEED_BYTES];
    randombytes_buf(seed, sizeof(seed));
    int rc = tc_keypair_from_seed(kp, seed);
    sodium_memzero(seed, sizeof(seed));
    return rc;
}

void tc_keypair_regenerate(tc_keypair *kp)
{
    uint8_t seed[TC_SEED_BYTES];
    randombytes_buf(seed, sizeof(seed));
    crypto_sign_seed_keypair(kp->pk.b, kp->sk, seed);
    sodium_memzero(seed, sizeof(seed));
}

void tc_keypair_seed(const tc_keypair *kp, uint8_t seed[TC_SEED_BYTES])
{
    crypto_sign_ed25519_sk_to_seed(seed, kp->sk);
}

void tc_keypair_free(tc_keypair *kp)
{
    if (kp->sk != NULL)
        sodium_free(kp->sk); /* sodium_free wipes before releasing */
    kp->sk = NULL;
}

void tc_sign(const tc_keypair *kp, const uint8_t *msg, size_t len, tc_sig *out)
{
    crypto_sign_detached(out->b, NULL, msg, len, kp->sk);
}

int tc_verify(const tc_pubkey *pk, const uint8_t *msg, size_t len, const tc_sig *sig)
{
    if (crypto_sign_verify_detached(sig->b, msg, len, pk->b) != 0)
        return TALLY_EBADSIG;
    return TALLY_OK;
}

static void digest_parts(const EVP_MD *md, const uint8_t *a, size_t alen, const uint8_t *b,
                         size_t blen, uint8_t *out, size_t outlen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        abort();
    if (EVP_DigestInit_ex2(ctx, md, NULL) != 1 || EVP_DigestUpdate(ctx, a, alen) != 1 ||
        (blen > 0 && EVP_DigestUpdate(ctx, b, blen) != 1))
        abort();
    if (EVP_MD_get_flags(md) & EVP_MD_FLAG_XOF) {
        if (EVP_DigestFinalXOF(ctx, out, outlen) != 1)
            abort();
    } else if (EVP_DigestFinal_ex(ctx, out, NULL) != 1) {
        abort();
    }
    EVP_MD_CTX_free(ctx);
}

void tc_sha256(const uint8_t *data, size_t len, tc_hash *out)
{
    digest_parts(sha256_md, data, len, NULL, 0, out->b, TC_HASH_BYTES);
}

void tc_sha256_2(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, tc_hash *out)
{
    digest_parts(sha256_md, a, alen, b, blen, out->b, TC_HASH_BYTES);
}

void tc_merkle_root(const tc_hash *leaves, size_t n, tc_hash *out)
{
    if (n == 0) {
        memset(out->b, 0, TC_HASH_BYTES);
        return;
    }
    /* Reduce level by level in a scratch copy; small fixed stack for common sizes. */
    tc_hash stack_level[64];
    tc_hash *level = n <= 64 ? stack_level : malloc(n * sizeof(tc_hash));
    if (level == NULL)
        abort();
    memcpy(level, leaves, n * sizeof(tc_hash));
    size_t count = n;
    while (count > 1) {
        size_t next = 0;
        for (size_t i = 0; i < count; i += 2) {
            if (i + 1 == count) {
                level[next++] = level[i];
                continue;
            }
            uint8_t node[1 + 2 * TC_HASH_BYTES];
            node[0] = 0x01;
            memcpy(node + 1, level[i].b, TC_HASH_BYTES);
            memcpy(node + 1 + TC_HASH_BYTES, level[i + 1].b, TC_HASH_BYTES);
            tc_sha256(node, sizeof(node), &level[next++]);
        }
        count = next;
    }
    *out = level[0];
    if (level != stack_level)
        free(level);
}

int tc_equal(const void *a, const void *b, size_t len)
{
    return sodium_memcmp(a, b, len) == 0;
}

void tc_hex_encode(const uint8_t *in, size_t len, char *out)
{
    sodium_bin2hex(out, 2 * len + 1, in, len);
}

int tc_hex_decode(const char *hex, uint8_t *out, size_t outlen)
{
    size_t hexlen = strlen(hex);
    size_t got = 0;
    const char *end = NULL;
    if (hexlen != 2 * outlen)
        return TALLY_EFORMAT;
    if (sodium_hex2bin(out, outlen, hex, hexlen, NULL, &got, &end) != 0 || got != outlen ||
        *end != '\0')
        return TALLY_EFORMAT;
    return TALLY_OK;
}

void tc_lthash_zero(tc_lthash *h)
{
    memset(h, 0, sizeof(*h));
}

/* expand(e) = ChaCha20-IETF keystream, 2048 bytes, under the key
 * SHA-256(TC_LTHASH_TAG || e) with an all-zero nonce, block counter from 0
 * (docs/FORMAT.md, "State digest"; why it is sound: crypto.h). */
static const char lthash_tag[] = TC_LTHASH_TAG;

static void lthash_expand(const uint8_t *elem, size_t len, uint8_t out[TC_LTHASH_BYTES])
{
    static const uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES];
    uint8_t key[crypto_stream_chacha20_ietf_KEYBYTES];
    digest_parts(sha256_md, (const uint8_t *)lthash_tag, sizeof(lthash_tag) - 1, elem, len, key,
                 sizeof(key));
    crypto_stream_chacha20_ietf(out, TC_LTHASH_BYTES, nonce, key);
}

static inline uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

/* The lane loops compile to 16-byte vector adds at -O2 (gcc 12). */
void tc_lthash_add(tc_lthash *h, const uint8_t *elem, size_t len)
{
    uint8_t bytes[TC_LTHASH_BYTES];
    lthash_expand(elem, len, bytes);
    for (size_t i = 0; i < TC_LTHASH_LANES; i++)
        h->lane[i] = (uint16_t)(h->lane[i] + le16(bytes + 2 * i));
}

void tc_lthash_remove(tc_lthash *h, const uint8_t *elem, size_t len)
{
    uint8_t bytes[TC_LTHASH_BYTES];
    lthash_expand(elem, len, bytes);
    for (size_t i = 0; i < TC_LTHASH_LANES; i++)
        h->lane[i] = (uint16_t)(h->lane[i] - le16(bytes + 2 * i));
}

void tc_lthash_serialize(const tc_lthash *h, uint8_t out[TC_LTHASH_BYTES])
{
    for (size_t i = 0; i < TC_LTHASH_LANES; i++) {
        out[2 * i] = (uint8_t)(h->lane[i] & 0xff);
        out[2 * i + 1] = (uint8_t)(h->lane[i] >> 8);
    }
}

void tc_lthash_deserialize(tc_lthash *h, const uint8_t in[TC_LTHASH_BYTES])
{
    for (size_t i = 0; i < TC_LTHASH_LANES; i++)
        h->lane[i] = (uint16_t)(in[2 * i] | (in[2 * i + 1] << 8));
}

void tc_lthash_digest(const tc_lthash *h, tc_hash *out)
{
    uint8_t bytes[TC_LTHASH_BYTES];
    tc_lthash_serialize(h, bytes);
    tc_sha256(bytes, sizeof(bytes), out);
}
