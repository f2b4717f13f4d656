/* A configuration against a data directory: the chain id its genesis gives,
 * and whether a data directory may be used with it (checked read-only, before
 * anything opens the directory for writing). */
#include "config/config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int config_genesis_hash(const struct tally_config *c, tc_hash *out, struct tally_err *err)
{
    struct ledger_open_opts o = {.in_memory = true, .sync = false};
    struct ledger *l = NULL;
    int rc = ledger_open_opts("/mem/genesis", &o, &l, err);
    if (rc == TALLY_OK)
        rc = ledger_init_genesis(l, c->genesis.accounts, c->genesis.count, err);
    if (rc == TALLY_OK)
        ledger_genesis_hash(l, out);
    ledger_close(l);
    if (rc != TALLY_OK)
        tally_err_wrap(err, "building the configured genesis block");
    return rc;
}

/* What dir holds: 0 nothing, 1 a RocksDB database (or the start of one),
 * 2 other files only. */
static int dir_contents(const char *dir, struct tally_err *err, int *what)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return tally_errf(err, TALLY_EIO, "data directory %s: cannot read: %s", dir,
                          strerror(errno));
    struct dirent *e;
    *what = 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        /* RocksDB writes its info LOG, LOCK and IDENTITY first, CURRENT once
         * the database exists. */
        if (strcmp(e->d_name, "CURRENT") == 0 || strcmp(e->d_name, "LOCK") == 0 ||
            strcmp(e->d_name, "IDENTITY") == 0 || strncmp(e->d_name, "LOG", 3) == 0) {
            *what = 1;
            break;
        }
        *what = 2;
    }
    closedir(d);
    return TALLY_OK;
}

int config_check_data_dir(const struct tally_config *c, const char *cfg_what, const char *dir,
                          bool may_create, struct tally_err *err)
{
    struct stat st;
    if (dir == NULL || dir[0] == '\0')
        return tally_errf(err, TALLY_EINVAL, "no data directory given");
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT && may_create)
            return TALLY_OK;
        return tally_errf(err, errno == ENOENT ? TALLY_ENOTFOUND : TALLY_EIO,
                          "data directory %s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return tally_errf(err, TALLY_EINVAL, "data directory %s is not a directory", dir);
    int what = 0;
    int rc = dir_contents(dir, err, &what);
    if (rc != TALLY_OK)
        return rc;
    char current[PATH_MAX];
    if (snprintf(current, sizeof(current), "%s/CURRENT", dir) >= (int)sizeof(current))
        return tally_errf(err, TALLY_EINVAL, "data directory %s: path too long", dir);
    bool has_db = access(current, F_OK) == 0;
    if (!has_db) {
        if (may_create && what != 2)
            return TALLY_OK; /* empty, or a first start that stopped early */
        if (what == 2)
            return tally_errf(err, TALLY_EINVAL,
                              "data directory %s holds other files and no tally ledger%s", dir,
                              may_create ? "; refusing to create one there" : "");
        return tally_errf(err, TALLY_ENOTFOUND, "data directory %s holds no tally ledger", dir);
    }

    struct ledger_open_opts o = {.read_only = true};
    struct ledger *l = NULL;
    rc = ledger_open_opts(dir, &o, &l, err);
    if (rc != TALLY_OK)
        return rc;
    if (!ledger_has_genesis(l)) {
        ledger_close(l);
        if (may_create)
            return TALLY_OK;
        return tally_errf(err, TALLY_ENOTFOUND, "data directory %s has no genesis block", dir);
    }
    tc_hash have, want;
    ledger_genesis_hash(l, &have);
    ledger_close(l);
    if (c == NULL)
        return TALLY_OK;
    rc = config_genesis_hash(c, &want, err);
    if (rc != TALLY_OK)
        return rc;
    if (!tc_equal(have.b, want.b, TC_HASH_BYTES)) {
        char h[2 * TC_HASH_BYTES + 1], w[2 * TC_HASH_BYTES + 1];
        tc_hex_encode(have.b, TC_HASH_BYTES, h);
        tc_hex_encode(want.b, TC_HASH_BYTES, w);
        return tally_errf(err, TALLY_EMISMATCH,
                          "data directory %s belongs to another cluster: its genesis block is "
                          "%.16s..., %s's genesis gives %.16s...",
                          dir, h, cfg_what != NULL ? cfg_what : "the configuration", w);
    }
    return TALLY_OK;
}
