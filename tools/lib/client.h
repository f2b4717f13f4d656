/* Client library: talk to a Tally cluster as a client.
 *
 * One link per replica (src/spstream.h: NNG's pair1 wire format on an NNG
 * stream) dials that replica's client_address and redials by itself. Requests go to ALL replicas
 * (so every replica knows where to send its REPLY); a transaction's receipt is accepted once f+1
 * distinct replicas sent validly signed REPLY entries that match on (tx hash,
 * height, block hash, result). Transactions still unanswered after the retry
 * interval are re-sent to all replicas. Queries need f+1 matching signed
 * QUERY_REPLYs (matching on found and the answer, not on the ledger height).
 * Many transactions may be outstanding at once (client_submit).
 *
 * Single-threaded: a struct client is used by one thread at a time. Replies
 * are read on NNG's threads into a bounded inbox per replica; waiting is on a
 * condition variable over the inboxes. Prefix: client_. */
#ifndef TALLY_CLIENT_H
#define TALLY_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "crypto/crypto.h"
#include "ledger/tx.h"
#include "src/err.h"

struct client;

/* Connect (in the background) to every replica of cfg. cfg must outlive c. */
int client_open(const struct tally_config *cfg, struct client **out, struct tally_err *err);
void client_close(struct client *c); /* NULL is fine */

struct client_receipt {
    tc_hash tx_hash;
    bool done; /* f+1 matching replies arrived */
    uint64_t height;
    tc_hash block_hash;
    uint8_t result; /* enum ledger_result */
    uint64_t latency_us;
};

struct client_submit_opts {
    uint64_t timeout_ms;    /* for the whole call */
    uint64_t retry_ms;      /* re-send unanswered txs to all after this long (default 1000;
                             * at least 3x the smoothed receipt latency) */
    size_t max_outstanding; /* txs in flight at once (default 1024) */
    size_t request_txs;     /* txs per REQUEST message (default 256) */
};

/* Submit n signed transactions and wait for their receipts. out[i] belongs
 * to txs[i]. Returns 0 when every receipt is done; TALLY_ETIMEOUT when some
 * are not (see out[i].done); TALLY_EUNAVAIL "no replica answered" when
 * nothing at all came back. */
int client_submit(struct client *c, const struct ledger_tx *txs, size_t n,
                  const struct client_submit_opts *opts, struct client_receipt *out,
                  struct tally_err *err);

struct client_account {
    bool found;
    uint64_t balance, nonce;
    uint64_t height; /* highest ledger height among the matching replies */
};
int client_get_account(struct client *c, const tc_pubkey *pk, uint64_t timeout_ms,
                       struct client_account *out, struct tally_err *err);

struct client_tx_info {
    bool found;
    uint64_t height;
    uint32_t index;
    uint8_t result;
    uint64_t ledger_height;
};
int client_get_tx(struct client *c, const tc_hash *h, uint64_t timeout_ms,
                  struct client_tx_info *out, struct tally_err *err);

/* Ask every replica for its status; json[i] gets replica i's JSON text
 * (malloc'd, caller frees) or NULL when it did not answer within timeout_ms.
 * Returns how many answered. */
uint32_t client_status_all(struct client *c, uint64_t timeout_ms, char **json);

/* ---- streaming submission (tally bench) ------------------------------------
 *
 * client_submit without the blocking: the caller decides when to send the
 * next transactions and polls for receipts in between, so a benchmark can
 * keep a fixed number in flight (closed loop) or send on a schedule (open
 * loop). Transactions are sent in order, txs[0] first. Receipts, retries and
 * the f+1 matching rule are client_submit's. */
struct client_stream;

/* Prepare to stream txs[0..n). txs and out must outlive the stream; out[i]
 * gets txs[i]'s receipt (tx_hash now, the rest when done). opts: retry_ms,
 * max_outstanding (a hard cap on txs in flight) and request_txs are used,
 * timeout_ms is not. Hashes all n transactions (do it before measuring). */
int client_stream_open(struct client *c, const struct ledger_tx *txs, size_t n,
                       const struct client_submit_opts *opts, struct client_receipt *out,
                       struct client_stream **sp, struct tally_err *err);
void client_stream_close(struct client_stream *s); /* NULL is fine */

/* Send up to want of the next unsent transactions now, in REQUEST-sized
 * messages to every replica, without exceeding max_outstanding. Returns how
 * many were sent (they are txs[sent_before .. sent_before + return)). */
size_t client_stream_send(struct client_stream *s, size_t want);

/* Re-send overdue transactions, wait up to timeout_us for something to
 * arrive (0: do not wait) and take in every reply that has arrived. Returns
 * how many receipts completed; their indices go to done_idx, which must have
 * room for max_outstanding entries (or be NULL). */
size_t client_stream_poll(struct client_stream *s, uint64_t timeout_us, size_t *done_idx);

size_t client_stream_sent(const struct client_stream *s);        /* txs sent so far */
size_t client_stream_outstanding(const struct client_stream *s); /* sent, no receipt yet */
size_t client_stream_capacity(const struct client_stream *s);    /* max_outstanding in use */
bool client_stream_heard(const struct client_stream *s);         /* some replica answered */

/* client_get_account for n accounts at once (queries pipelined, up to a few
 * hundred in flight). out[i] belongs to pks[i]. Returns 0 when every account
 * got f+1 matching answers, TALLY_EUNAVAIL when no replica answered at all,
 * TALLY_ETIMEOUT otherwise. */
int client_get_accounts(struct client *c, const tc_pubkey *pks, size_t n, uint64_t timeout_ms,
                        struct client_account *out, struct tally_err *err);

#endif

/* ---- command-line helpers shared by the client subcommands -------------- */

/* Load the cluster config from path, or when path is NULL from
 * ./testnet/cluster.json if it exists (else a clear error). */
int client_config_load(const char *path, struct tally_config *cfg, struct tally_err *err);
/* An account: 64 hex chars, or @KEYFILE (its public key). The caller's exit
 * status: 2 (usage) for bad hex, 1 for a key file that cannot be read. */
int client_parse_account(const char *arg, tc_pubkey *pk, struct tally_err *err);
/* A tx hash: 64 hex chars. */
int client_parse_hash(const char *arg, tc_hash *h, struct tally_err *err);
/* A decimal u64 (digits only). 0 or -1. */
int client_parse_u64(const char *s, uint64_t *out);
/* Seconds as a decimal ("2", "0.5") into milliseconds. 0 or -1. */
int client_parse_seconds(const char *s, uint64_t *ms);
