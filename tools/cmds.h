/* `tally` subcommands: one file per subcommand, each `int cmd_NAME(int argc, char **argv)`
 * returning the process exit code (0 ok, 1 failure, 2 usage error). argv[0] is the
 * subcommand name. Every subcommand answers --help. */
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
    X(export, "write a data directory's blocks and transactions as JSON lines")

#define TALLY_CMD_DECL(name, help) int cmd_##name(int argc, char **argv) __attribute__((weak));
TALLY_COMMANDS(TALLY_CMD_DECL)
#undef TALLY_CMD_DECL

#endif
