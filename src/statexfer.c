/* State chunk codec and verification (src/statexfer.h). Decoding never
 * allocates and never reads past `len`; counts are checked against their
 * limits before they are used in arithmetic. */
#include "src/statexfer.h"

#include <stdlib.h>
#include <string.h>

struct stx_cursor {
    const uint8_t *p;
    size_t len, off;
};

static const uint8_t *take(struct stx_cursor *c, size_t n)
{
    if (n > c->len - c->off)
        return NULL;
    const uint8_t *at = c->p + c->off;
    c->off += n;
    return at;
}

int stx_decode(const uint8_t *buf, size_t len, struct stx_chunk *out, struct tally_err *err)
{
    memset(out, 0, sizeof(*out));
    struct stx_cursor c = {.p = buf, .len = buf ? len : 0};
    const uint8_t *x = take(&c, 4);
    if (x == NULL)
        return tally_errf(err, TALLY_ETRUNC, "state chunk truncated (certificate length)");
    uint32_t clen = ledger_get_u32(x);
    if (clen > LEDGER_CERT_MAX_BYTES)
        return tally_errf(err, TALLY_ETOOBIG, "state chunk certificate of %u bytes", clen);
    if ((x = take(&c, clen)) == NULL)
        return tally_errf(err, TALLY_ETRUNC, "state chunk certificate truncated");
    int rc = ledger_cert_decode(x, clen, &out->cert, err);
    if (rc != TALLY_OK) {
        tally_err_wrap(err, "state chunk certificate: ");
        return rc;
    }
    const uint8_t *f8 = take(&c, 8), *n4 = take(&c, 4);
    if (f8 == NULL || n4 == NULL)
        return tally_errf(err, TALLY_ETRUNC, "state chunk truncated (first height)");
    out->first = ledger_get_u64(f8);
    out->nblocks = ledger_get_u32(n4);
    if (out->first == 0)
        return tally_errf(err, TALLY_EFORMAT, "state chunk starts at height 0");
    if (out->nblocks == 0 || out->nblocks > STX_MAX_BLOCKS)
        return tally_errf(err, TALLY_EFORMAT, "state chunk has %u blocks (1..%u)", out->nblocks,
                          STX_MAX_BLOCKS);
    out->blocks = c.p + c.off;
    for (uint32_t i = 0; i < out->nblocks; i++) {
        const uint8_t *l4 = take(&c, 4);
        if (l4 == NULL || take(&c, ledger_get_u32(l4)) == NULL)
            return tally_errf(err, TALLY_ETRUNC, "state chunk block %u truncated", i);
    }
    out->blocks_len = (size_t)(c.p + c.off - out->blocks);
    const uint8_t *h4 = take(&c, 4);
    if (h4 == NULL)
        return tally_errf(err, TALLY_ETRUNC, "state chunk truncated (headers)");
    out->nheaders = ledger_get_u32(h4);
    if (out->nheaders > STX_MAX_HEADERS)
        return tally_errf(err, TALLY_ETOOBIG, "state chunk has %u headers", out->nheaders);
    if ((out->headers = take(&c, (size_t)out->nheaders * LEDGER_BLOCK_HEADER_BYTES)) == NULL)
        return tally_errf(err, TALLY_ETRUNC, "state chunk headers truncated");
    if (c.off != c.len)
        return tally_errf(err, TALLY_EFORMAT, "state chunk has %zu trailing bytes", c.len - c.off);
    uint64_t last = out->first + out->nblocks + out->nheaders - 1;
    if (last < out->first || last != out->cert.ck.height)
        return tally_errf(err, TALLY_EFORMAT,
                          "state chunk covers %llu..%llu but certifies height %llu",
                          (unsigned long long)out->first, (unsigned long long)last,
                          (unsigned long long)out->cert.ck.height);
    return TALLY_OK;
}

int stx_block(const struct stx_chunk *c, uint32_t i, struct ledger_block *out,
              struct tally_err *err)
{
    if (i >= c->nblocks)
        return tally_errf(err, TALLY_EINVAL, "no block %u in the chunk", i);
    /* Lengths were checked by stx_decode: walking them again is safe. */
    const uint8_t *p = c->blocks;
    for (uint32_t k = 0; k < i; k++)
        p += 4 + (size_t)ledger_get_u32(p);
    return ledger_block_decode(p + 4, ledger_get_u32(p), out, err);
}

int stx_verify(const struct stx_chunk *c, const tc_hash *chain_id, const tc_pubkey *keys,
               uint32_t n, uint32_t quorum, uint64_t head_height, const tc_hash *head_hash,
               struct tally_err *err)
{
    int rc = ledger_cert_verify(&c->cert, chain_id, keys, n, quorum, err);
    if (rc != TALLY_OK) {
        tally_err_wrap(err, "state chunk certificate: ");
        return rc;
    }
    return stx_verify_chain(c, head_height, head_hash, err);
}

