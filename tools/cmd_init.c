/* tally init --dir DIR: write a complete testnet configuration.
 *
 * DIR/cluster.json, DIR/genesis.json, DIR/replica-I.key (I = 0..n-1),
 * DIR/accounts/account-K.key (K = 0..accounts-1, all funded in genesis) and
 * DIR/accounts/accounts.json ({"accounts": [{"name", "public_key", "key_file"}]},
 * key_file absolute) for scripts. Nothing existing is overwritten; on failure
 * the files this run created are removed again. cluster.json is written last,
 * so its presence means the configuration is complete. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sodium.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "crypto/crypto.h"
#include "tools/cmds.h"

#define INIT_MAX_ACCOUNTS 100000

struct init_opts {
    const char *dir;
    const char *host;
    const char *name;
    uint64_t nodes, accounts, balance, base_port;
    bool json;
};

/* What this run created, to undo on failure. */
struct init_state {
    char dir[PATH_MAX]; /* absolute */
    bool made_dir, made_accounts_dir;
    uint32_t replica_keys; /* replica-0..replica_keys-1.key were created */
    uint32_t account_keys; /* length of account_done */
    char *account_done;    /* [i] = 1 when accounts/account-i.key was created; owned */
    bool genesis, accounts_json, cluster;
};

static void init_usage(FILE *out)
{
    fprintf(out,
            "usage: tally init --dir DIR [--nodes 4] [--accounts 8] [--balance 1000000000]\n"
            "                  [--base-port 27000] [--host 127.0.0.1] [--name testnet] [--json]\n"
            "\n"
            "Write a complete testnet configuration into DIR (created if missing):\n"
            "  DIR/cluster.json, DIR/genesis.json, DIR/replica-I.key (I = 0..nodes-1),\n"
            "  DIR/accounts/account-K.key (funded in genesis), DIR/accounts/accounts.json.\n"
            "Replica I listens on base-port+2I (peers) and base-port+2I+1 (clients).\n"
            "Existing files are never overwritten.\n"
            "\n"
            "  --dir DIR         output directory (required)\n"
            "  --nodes N         replicas, 3f+1 with f >= 1: 4, 7, 10, 13 or 16 (default 4)\n"
            "  --accounts N      funded accounts, 1..%d (default 8)\n"
            "  --balance N       initial balance of each account (default 1000000000)\n"
            "  --base-port P     first port (default 27000)\n"
            "  --host H          host or IP address in the replicas' addresses (default "
            "127.0.0.1)\n"
            "  --name NAME       cluster_name (default testnet)\n"
            "  --json            print what was written as JSON\n"
            "  --help            show this help\n",
            INIT_MAX_ACCOUNTS);
}

