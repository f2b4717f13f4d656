/* The replica shell: the PBFT core and the ledger, driven in steps by one
 * thread at a time.
 *
 *   transport (NNG streams; each read completes on a reading thread, src/rxpoll.h)
 *     -> verifier on that thread (decode, signatures)
 *     -> bounded event queue -> a step: pbft_on_* / queries / status
 *
 * A step takes what is queued (and the core's tick when due). A verified
 * peer message is stepped on the thread that read it when no other thread
 * is stepping (one step, then it goes back to reading); everything else
 * (client messages, ticks, what is left over) is stepped by the loop thread,
 * except that a backup's client REQUESTs wait (at most 5 ms) for the next
 * step, whichever thread takes it.
 * During a step the core's promises (io->persist) are staged in the ledger's
 * protocol key space and its sends are buffered; at the end of the step the
 * staged promises are written with ONE synced RocksDB write (or ride along in
 * the WriteBatch of a block executed in the same step; when the only ones
 * are deferrable PRE-PREPARE and PREPARE records, the write is not synced,
 * see pbft_persist.deferrable) and only then are the
 * buffered sends flushed (persist-before-send). Executing a committed batch
 * applies it as one block (signatures already verified by the pool) and sends
 * ONE signed REPLY per client connection per block.
 *
 * Protocol state keys (ledger meta, big-endian seq):
 *   "view"            u64 view
 *   "pp" || seq       u64 view, 32 digest, u32 count, count x tx, 64 primary's sig;
 *                     once block seq is in the ledger, count REPLICA_PP_IN_BLOCK
 *                     and no txs: the batch is that block's (see slim_pre_prepare)
 *   "pr" || seq       u64 view, 32 digest          (own PREPARE sent)
 *   "cm" || seq       u64 view, 32 digest          (own COMMIT sent)
 *   "lo" / "hi"       u64: entries <= lo were discarded; highest seq stored
 *   "as"              u64 view, u64 seq: how far our NEW-VIEW as the new
 *                     primary re-proposed (PBFT_PERSIST_ASSIGNED)
 *   "hz"              u64 view, u64 seq, 36 boot id: how far our unsynced
 *                     PRE-PREPAREs or PREPAREs may reach (PBFT_PERSIST_HORIZON)
 *                     and the kernel boot that wrote it (restored only after
 *                     a reboot)
 *
 * Prefix: replica_. */
#ifndef TALLY_REPLICA_H
#define TALLY_REPLICA_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "crypto/crypto.h"
#include "src/err.h"

#define REPLICA_BOOT_ID_BYTES 36 /* /proc/sys/kernel/random/boot_id, without the newline */

struct replica_opts {
    const struct tally_config *cfg; /* must outlive the replica */
    uint32_t id;
    const tc_keypair *kp; /* this replica's key; must outlive the replica */
    const char *data_dir;
};

struct replica;

/* Open the ledger (writing the genesis on first start), restore the protocol
 * state, bind the sockets and start the threads. Errors name the cause: data
 * directory in use (TALLY_EBUSY), of another cluster (TALLY_EMISMATCH),
 * address in use (TALLY_EIO), ... */
int replica_start(const struct replica_opts *o, struct replica **out, struct tally_err *err);

/* Stop the threads, flush and close the ledger, free. NULL is fine. */
void replica_stop(struct replica *r);

/* True when a step hit an error it cannot continue from (a failed
 * ledger write); err gets the reason. The process should exit. */
bool replica_failed(struct replica *r, struct tally_err *err);

#endif
