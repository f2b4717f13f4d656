/* Checkpoint certificates: statement, canonical encoding, verification.
 * See ledger/cert.h (the specification) and docs/FORMAT.md. */
#include "ledger/cert.h"

#include <stdlib.h>
#include <string.h>

#include "ledger/block.h"

/* Short hex prefix of a key or hash for messages: 16 hex chars and "…". */
#define CERT_HEX_SHORT 16
static void hex_short(const uint8_t *b, char out[CERT_HEX_SHORT + 4])
{
    char full[2 * TC_HASH_BYTES + 1];
    tc_hex_encode(b, TC_HASH_BYTES, full);
    memcpy(out, full, CERT_HEX_SHORT);
    memcpy(out + CERT_HEX_SHORT, "\xe2\x80\xa6", 4); /* U+2026 and the NUL */
}

void ledger_ckpt_statement(const tc_hash *chain_id, const struct ledger_ckpt *ck,
                           uint8_t out[LEDGER_CKPT_STATEMENT_BYTES])
{
    memset(out, 0, LEDGER_CKPT_TAG_BYTES);
    memcpy(out, LEDGER_CKPT_TAG, sizeof(LEDGER_CKPT_TAG) - 1);
    memcpy(out + 16, chain_id->b, TC_HASH_BYTES);
    ledger_put_u64(out + 48, ck->height);
    memcpy(out + 56, ck->block_hash.b, TC_HASH_BYTES);
    memcpy(out + 88, ck->state_digest.b, TC_HASH_BYTES);
}

void ledger_ckpt_sign(const tc_keypair *kp, const tc_hash *chain_id, const struct ledger_ckpt *ck,
                      tc_sig *out)
{
    uint8_t st[LEDGER_CKPT_STATEMENT_BYTES];
    ledger_ckpt_statement(chain_id, ck, st);
    tc_sign(kp, st, sizeof(st), out);
}

int ledger_ckpt_verify(const tc_pubkey *pk, const tc_hash *chain_id, const struct ledger_ckpt *ck,
                       const tc_sig *sig)
{
    uint8_t st[LEDGER_CKPT_STATEMENT_BYTES];
    ledger_ckpt_statement(chain_id, ck, st);
    return tc_verify(pk, st, sizeof(st), sig);
}

static int cmp_sig(const void *a, const void *b)
{
    const struct ledger_cert_sig *x = a, *y = b;
    return memcmp(x->signer.b, y->signer.b, TC_PUBKEY_BYTES);
}

void ledger_cert_sort(struct ledger_cert *c)
{
    uint32_t n = c->count <= LEDGER_CERT_MAX_SIGS ? c->count : LEDGER_CERT_MAX_SIGS;
    qsort(c->sigs, n, sizeof(c->sigs[0]), cmp_sig);
}

size_t ledger_cert_encoded_size(const struct ledger_cert *c)
{
    return LEDGER_CERT_FIXED_BYTES + (size_t)c->count * LEDGER_CERT_SIG_BYTES;
}

size_t ledger_cert_encode(const struct ledger_cert *c, uint8_t *out)
{
    ledger_put_u64(out, c->ck.height);
    memcpy(out + 8, c->ck.block_hash.b, TC_HASH_BYTES);
    memcpy(out + 40, c->ck.state_digest.b, TC_HASH_BYTES);
    ledger_put_u32(out + 72, c->count);
    uint8_t *p = out + LEDGER_CERT_FIXED_BYTES;
    for (uint32_t i = 0; i < c->count; i++) {
        memcpy(p, c->sigs[i].signer.b, TC_PUBKEY_BYTES);
        memcpy(p + TC_PUBKEY_BYTES, c->sigs[i].sig.b, TC_SIG_BYTES);
        p += LEDGER_CERT_SIG_BYTES;
    }
    return (size_t)(p - out);
}

/* A bounds-checked read cursor: take() returns NULL once the data runs out. */
struct cursor {
    const uint8_t *p;
    size_t left;
};

static const uint8_t *take(struct cursor *cur, size_t n)
{
    if (cur->left < n)
        return NULL;
    const uint8_t *p = cur->p;
    cur->p += n;
    cur->left -= n;
    return p;
}

