/* The pure parts of `tally bench`: latency percentiles, the crypto ceiling,
 * the open loop's send schedule, and what the machine is. Prefix: bench_.
 * Nothing here talks to a cluster (see tools/cmd_bench.c). */
#ifndef TALLY_BENCH_H
#define TALLY_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "src/err.h"

/* ---- latency ------------------------------------------------------------- */

/* The p-th percentile (0 < p <= 100) of sorted[0..n) by the nearest-rank
 * method: the smallest value with at least p % of the values at or below it.
 * 0 when n == 0. */
uint64_t bench_percentile(const uint64_t *sorted, size_t n, double p);

struct bench_latency {
    size_t n;
    uint64_t p50, p90, p99, p999, max; /* microseconds */
    double mean;
};

/* Sort v[0..n) in place and summarise it. */
void bench_latency_summary(uint64_t *v, size_t n, struct bench_latency *out);

/* Receipts per second of a window: counts[k] gets how many of at[0..n) fall
 * in [start + k s, start + (k+1) s), for k < nbuckets; times outside
 * [start, start + nbuckets s) are not counted. counts is zeroed first. */
void bench_per_second(const uint64_t *at_us, size_t n, uint64_t start_us, uint64_t *counts,
                      size_t nbuckets);

/* ---- the crypto ceiling ---------------------------------------------------- */

/* Every replica verifies every client signature once, so n replicas sharing
 * `cores` cores can order at most cores * verify_per_s_per_core / n
 * transactions per second. 0 when n or cores is 0. */
double bench_ceiling_tx_per_s(unsigned cores, double verify_per_s_per_core, uint32_t n);
/* How far the ceiling moved between two measurements: (after - before) /
 * before, 0 when either is not positive. */
double bench_ceiling_drift(double before, double after);

struct bench_crypto {
    double sign_per_s, verify_per_s; /* one core */
    uint64_t signs, verifies;
};

/* Measure Ed25519 sign and verify of 200-byte messages on this thread (tc_sign,
 * tc_verify): about sign_us, then verify_us of wall time. tc_init first. */
int bench_measure_crypto(uint64_t sign_us, uint64_t verify_us, struct bench_crypto *out,
                         struct tally_err *err);

/* ---- the open loop's schedule -------------------------------------------- */

/* Transaction i (from 0) is due at start + i / rate seconds. */
uint64_t bench_due_us(uint64_t start_us, double rate, uint64_t i);
/* How many transactions are due by now: those i with bench_due_us <= now. */
uint64_t bench_due_count(uint64_t start_us, double rate, uint64_t now_us);
/* How far behind schedule a sender is that has sent `sent` by now: now minus
 * the due time of the next unsent transaction, 0 when it is not yet due. */
uint64_t bench_behind_us(uint64_t start_us, double rate, uint64_t sent, uint64_t now_us);

/* ---- transactions -------------------------------------------------------- */

/* Round robin over `accounts` accounts: transaction i is sent by account
 * i % accounts with that account's (i / accounts + 1)-th next nonce. */
static inline size_t bench_account_of(uint64_t i, size_t accounts)
{
    return (size_t)(i % accounts);
}
static inline uint64_t bench_nonce_of(uint64_t i, size_t accounts, uint64_t current_nonce)
{
    return current_nonce + i / accounts + 1;
}

/* How many transactions to sign ahead for a run: the count when given,
 * else rate * seconds (open loop) or est_rate * seconds (closed loop), plus
 * headroom (one outstanding window and 10 %), at least 1000. */
uint64_t bench_presign_count(uint64_t count, double rate, double est_rate, double seconds,
                             uint64_t outstanding);

/* ---- the ledger benchmark (tally bench --ledger) --------------------------- */

/* A small deterministic generator (splitmix64) for picking accounts. */
uint64_t bench_rand(uint64_t *state);
/* Uniform in [0, n) (n > 0; rejection sampling, no modulo bias). */
uint64_t bench_rand_below(uint64_t *state, uint64_t n);

/* The 32-byte Ed25519 seed of benchmark account i: cheap to derive again
 * when account i has to sign (its key pair is never stored). */
#define BENCH_SEED_BYTES 32
void bench_account_seed(uint64_t i, uint8_t seed[BENCH_SEED_BYTES]);

/* How `accounts` accounts come to exist when a genesis holds at most
 * `max_genesis` (LEDGER_BLOCK_MAX_TXS): accounts 0..funders-1 are funded in
 * the genesis; every other account j is created by a transfer from funder
 * (j - funders) / per_funder, that funder's ((j - funders) % per_funder + 1)-th
 * transaction, so each funder's creations are contiguous and its nonces
 * consecutive. */
struct bench_ledger_plan {
    uint64_t accounts, funders, per_funder; /* per_funder 0 when all are in the genesis */
};
void bench_ledger_plan(uint64_t accounts, uint64_t max_genesis, struct bench_ledger_plan *out);
/* How many accounts funder f creates (0 for f >= funders). */
uint64_t bench_ledger_children(const struct bench_ledger_plan *p, uint64_t f);

/* ---- the machine and printing -------------------------------------------- */

unsigned bench_cores(void); /* online cores (sysconf), at least 1 */
/* The CPU model from /proc/cpuinfo ("AMD EPYC"), or "unknown". */
void bench_cpu_model(char *out, size_t size);
/* v rounded to an integer with thousands separators: 11000.4 -> "11,000". */
void bench_fmt_int(double v, char *out, size_t size);

#endif
