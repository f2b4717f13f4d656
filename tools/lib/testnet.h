/* Local testnet management and the status table, for `tally testnet` and
 * `tally status`.
 *
 * A testnet directory DIR holds what `tally init` writes (cluster.json,
 * genesis.json, replica-I.key, accounts/) plus, per replica I: data-I/ (its
 * data directory), replica-I.log (stdout and stderr) and replica-I.pid.
 * Replicas run as background processes (their own session) of the tallyd
 * binary found next to the running tally binary. Prefix: testnet_. */
#ifndef TALLY_TESTNET_H
#define TALLY_TESTNET_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"

/* Ask every replica of cfg for its status and print a table (or JSON with
 * json). Returns how many replicas answered. */
uint32_t testnet_print_status(const struct tally_config *cfg, bool json, uint64_t timeout_ms);

struct testnet_start_opts {
    const char *dir;
    uint32_t nodes;     /* for tally init when DIR has no cluster.json */
    uint32_t base_port; /* ditto; 0 = tally init's default */
    uint64_t wait_ms;   /* how long to wait for every replica to answer */
    bool json;
};
/* 0 when every replica runs and answers; 1 on failure (message printed). */
int testnet_start(const struct testnet_start_opts *o);
/* SIGTERM each replica by pid file (only processes that are tallyd), wait up
 * to wait_ms, then SIGKILL. 0 when all are stopped. */
int testnet_stop(const char *dir, uint64_t wait_ms, bool json);
/* Pid of replica id from DIR/replica-I.pid when that process runs tallyd, else 0. */
long testnet_running_pid(const char *dir, uint32_t id);

#endif