int ledger_cert_decode(const uint8_t *in, size_t len, struct ledger_cert *out,
                       struct tally_err *err)
{
    memset(out, 0, sizeof(*out));
    struct cursor cur = {in, in != NULL ? len : 0};
    const uint8_t *fixed = take(&cur, LEDGER_CERT_FIXED_BYTES);
    if (fixed == NULL)
        return tally_errf(err, TALLY_ETRUNC,
                          "certificate of %zu bytes is shorter than its %d-byte fixed part",
                          cur.left, LEDGER_CERT_FIXED_BYTES);
    uint32_t count = ledger_get_u32(fixed + 72);
    if (count == 0)
        return tally_errf(err, TALLY_EFORMAT, "certificate count: no signatures");
    if (count > LEDGER_CERT_MAX_SIGS)
        return tally_errf(err, TALLY_ETOOBIG, "certificate count: %u signatures (limit %d)",
                          (unsigned)count, LEDGER_CERT_MAX_SIGS);
    struct ledger_cert c = {.count = count};
    c.ck.height = ledger_get_u64(fixed);
    memcpy(c.ck.block_hash.b, fixed + 8, TC_HASH_BYTES);
    memcpy(c.ck.state_digest.b, fixed + 40, TC_HASH_BYTES);
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *s = take(&cur, LEDGER_CERT_SIG_BYTES);
        if (s == NULL)
            return tally_errf(
                err, TALLY_ETRUNC,
                "certificate signature %u: truncated (%u signatures need %zu "
                "bytes, have %zu)",
                (unsigned)i, (unsigned)count,
                (size_t)LEDGER_CERT_FIXED_BYTES + (size_t)count * LEDGER_CERT_SIG_BYTES, len);
        memcpy(c.sigs[i].signer.b, s, TC_PUBKEY_BYTES);
        memcpy(c.sigs[i].sig.b, s + TC_PUBKEY_BYTES, TC_SIG_BYTES);
    }
    if (cur.left != 0)
        return tally_errf(err, TALLY_EFORMAT,
                          "certificate: %zu trailing bytes after its %u signatures", cur.left,
                          (unsigned)count);
    *out = c;
    return TALLY_OK;
}

int ledger_cert_verify(const struct ledger_cert *c, const tc_hash *chain_id, const tc_pubkey *keys,
                       uint32_t n, uint32_t quorum, struct tally_err *err)
{
    if (c->count > LEDGER_CERT_MAX_SIGS)
        return tally_errf(err, TALLY_EINVAL, "certificate with %u signatures (limit %d)",
                          (unsigned)c->count, LEDGER_CERT_MAX_SIGS);
    if (keys == NULL || n == 0 || quorum == 0)
        return tally_errf(err, TALLY_EINVAL, "no cluster to verify against (%u keys, quorum %u)",
                          (unsigned)n, (unsigned)quorum);
    /* 1. Every signer is a replica: which one. */
    uint32_t who[LEDGER_CERT_MAX_SIGS];
    for (uint32_t i = 0; i < c->count; i++) {
        uint32_t j = 0;
        while (j < n && memcmp(keys[j].b, c->sigs[i].signer.b, TC_PUBKEY_BYTES) != 0)
            j++;
        if (j == n) {
            char hex[CERT_HEX_SHORT + 4];
            hex_short(c->sigs[i].signer.b, hex);
            return tally_errf(err, TALLY_EBADSIG,
                              "signature %u is by key %s, not a replica of the cluster",
                              (unsigned)i, hex);
        }
        who[i] = j;
    }
    /* 2. No replica twice. */
    for (uint32_t i = 0; i < c->count; i++)
        for (uint32_t k = 0; k < i; k++)
            if (who[k] == who[i])
                return tally_errf(err, TALLY_EBADSIG, "replica %u signed twice", (unsigned)who[i]);
    /* 3. Every signature verifies. */
    for (uint32_t i = 0; i < c->count; i++)
        if (ledger_ckpt_verify(&c->sigs[i].signer, chain_id, &c->ck, &c->sigs[i].sig) != TALLY_OK)
            return tally_errf(err, TALLY_EBADSIG, "the signature of replica %u does not verify",
                              (unsigned)who[i]);
    /* 4. Enough of them. */
    if (c->count < quorum)
        return tally_errf(err, TALLY_EBADSIG, "too few signatures: %u of the %u needed",
                          (unsigned)c->count, (unsigned)quorum);
    return TALLY_OK;
}