/* A decimal u64: digits only, no sign, no trailing junk, no overflow. */
static int parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s == '\0')
        return -1;
    uint64_t v = 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int init_path(char *out, size_t size, const struct init_state *st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int init_path(char *out, size_t size, const struct init_state *st, const char *fmt, ...)
{
    char rel[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof(rel), fmt, ap);
    va_end(ap);
    int n = snprintf(out, size, "%s/%s", st->dir, rel);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

static void init_undo(const struct init_state *st)
{
    char path[PATH_MAX];
    if (st->cluster && init_path(path, sizeof(path), st, "cluster.json") == 0)
        unlink(path);
    if (st->genesis && init_path(path, sizeof(path), st, "genesis.json") == 0)
        unlink(path);
    if (st->accounts_json && init_path(path, sizeof(path), st, "accounts/accounts.json") == 0)
        unlink(path);
    for (uint32_t i = 0; i < st->replica_keys; i++)
        if (init_path(path, sizeof(path), st, "replica-%u.key", i) == 0)
            unlink(path);
    for (uint32_t i = 0; i < st->account_keys; i++)
        if (st->account_done[i] &&
            init_path(path, sizeof(path), st, "accounts/account-%u.key", i) == 0)
            unlink(path);
    if (st->made_accounts_dir && init_path(path, sizeof(path), st, "accounts") == 0)
        rmdir(path);
    if (st->made_dir)
        rmdir(st->dir);
}

static int parse_init_args(int argc, char **argv, struct init_opts *o)
{
    static const struct option opts[] = {{"dir", required_argument, NULL, 'd'},
                                         {"nodes", required_argument, NULL, 'n'},
                                         {"accounts", required_argument, NULL, 'a'},
                                         {"balance", required_argument, NULL, 'b'},
                                         {"base-port", required_argument, NULL, 'p'},
                                         {"host", required_argument, NULL, 'H'},
                                         {"name", required_argument, NULL, 'N'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+d:n:a:b:p:H:N:jh", opts, NULL)) != -1) {
        uint64_t *target = NULL;
        const char *what = NULL;
        switch (c) {
        case 'd':
            o->dir = optarg;
            break;
        case 'H':
            o->host = optarg;
            break;
        case 'N':
            o->name = optarg;
            break;
        case 'j':
            o->json = true;
            break;
        case 'h':
            init_usage(stdout);
            return 0;
        case 'n':
            target = &o->nodes, what = "--nodes";
            break;
        case 'a':
            target = &o->accounts, what = "--accounts";
            break;
        case 'b':
            target = &o->balance, what = "--balance";
            break;
        case 'p':
            target = &o->base_port, what = "--base-port";
            break;
        default:
            fprintf(stderr,
                    "tally init: option '%s' is unknown or lacks its value (see tally init "
                    "--help)\n",
                    argv[optind - 1]);
            return 2;
        }
        if (target != NULL && parse_u64(optarg, target) != 0) {
            fprintf(stderr, "tally init: %s '%s': expected a non-negative integer\n", what, optarg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tally init: unexpected argument '%s' (see tally init --help)\n",
                argv[optind]);
        return 2;
    }
    if (o->dir == NULL || o->dir[0] == '\0') {
        fprintf(stderr, "tally init: --dir DIR is required (see tally init --help)\n");
        return 2;
    }
    if (o->nodes < 4 || o->nodes > CONFIG_MAX_REPLICAS || (o->nodes - 1) % 3 != 0) {
        fprintf(stderr,
                "tally init: --nodes %llu: n must be 3f+1 with f >= 1 (4, 7, 10, 13 or "
                "16)\n",
                (unsigned long long)o->nodes);
        return 2;
    }
    if (o->accounts < 1 || o->accounts > INIT_MAX_ACCOUNTS) {
        fprintf(stderr, "tally init: --accounts %llu: must be 1..%d\n",
                (unsigned long long)o->accounts, INIT_MAX_ACCOUNTS);
        return 2;
    }
    if (o->balance > (uint64_t)INT64_MAX || o->balance > UINT64_MAX / o->accounts) {
        fprintf(stderr,
                "tally init: --balance %llu: too large (at most 2^63-1, and the total of all "
                "accounts must fit in 64 bits)\n",
                (unsigned long long)o->balance);
        return 2;
    }
    if (o->base_port < 1 || o->base_port + 2 * o->nodes - 1 > 65535) {
        fprintf(stderr, "tally init: --base-port %llu: ports %llu..%llu must lie in 1..65535\n",
                (unsigned long long)o->base_port, (unsigned long long)o->base_port,
                (unsigned long long)(o->base_port + 2 * o->nodes - 1));
        return 2;
    }
    char addr[CONFIG_ADDR_MAX];
    struct tally_err err = {0};
    if (snprintf(addr, sizeof(addr), "tcp://%s:1", o->host) >= (int)sizeof(addr) ||
        config_parse_address(addr, NULL, 0, NULL, &err) != TALLY_OK) {
        fprintf(stderr, "tally init: --host '%s': not a host name or IP address\n", o->host);
        return 2;
    }
    if (o->name[0] == '\0' || strlen(o->name) >= CONFIG_NAME_MAX) {
        fprintf(stderr, "tally init: --name: must be 1 to %d characters\n", CONFIG_NAME_MAX - 1);
        return 2;
    }
    return -1; /* go on */
}

static int cmp_account(const void *x, const void *y)
{
    const struct ledger_genesis_account *a = x, *b = y;
    return memcmp(a->pk.b, b->pk.b, TC_PUBKEY_BYTES);
}

static int make_dir(const char *path, bool *made, struct tally_err *err)
{
    struct stat sb;
    if (mkdir(path, 0755) == 0) {
        *made = true;
        return TALLY_OK;
    }
    if (errno == EEXIST && stat(path, &sb) == 0) {
        if (S_ISDIR(sb.st_mode))
            return TALLY_OK;
        return tally_errf(err, TALLY_EEXIST, "%s exists and is not a directory", path);
    }
    return tally_errf(err, TALLY_EIO, "%s: cannot create directory: %s", path, strerror(errno));
}

/* Generate a key pair, write it to path, return its public key. */
static int new_key(const char *path, tc_pubkey *pk, struct tally_err *err)
{
    tc_keypair kp = {0};
    if (tc_keypair_generate(&kp) != TALLY_OK)
        return tally_errf(err, TALLY_ENOMEM, "%s: cannot generate a key pair", path);
    int rc = tc_keyfile_write(path, &kp, err);
    *pk = kp.pk;
    tc_keypair_free(&kp);
    return rc;
}

/* Account keys are written without a per-file fsync (100000 of them would
 * take a minute); one syncfs() at the end makes them all durable. One key
 * pair's guarded memory is reused for every account. */
static int write_account_keys(struct init_state *st, tc_pubkey *pks, uint32_t count,
                              struct tally_err *err)
{
    char path[PATH_MAX];
    st->account_done = calloc(count, 1);
    if (st->account_done == NULL)
        return tally_errf(err, TALLY_ENOMEM, "out of memory for %u accounts", count);
    st->account_keys = count;
    tc_keypair kp = {0};
    if (tc_keypair_generate(&kp) != TALLY_OK)
        return tally_errf(err, TALLY_ENOMEM, "out of memory for key material");
    int rc = TALLY_OK;
    for (uint32_t i = 0; i < count && rc == TALLY_OK; i++) {
        if (init_path(path, sizeof(path), st, "accounts/account-%u.key", i) != 0)
            rc = tally_errf(err, TALLY_EINVAL, "%s: path too long", st->dir);
        else {
            tc_keypair_regenerate(&kp);
            pks[i] = kp.pk;
            rc = tc_keyfile_write_flags(path, &kp, TC_KEYFILE_NOSYNC, err);
        }
        if (rc == TALLY_OK)
            st->account_done[i] = 1;
    }
    tc_keypair_free(&kp);
    if (rc != TALLY_OK)
        return rc;
    if (init_path(path, sizeof(path), st, "accounts") != 0)
        return tally_errf(err, TALLY_EINVAL, "%s: path too long", st->dir);
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || syncfs(dfd) != 0 || fsync(dfd) != 0) {
        rc = tally_errf(err, TALLY_EIO, "%s: cannot sync key files: %s", path, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        return rc;
    }
    close(dfd);
    return TALLY_OK;
}

static int write_accounts_json(const char *path, const struct init_state *st, const tc_pubkey *pks,
                               uint32_t count, struct tally_err *err)
{
    char hex[2 * TC_PUBKEY_BYTES + 1], name[32], key_file[PATH_MAX];
    json_t *arr = json_array();
    int rc = TALLY_OK;
    for (uint32_t i = 0; arr != NULL && i < count; i++) {
        tc_hex_encode(pks[i].b, TC_PUBKEY_BYTES, hex);
        snprintf(name, sizeof(name), "account-%u", i);
        if (init_path(key_file, sizeof(key_file), st, "accounts/account-%u.key", i) != 0 ||
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "name", name, "public_key", hex,
                                                 "key_file", key_file)) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    json_t *root = arr != NULL ? json_pack("{s:o}", "accounts", arr) : NULL;
    char *text = root != NULL ? json_dumps(root, JSON_INDENT(2)) : NULL;
    json_decref(root);
    if (text == NULL)
        return tally_errf(err, TALLY_ENOMEM, "%s: cannot build JSON", path);
    FILE *f = NULL;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
        rc = tally_errf(err, errno == EEXIST ? TALLY_EEXIST : TALLY_EIO, "%s: cannot create: %s",
                        path, strerror(errno));
        if (fd >= 0)
            close(fd);
        goto out;
    }
    if (fprintf(f, "%s\n", text) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        rc = tally_errf(err, TALLY_EIO, "%s: cannot write: %s", path, strerror(errno));
        fclose(f);
        unlink(path);
        goto out;
    }
    if (fclose(f) != 0) {
        rc = tally_errf(err, TALLY_EIO, "%s: cannot write: %s", path, strerror(errno));
        unlink(path);
    }
out:
    free(text);
    return rc;
}

static void print_result(const struct init_opts *o, const struct init_state *st,
                         const struct tally_config *c)
{
    char hex[2 * TC_PUBKEY_BYTES + 1], path[PATH_MAX];
    if (!o->json) {
        printf("wrote %s: %u replicas (f = %u), %llu accounts with %llu each\n", st->dir, c->n,
               c->f, (unsigned long long)o->accounts, (unsigned long long)o->balance);
        for (uint32_t i = 0; i < c->n; i++)
            printf("  replica %u  peer %s  client %s\n", i, c->replicas[i].peer_address,
                   c->replicas[i].client_address);
        printf("cluster: %s/cluster.json  accounts: %s/accounts/accounts.json\n", st->dir, st->dir);
        return;
    }
    json_t *reps = json_array();
    for (uint32_t i = 0; reps != NULL && i < c->n; i++) {
        tc_hex_encode(c->replicas[i].pk.b, TC_PUBKEY_BYTES, hex);
        init_path(path, sizeof(path), st, "replica-%u.key", i);
        json_array_append_new(reps, json_pack("{s:I, s:s, s:s, s:s, s:s}", "id", (json_int_t)i,
                                              "public_key", hex, "key_file", path, "peer_address",
                                              c->replicas[i].peer_address, "client_address",
                                              c->replicas[i].client_address));
    }
    char cluster[PATH_MAX], genesis[PATH_MAX], accounts[PATH_MAX];
    init_path(cluster, sizeof(cluster), st, "cluster.json");
    init_path(genesis, sizeof(genesis), st, "genesis.json");
    init_path(accounts, sizeof(accounts), st, "accounts/accounts.json");
    json_t *root =
        json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:o, s:I, s:I}", "dir", st->dir, "cluster_file",
                  cluster, "genesis_file", genesis, "accounts_file", accounts, "n",
                  (json_int_t)c->n, "f", (json_int_t)c->f, "replicas", reps, "accounts",
                  (json_int_t)o->accounts, "balance", (json_int_t)o->balance);
    char *text = root != NULL ? json_dumps(root, JSON_INDENT(2)) : NULL;
    if (text != NULL)
        printf("%s\n", text);
    free(text);
    json_decref(root);
}

static int run_init(const struct init_opts *o, struct init_state *st, struct tally_config *c,
                    struct tally_err *err)
{
    char path[PATH_MAX];
    tc_pubkey *pks = NULL;
    int rc;

    c->n = (uint32_t)o->nodes;
    c->f = (c->n - 1) / 3;
    snprintf(c->cluster_name, sizeof(c->cluster_name), "%s", o->name);
    c->genesis.count = (size_t)o->accounts;
    c->genesis.accounts = calloc(c->genesis.count, sizeof(*c->genesis.accounts));
    pks = calloc(c->genesis.count, sizeof(*pks));
    if (c->genesis.accounts == NULL || pks == NULL) {
        rc = tally_errf(err, TALLY_ENOMEM, "out of memory for %llu accounts",
                        (unsigned long long)o->accounts);
        goto out;
    }

    for (uint32_t i = 0; i < c->n; i++) {
        struct tally_replica_config *r = &c->replicas[i];
        uint64_t port = o->base_port + 2 * i;
        r->id = i;
        snprintf(r->peer_address, sizeof(r->peer_address), "tcp://%s:%llu", o->host,
                 (unsigned long long)port);
        snprintf(r->client_address, sizeof(r->client_address), "tcp://%s:%llu", o->host,
                 (unsigned long long)port + 1);
        if (init_path(path, sizeof(path), st, "replica-%u.key", i) != 0) {
            rc = tally_errf(err, TALLY_EINVAL, "%s: path too long", st->dir);
            goto out;
        }
        rc = new_key(path, &r->pk, err);
        if (rc != TALLY_OK)
            goto out;
        st->replica_keys = i + 1;
    }

    if (init_path(path, sizeof(path), st, "accounts") != 0) {
        rc = tally_errf(err, TALLY_EINVAL, "%s: path too long", st->dir);
        goto out;
    }
    rc = make_dir(path, &st->made_accounts_dir, err);
    if (rc != TALLY_OK)
        goto out;
    rc = write_account_keys(st, pks, (uint32_t)c->genesis.count, err);
    if (rc != TALLY_OK)
        goto out;
    for (size_t i = 0; i < c->genesis.count; i++) {
        c->genesis.accounts[i].pk = pks[i];
        c->genesis.accounts[i].balance = o->balance;
    }
    qsort(c->genesis.accounts, c->genesis.count, sizeof(*c->genesis.accounts), cmp_account);

    rc = config_validate(c, "new configuration", err);
    if (rc != TALLY_OK)
        goto out;

    init_path(path, sizeof(path), st, "accounts/accounts.json");
    rc = write_accounts_json(path, st, pks, (uint32_t)c->genesis.count, err);
    if (rc != TALLY_OK)
        goto out;
    st->accounts_json = true;
    init_path(path, sizeof(path), st, "genesis.json");
    rc = config_write_genesis(path, &c->genesis, err);
    if (rc != TALLY_OK)
        goto out;
    st->genesis = true;
    init_path(path, sizeof(path), st, "cluster.json");
    rc = config_write_cluster(path, c, "genesis.json", err);
    if (rc != TALLY_OK)
        goto out;
    st->cluster = true;

    /* Read it back the way tallyd will. */
    struct tally_config check;
    rc = config_load(path, &check, err);
    if (rc != TALLY_OK) {
        tally_err_wrap(err, "reading back what was written");
        goto out;
    }
    config_free(&check);
out:
    free(pks);
    return rc;
}

int cmd_init(int argc, char **argv)
{
    struct init_opts o = {.host = "127.0.0.1",
                          .name = "testnet",
                          .nodes = 4,
                          .accounts = 8,
                          .balance = 1000000000,
                          .base_port = 27000};
    struct init_state st = {0};
    struct tally_config c;
    struct tally_err err = {0};
    char path[PATH_MAX];

    int rc = parse_init_args(argc, argv, &o);
    if (rc >= 0)
        return rc;
    config_set_defaults(&c);

    rc = make_dir(o.dir, &st.made_dir, &err);
    if (rc != TALLY_OK)
        goto fail;
    if (realpath(o.dir, st.dir) == NULL) {
        rc = tally_errf(&err, TALLY_EIO, "%s: %s", o.dir, strerror(errno));
        goto fail;
    }
    if (snprintf(path, sizeof(path), "%s/cluster.json", st.dir) >= (int)sizeof(path)) {
        rc = tally_errf(&err, TALLY_EINVAL, "%s: path too long", o.dir);
        goto fail;
    }
    if (access(path, F_OK) == 0) {
        rc = tally_errf(&err, TALLY_EEXIST,
                        "%s already holds a configuration; remove it or choose another --dir",
                        o.dir);
        goto fail;
    }
    rc = run_init(&o, &st, &c, &err);
    if (rc != TALLY_OK)
        goto fail;
    print_result(&o, &st, &c);
    free(st.account_done);
    config_free(&c);
    return 0;
fail:
    init_undo(&st);
    free(st.account_done);
    config_free(&c);
    fprintf(stderr, "tally init: %s\n", tally_err_text(&err));
    return 1;
}
