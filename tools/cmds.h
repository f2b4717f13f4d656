/* `tally` subcommands: one file per subcommand, each `int cmd_NAME(int argc, char **argv)`
 * returning the process exit code (0 ok, 1 failure, 2 usage error). argv[0] is the
 * subcommand name. Every subcommand answers --help. An underscore in NAME is a hyphen
 * on the command line (cmd_verify_checkpoint is `tally verify-checkpoint`). */
#ifndef TALLY_TOOLS_CMDS_H
#define TALLY_TOOLS_CMDS_H

#define TALLY_COMMANDS(X)                                                                          \
    X(keygen, "write a new Ed25519 key pair to a key file")                                        \
    X(init, "write a complete testnet configuration (keys, cluster, genesis)")                     \
    X(testnet, "start, inspect or stop a local testnet")                                           \
    X(submit, "sign and submit a transfer; wait for f+1 matching replies")                         \
    X(balance, "query an account's balance from f+1 matching replies")                             \
    X(tx, "look up a transaction by hash from f+1 matching replies")                               \
    X(status, "show each replica's view, sequence, checkpoint and peers")                          \
    X(audit, "verify a data directory's hash chain, signatures, results and state")                \
    X(export, "write a data directory's blocks, transactions and checkpoints as JSON lines")       \
    X(verify_checkpoint, "check a checkpoint certificate's 2f+1 signatures against the ledger")    \
    X(bench, "load a running cluster; throughput, latency and the crypto ceiling")

#define TALLY_CMD_DECL(name, help) int cmd_##name(int argc, char **argv) __attribute__((weak));
TALLY_COMMANDS(TALLY_CMD_DECL)
#undef TALLY_CMD_DECL

#endif