int stx_verify_chain(const struct stx_chunk *c, uint64_t head_height, const tc_hash *head_hash,
                     struct tally_err *err)
{
    int rc;
    if (c->first != head_height + 1)
        return tally_errf(err, TALLY_EMISMATCH, "state chunk starts at %llu, our head is %llu",
                          (unsigned long long)c->first, (unsigned long long)head_height);
    tc_hash prev = *head_hash;
    struct ledger_block_header h = {0};
    const uint8_t *p = c->blocks;
    uint64_t total = (uint64_t)c->nblocks + c->nheaders;
    for (uint64_t k = 0; k < total; k++) {
        uint64_t height = c->first + k;
        if (k < c->nblocks) {
            struct ledger_block b;
            uint32_t len = ledger_get_u32(p);
            if ((rc = ledger_block_decode(p + 4, len, &b, err)) != TALLY_OK) {
                tally_err_wrap(err, "state chunk block %llu: ", (unsigned long long)height);
                return rc;
            }
            p += 4 + (size_t)len;
            h = b.h;
            if (height == 0)
                return tally_errf(err, TALLY_EFORMAT, "state chunk holds the genesis block");
            tc_hash root, results;
            ledger_block_tx_root(b.items, b.item_bytes, b.h.tx_count, &root);
            ledger_block_results_hash(b.results, b.h.tx_count, &results);
            if (memcmp(root.b, h.tx_root.b, TC_HASH_BYTES) != 0 ||
                memcmp(results.b, h.results_hash.b, TC_HASH_BYTES) != 0)
                return tally_errf(err, TALLY_EMISMATCH,
                                  "state chunk block %llu: body does not match its header",
                                  (unsigned long long)height);
        } else {
            rc = ledger_block_header_decode(c->headers + (size_t)(k - c->nblocks) *
                                                             LEDGER_BLOCK_HEADER_BYTES,
                                            LEDGER_BLOCK_HEADER_BYTES, &h);
            if (rc != TALLY_OK)
                return tally_errf(err, rc, "state chunk header %llu does not decode",
                                  (unsigned long long)height);
        }
        if (h.height != height)
            return tally_errf(err, TALLY_EMISMATCH, "state chunk: block %llu claims height %llu",
                              (unsigned long long)height, (unsigned long long)h.height);
        if (memcmp(h.prev_hash.b, prev.b, TC_HASH_BYTES) != 0)
            return tally_errf(err, TALLY_EMISMATCH,
                              "state chunk: block %llu does not link to the block before it",
                              (unsigned long long)height);
        ledger_block_header_hash(&h, &prev);
    }
    if (memcmp(prev.b, c->cert.ck.block_hash.b, TC_HASH_BYTES) != 0 ||
        memcmp(h.state_digest.b, c->cert.ck.state_digest.b, TC_HASH_BYTES) != 0)
        return tally_errf(err, TALLY_EMISMATCH, "state chunk: block %llu is not the certified one",
                          (unsigned long long)c->cert.ck.height);
    return TALLY_OK;
}

/* --- writer ---------------------------------------------------------------- */

static int w_put(struct stx_writer *w, const void *p, size_t n)
{
    if (n > w->max - w->len)
        return TALLY_ETOOBIG;
    if (n > w->cap - w->len) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap - w->len < n)
            cap *= 2;
        uint8_t *b = realloc(w->buf, cap);
        if (b == NULL)
            return TALLY_ENOMEM;
        w->buf = b;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
    return TALLY_OK;
}

static int w_u32(struct stx_writer *w, uint32_t v)
{
    uint8_t b[4];
    ledger_put_u32(b, v);
    return w_put(w, b, 4);
}

int stx_writer_begin(struct stx_writer *w, size_t max, const struct ledger_cert *cert,
                     uint64_t first)
{
    memset(w, 0, sizeof(*w));
    w->max = max;
    uint8_t cb[LEDGER_CERT_MAX_BYTES];
    size_t clen = ledger_cert_encode(cert, cb);
    uint8_t f8[8];
    ledger_put_u64(f8, first);
    int rc;
    if ((rc = w_u32(w, (uint32_t)clen)) != TALLY_OK || (rc = w_put(w, cb, clen)) != TALLY_OK ||
        (rc = w_put(w, f8, 8)) != TALLY_OK)
        return rc;
    w->nblocks_at = w->len;
    return w_u32(w, 0);
}

int stx_writer_add_block(struct stx_writer *w, const uint8_t *block, size_t len)
{
    if (w->in_headers || w->nblocks == STX_MAX_BLOCKS || len > UINT32_MAX)
        return TALLY_EINVAL;
    /* Keep room for the header count that follows. */
    if (len + 8 > w->max - w->len)
        return TALLY_ETOOBIG;
    int rc;
    if ((rc = w_u32(w, (uint32_t)len)) != TALLY_OK || (rc = w_put(w, block, len)) != TALLY_OK)
        return rc;
    w->nblocks++;
    return TALLY_OK;
}

int stx_writer_add_header(struct stx_writer *w, const uint8_t header[LEDGER_BLOCK_HEADER_BYTES])
{
    int rc;
    if (!w->in_headers) {
        w->in_headers = true;
        w->nheaders_at = w->len;
        if ((rc = w_u32(w, 0)) != TALLY_OK)
            return rc;
    }
    if (w->nheaders == STX_MAX_HEADERS)
        return TALLY_ETOOBIG;
    if ((rc = w_put(w, header, LEDGER_BLOCK_HEADER_BYTES)) != TALLY_OK)
        return rc;
    w->nheaders++;
    return TALLY_OK;
}

void stx_writer_finish(struct stx_writer *w)
{
    if (!w->in_headers) {
        w->in_headers = true;
        w->nheaders_at = w->len;
        if (w_u32(w, 0) != TALLY_OK)
            return;
    }
    ledger_put_u32(w->buf + w->nblocks_at, w->nblocks);
    ledger_put_u32(w->buf + w->nheaders_at, w->nheaders);
}

void stx_writer_free(struct stx_writer *w)
{
    free(w->buf);
    memset(w, 0, sizeof(*w));
}
