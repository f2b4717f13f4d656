/* tally: the client and operator tool. One command, subcommands like git. */
#include <stdio.h>
#include <string.h>

#include "crypto/crypto.h"
#include "src/log.h"
#include "tools/cmds.h"

struct tally_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
};

static const struct tally_command commands[] = {
#define TALLY_CMD_ENTRY(name, help) {#name, cmd_##name, help},
    TALLY_COMMANDS(TALLY_CMD_ENTRY)
#undef TALLY_CMD_ENTRY
};

/* The command-line name of a command: its C name with '_' as '-'. */
static const char *display_name(const char *name, char *buf, size_t size)
{
    size_t i = 0;
    for (; name[i] != '\0' && i + 1 < size; i++)
        buf[i] = name[i] == '_' ? '-' : name[i];
    buf[i] = '\0';
    return buf;
}

static void usage(FILE *out)
{
    char buf[64];
    fprintf(out, "usage: tally <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-17s %s\n", display_name(commands[i].name, buf, sizeof(buf)),
                commands[i].help);
    fprintf(out, "\nRun `tally <command> --help` for a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    tally_log_init("tally");
    if (tc_init() != TALLY_OK) {
        fprintf(stderr, "tally: cannot initialise cryptography\n");
        return 1;
    }
    char buf[64];
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], display_name(commands[i].name, buf, sizeof(buf))) != 0)
            continue;
        if (commands[i].run == NULL) {
            fprintf(stderr, "tally %s: not built yet\n", buf);
            return 1;
        }
        return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "tally: unknown command '%s' (see tally --help)\n", argv[1]);
    return 2;
}
