/* State chunks: the body of a STATE-RESP, a piece of the chain that a lagging
 * replica can verify on its own before applying any of it (src/state_transfer.c
 * decides when to fetch; the shell builds and installs chunks with this codec).
 *
 * Encoding (little-endian, every length checked on decode):
 *   u32 cert_len (<= LEDGER_CERT_MAX_BYTES), certificate (ledger/cert.h) of the
 *       checkpoint the chunk leads to, at height C
 *   u64 first    the first block's height (the requester's head + 1)
 *   u32 nblocks  (1..STX_MAX_BLOCKS), nblocks x (u32 len, encoded block
 *       (ledger/block.h)): heights first .. first + nblocks - 1, complete
 *   u32 nheaders (0..STX_MAX_HEADERS), nheaders x 144-byte block headers: the
 *       heights after the complete blocks, up to C
 *   first + nblocks + nheaders - 1 == C; nothing may follow.
 *
 * stx_verify checks, before anything is applied: the certificate's 2f+1
 * signatures; that every header's height is the next one, that each prev_hash
 * is the hash of the header before it, starting from the requester's head hash,
 * and that the last header hashes to the certified block hash with the
 * certified state digest; and that each complete block's body matches its
 * header (tx_root). A chunk that passes can only contain the certified chain:
 * re-executing its blocks must reproduce their hashes (the shell checks that
 * too, and stops the replica if not: its own execution would be at fault).
 * Prefix: stx_. */
#ifndef TALLY_STATEXFER_H
#define TALLY_STATEXFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger/block.h"
#include "ledger/cert.h"
#include "src/err.h"

#define STX_MAX_BLOCKS 65536
#define STX_MAX_HEADERS (1u << 20)

struct stx_chunk {
    struct ledger_cert cert;
    uint64_t first;
    uint32_t nblocks, nheaders;
    const uint8_t *blocks; /* nblocks x (u32 len, block), blocks_len bytes */
    size_t blocks_len;
    const uint8_t *headers; /* nheaders x LEDGER_BLOCK_HEADER_BYTES */
};

/* Decode the structure (lengths, counts, the certificate's encoding); borrows
 * from buf. TALLY_ETRUNC / TALLY_ETOOBIG / TALLY_EFORMAT with err set. */
int stx_decode(const uint8_t *buf, size_t len, struct stx_chunk *out, struct tally_err *err);

/* Complete block i (0..nblocks-1) of a decoded chunk, decoded. */
int stx_block(const struct stx_chunk *c, uint32_t i, struct ledger_block *out,
              struct tally_err *err);

/* Everything that can be checked before applying (see the top). head_height
 * and head_hash are the requester's. keys[0..n-1] the replicas' keys. */
int stx_verify(const struct stx_chunk *c, const tc_hash *chain_id, const tc_pubkey *keys,
               uint32_t n, uint32_t quorum, uint64_t head_height, const tc_hash *head_hash,
               struct tally_err *err) __attribute__((warn_unused_result));

/* The same without the certificate's signatures (the chain and bodies only). */
int stx_verify_chain(const struct stx_chunk *c, uint64_t head_height, const tc_hash *head_hash,
                     struct tally_err *err) __attribute__((warn_unused_result));

/* Encoding, for the serving side: begin with the certificate and first height,
 * add complete blocks, then headers, then finish (patches the counts). */
struct stx_writer {
    uint8_t *buf;
    size_t len, cap, max;
    size_t nblocks_at, nheaders_at;
    uint32_t nblocks, nheaders;
    bool in_headers;
};
/* max: the most bytes the chunk may take. 0 or TALLY_ENOMEM / TALLY_ETOOBIG. */
int stx_writer_begin(struct stx_writer *w, size_t max, const struct ledger_cert *cert,
                     uint64_t first);
/* TALLY_ETOOBIG when it would not fit (nothing added). */
int stx_writer_add_block(struct stx_writer *w, const uint8_t *block, size_t len);
int stx_writer_add_header(struct stx_writer *w, const uint8_t header[LEDGER_BLOCK_HEADER_BYTES]);
/* Patches the counts; the chunk is w->buf[0..w->len). */
void stx_writer_finish(struct stx_writer *w);
void stx_writer_free(struct stx_writer *w);

#endif
