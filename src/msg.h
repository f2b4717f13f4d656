/* Protocol messages on the wire: a signed envelope around a typed body.
 * Canonical little-endian encoding; every length checked on decode against
 * the buffer and against explicit limits; decoded messages borrow from the
 * input buffer (no allocation). See docs/FORMAT.md, "Messages".
 *
 * Envelope:
 *   0   4  magic "TLY1"
 *   4   1  type (enum msg_type)
 *   5   1  reserved, must be 0
 *   6   2  sender u16 LE: replica id, or MSG_SENDER_CLIENT (0xFFFF)
 *   8   4  body length u32 LE (<= the decoder's max_body)
 *   12  .. body
 *   ..  64 Ed25519 signature by the sender replica over bytes [0, 12 + body length);
 *          all zero for client messages (their transactions carry signatures).
 *
 * Bodies:
 *   REQUEST       u32 count (1..MSG_MAX_BATCH), count x 146-byte transactions
 *   PRE_PREPARE   u64 view, u64 seq, u32 count (0..MSG_MAX_BATCH), count x tx
 *                 (digest = SHA-256("TALLY-BATCH-V1\0" || u32 count || txs))
 *   PREPARE       u64 view, u64 seq, 32 digest
 *   COMMIT        u64 view, u64 seq, 32 digest
 *   REPLY         u64 view, u64 height, 32 block hash, u32 count (1..MSG_MAX_BATCH),
 *                 count x (32 tx hash, u8 result)       -- one per client per block
 *   QUERY         u8 kind (1 balance, 2 tx), u64 request id, 32 key (account or tx hash)
 *   QUERY_REPLY   u8 kind, u64 request id, 32 key, u8 found, u64 height (ledger head),
 *                 u64 a, u64 b, u8 c   -- balance: a=balance b=nonce; tx: a=height b=index c=result
 *   STATUS_REQ    empty
 *   STATUS_REPLY  u32 length, JSON text (<= MSG_MAX_STATUS_JSON)
 *   STATUS_ACTIVE u64 view, u64 last executed seq  -- a replica's periodic "where I am";
 *                 peers answer with the log messages it lacks (Castro's thesis §5.2)
 * Client messages (REQUEST, QUERY, STATUS_REQ) carry sender MSG_SENDER_CLIENT and a
 * zero signature; every other type a replica id. A body must be exactly as long as
 * its type says: trailing bytes are rejected.
 * Types for checkpoints, view changes and state transfer are added by later issues. */
#ifndef TALLY_MSG_H
#define TALLY_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "ledger/tx.h"
#include "src/err.h"

#define MSG_MAGIC "TLY1"
#define MSG_HEADER_BYTES 12
#define MSG_SENDER_CLIENT 0xFFFFu
#define MSG_MAX_BATCH 4096
#define MSG_MAX_STATUS_JSON 16384
#define MSG_BATCH_TAG "TALLY-BATCH-V1" /* 15 bytes with its NUL */

enum msg_type {
    MSG_REQUEST = 1,
    MSG_PRE_PREPARE = 2,
    MSG_PREPARE = 3,
    MSG_COMMIT = 4,
    MSG_REPLY = 5,
    MSG_QUERY = 6,
    MSG_QUERY_REPLY = 7,
    MSG_STATUS_REQ = 8,
    MSG_STATUS_REPLY = 9,
    MSG_STATUS_ACTIVE = 10, /* replica -> replicas: retransmission hint (added, issue 2) */
    MSG_TYPE_MAX
};

enum msg_query_kind { MSG_QUERY_BALANCE = 1, MSG_QUERY_TX = 2 };

/* A batch of encoded transactions, borrowed from a buffer. */
struct msg_batch {
    uint32_t count;
    const uint8_t *tx_bytes; /* count * LEDGER_TX_BYTES */
};

struct msg_reply_entry {
    tc_hash tx_hash;
    uint8_t result;
};

