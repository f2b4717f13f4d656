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
 *   STATUS_ACTIVE u64 view, u64 last executed seq, u64 last stable checkpoint, u64
 *                 suspect (the view it would move to because the primary failed it;
 *                 0 none), u64 flags (bit 0: `view` is active, i.e. not changing to
 *                 it) -- a replica's periodic "where I am"; peers answer with the
 *                 log messages and checkpoint votes it lacks (Castro's thesis §5.2)
 *   CHECKPOINT    u64 seq, 32 block hash, 32 state digest, 64 statement signature:
 *                 the sender's Ed25519 signature over the checkpoint statement
 *                 (ledger/cert.h), kept to build the offline-verifiable certificate
 *   STATE_REQ     u64 from, u64 to -- "send me blocks from `from`, I aim for `to`"
 *   STATE_RESP    u64 from, u32 length (1..MSG_MAX_STATE_CHUNK), chunk bytes: a
 *                 verifiable piece of the chain (src/statexfer.h), opaque here
 *   VIEW_CHANGE   u64 new view, u64 stable checkpoint seq h, u32 cert length
 *                 (0 when h = 0, else 1..LEDGER_CERT_MAX_BYTES), certificate of h,
 *                 u32 n prepared (0..MSG_MAX_VC_ENTRIES), n x prepared entry:
 *                   u64 view, u64 seq, 32 digest, u32 count (0..MSG_MAX_BATCH),
 *                   count x tx (the batch, digest = its batch digest),
 *                   u32 m (0..16), m x (u16 replica, 64 signature of that
 *                   replica's PREPARE envelope for (view, seq, digest))
 *   NEW_VIEW      u64 view, u32 n (1..16), n x (u32 length, a whole VIEW_CHANGE
 *                 message, envelope and signature included), u64 min seq,
 *                 u32 k (0..MSG_MAX_VC_ENTRIES), k x re-proposal:
 *                   u64 seq, u32 count, count x tx, 64 signature of the new
 *                   primary's PRE-PREPARE envelope for (view, seq, batch)
 * Client messages (REQUEST, QUERY, STATUS_REQ) carry sender MSG_SENDER_CLIENT and a
 * zero signature; every other type a replica id. A body must be exactly as long as
 * its type says: trailing bytes are rejected.
 * The structure of VIEW_CHANGE and NEW_VIEW (every count and length) is checked
 * by msg_decode; their iterators below then cannot run off the end. */
#ifndef TALLY_MSG_H
#define TALLY_MSG_H

#include <stdbool.h>
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
#define MSG_MAX_STATE_CHUNK (256u << 20)
#define MSG_MAX_VC_ENTRIES 65536
#define MSG_MAX_VC_PREPARES 16
#define MSG_VC_PREPARE_BYTES (2 + TC_SIG_BYTES)
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
    MSG_CHECKPOINT = 11,    /* replica -> replicas: signed checkpoint statement */
    MSG_STATE_REQ = 12,     /* replica -> replica: state transfer request */
    MSG_STATE_RESP = 13,    /* replica -> replica: a chunk of the chain */
    MSG_VIEW_CHANGE = 14,   /* replica -> replicas: moving to a new view, with proofs */
    MSG_NEW_VIEW = 15,      /* new primary -> replicas: 2f+1 view changes, re-proposals */
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
            uint64_t view, last_executed, stable, suspect, flags;
        } status_active;
        struct {
            uint64_t seq;
            tc_hash block_hash, state_digest;
            tc_sig statement_sig;
        } checkpoint;
        struct {
            uint64_t from, to;
        } state_req;
        struct {
            uint64_t from;
            uint32_t len;
            const uint8_t *chunk;
        } state_resp;
        struct {
            uint64_t new_view, stable;
            uint32_t cert_len;
            const uint8_t *cert;
            uint32_t nentries;
            const uint8_t *entries; /* entries_len bytes: iterate with msg_vc_next */
            size_t entries_len;
        } view_change;
        struct {
            uint64_t view;
            uint32_t nvc;
            const uint8_t *vcs; /* vcs_len bytes: iterate with msg_nv_vc_next */
            size_t vcs_len;
            uint64_t min_seq;
            uint32_t nprops;
            const uint8_t *props; /* props_len bytes: iterate with msg_nv_prop_next */
            size_t props_len;
        } new_view;
    } u;
    const uint8_t *signed_bytes; /* envelope header + body, for verification */
    size_t signed_len;
    tc_sig sig;
};

/* Iterating the variable parts of VIEW_CHANGE and NEW_VIEW (structure
 * already checked by msg_decode). */
struct msg_iter {
    const uint8_t *p;
    size_t len, off;
    uint32_t left;
};
struct msg_vc_entry {
    uint64_t view, seq;
    tc_hash digest;
    struct msg_batch batch;
    uint32_t nprepares;
    const uint8_t *prepares; /* nprepares x (u16 LE replica, 64 sig) */
};
struct msg_nv_prop {
    uint64_t seq;
    struct msg_batch batch;
    tc_sig pp_sig;
};
void msg_vc_iter(const struct msg *m, struct msg_iter *it);
bool msg_vc_next(struct msg_iter *it, struct msg_vc_entry *out);
void msg_nv_vc_iter(const struct msg *m, struct msg_iter *it);
bool msg_nv_vc_next(struct msg_iter *it, const uint8_t **bytes, size_t *len);
void msg_nv_prop_iter(const struct msg *m, struct msg_iter *it);
bool msg_nv_prop_next(struct msg_iter *it, struct msg_nv_prop *out);

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
                             uint64_t last_executed, uint64_t stable, uint64_t suspect,
                             uint64_t flags, const struct msg_signer *signer);
#define MSG_STATUS_VIEW_ACTIVE 1u
int msg_encode_checkpoint(struct msg_buf *out, uint32_t sender, uint64_t seq,
                          const tc_hash *block_hash, const tc_hash *state_digest,
                          const tc_sig *statement_sig, const struct msg_signer *signer);
int msg_encode_state_req(struct msg_buf *out, uint32_t sender, uint64_t from, uint64_t to,
                         const struct msg_signer *signer);
int msg_encode_state_resp(struct msg_buf *out, uint32_t sender, uint64_t from, const uint8_t *chunk,
                          size_t len, const struct msg_signer *signer);
/* Any message from a body built by the caller (VIEW_CHANGE, NEW_VIEW: see
 * the msg_put_* helpers); the body is not checked here, the decoder does. */
int msg_encode_body(struct msg_buf *out, enum msg_type type, uint32_t sender, const uint8_t *body,
                    size_t len, const struct msg_signer *signer);
/* Append little-endian values / bytes to a buffer; false when out of memory. */
bool msg_put(struct msg_buf *b, const void *p, size_t n);
bool msg_put_u16(struct msg_buf *b, uint16_t v);
bool msg_put_u32(struct msg_buf *b, uint32_t v);
bool msg_put_u64(struct msg_buf *b, uint64_t v);
/* The PREPARE / PRE-PREPARE envelope bytes a signature covers (header and
 * body), for checking proofs carried inside VIEW_CHANGE / NEW_VIEW. */
int msg_signed_phase(struct msg_buf *out, enum msg_type type, uint32_t sender, uint64_t view,
                     uint64_t seq, const tc_hash *digest);
int msg_signed_pre_prepare(struct msg_buf *out, uint32_t sender, uint64_t view, uint64_t seq,
                           const struct msg_batch *batch);

/* 1 when `type` is sent by clients (sender MSG_SENDER_CLIENT, zero signature). */
int msg_type_is_client(enum msg_type type);

#endif