struct msg {
    enum msg_type type;
    uint32_t sender;
    union {
        struct msg_batch request;
        struct {
            uint64_t view, seq;
            tc_hash digest; /* computed by the decoder */
            struct msg_batch batch;
        } pre_prepare;
        struct {
            uint64_t view, seq;
            tc_hash digest;
        } phase; /* PREPARE and COMMIT */
        struct {
            uint64_t view, height;
            tc_hash block_hash;
            uint32_t count;
            const uint8_t *entries; /* count * 33 bytes: tx hash, result */
        } reply;
        struct {
            uint8_t kind;
            uint64_t request_id;
            uint8_t key[32];
        } query;
        struct {
            uint8_t kind;
            uint64_t request_id;
            uint8_t key[32];
            uint8_t found;
            uint64_t height, a, b;
            uint8_t c;
        } query_reply;
        struct {
            uint32_t len;
            const char *json; /* not NUL-terminated */
        } status;
        struct {
            uint64_t view, last_executed;
        } status_active;
    } u;
    const uint8_t *signed_bytes; /* envelope header + body, for verification */
    size_t signed_len;
    tc_sig sig;
};

/* Decode one message from buf (len bytes). Every length is checked against
 * len and against max_body; nothing is allocated; pointers in *out borrow
 * from buf. Returns 0, TALLY_ETRUNC, TALLY_ETOOBIG or TALLY_EFORMAT (err says
 * which field). Does not verify the signature. */
int msg_decode(const uint8_t *buf, size_t len, size_t max_body, struct msg *out,
               struct tally_err *err);

/* Verify the envelope signature with the sender's key. */
int msg_verify(const struct msg *m, const tc_pubkey *key) __attribute__((warn_unused_result));

/* The batch digest (see above). */
void msg_batch_digest(const struct msg_batch *b, tc_hash *out);
/* Entry i of a REPLY body. */
void msg_reply_entry_get(const struct msg *m, uint32_t i, struct msg_reply_entry *out);

/* A growable output buffer for encoders. */
struct msg_buf {
    uint8_t *data;
    size_t len, cap;
};
void msg_buf_init(struct msg_buf *b);
void msg_buf_free(struct msg_buf *b);
void msg_buf_reset(struct msg_buf *b);

/* Who signs an envelope: the core signs through its io, the shell and tools
 * with a key pair (msg_signer_keypair). */
struct msg_signer {
    void *ctx;
    void (*sign)(void *ctx, const uint8_t *bytes, size_t len, tc_sig *out);
};
/* A signer over kp (kp must outlive the signer). */
struct msg_signer msg_signer_keypair(const tc_keypair *kp);

/* Encoders append one whole envelope to out. `signer` signs it (NULL for
 * client messages: the signature is zero). Return 0 or TALLY_ENOMEM/TALLY_ETOOBIG. */
int msg_encode_request(struct msg_buf *out, const struct msg_batch *txs);
int msg_encode_pre_prepare(struct msg_buf *out, uint32_t sender, uint64_t view, uint64_t seq,
                           const struct msg_batch *batch, const struct msg_signer *signer);
int msg_encode_phase(struct msg_buf *out, enum msg_type type, uint32_t sender, uint64_t view,
                     uint64_t seq, const tc_hash *digest, const struct msg_signer *signer);
int msg_encode_reply(struct msg_buf *out, uint32_t sender, uint64_t view, uint64_t height,
                     const tc_hash *block_hash, const struct msg_reply_entry *entries,
                     uint32_t count, const struct msg_signer *signer);
int msg_encode_query(struct msg_buf *out, uint8_t kind, uint64_t request_id, const uint8_t key[32]);
int msg_encode_query_reply(struct msg_buf *out, uint32_t sender, uint8_t kind, uint64_t request_id,
                           const uint8_t key[32], uint8_t found, uint64_t height, uint64_t a,
                           uint64_t b, uint8_t c, const struct msg_signer *signer);
int msg_encode_status_req(struct msg_buf *out);
int msg_encode_status_reply(struct msg_buf *out, uint32_t sender, const char *json, size_t len,
                            const struct msg_signer *signer);
int msg_encode_status_active(struct msg_buf *out, uint32_t sender, uint64_t view,
                             uint64_t last_executed, const struct msg_signer *signer);
/* 1 when `type` is sent by clients (sender MSG_SENDER_CLIENT, zero signature). */
int msg_type_is_client(enum msg_type type);

#endif
