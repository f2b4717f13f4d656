/* Cluster configuration and genesis: load with jansson, validate, explain. */
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- errors: "FILE: FIELD: problem" ---------------------------------------- */

static int field_err(struct tally_err *err, const char *file, const char *field, const char *fmt,
                     ...) __attribute__((format(printf, 4, 5)));

static int field_err(struct tally_err *err, const char *file, const char *field, const char *fmt,
                     ...)
{
    char what[TALLY_ERRMSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (field != NULL && field[0] != '\0')
        return tally_errf(err, TALLY_ECONFIG, "%s: %s: %s", file, field, what);
    return tally_errf(err, TALLY_ECONFIG, "%s: %s", file, what);
}

/* ---- numeric fields ----------------------------------------------------------- */

struct num_field {
    const char *name;
    uint64_t min, max, def;
    size_t off;
    bool is32;
};

#define NUM_FIELD(field, lo, hi, dflt, wide)                                                       \
    {                                                                                              \
#field, (lo), (hi), (dflt), offsetof(struct tally_config, field), !(wide)                  \
    }

static const struct num_field num_fields[] = {
    NUM_FIELD(checkpoint_interval, 1, CONFIG_MAX_CHECKPOINT_INTERVAL,
              CONFIG_DEFAULT_CHECKPOINT_INTERVAL, true),
    NUM_FIELD(log_window, 1, CONFIG_MAX_LOG_WINDOW, CONFIG_DEFAULT_LOG_WINDOW, true),
    NUM_FIELD(batch_max_txs, 1, CONFIG_MAX_BATCH_TXS, CONFIG_DEFAULT_BATCH_MAX_TXS, false),
    NUM_FIELD(batch_timeout_ms, 0, CONFIG_MAX_BATCH_TIMEOUT_MS, CONFIG_DEFAULT_BATCH_TIMEOUT_MS,
              true),
    NUM_FIELD(max_inflight_batches, 1, CONFIG_MAX_INFLIGHT_BATCHES,
              CONFIG_DEFAULT_MAX_INFLIGHT_BATCHES, false),
    NUM_FIELD(request_timeout_ms, CONFIG_MIN_REQUEST_TIMEOUT_MS, CONFIG_MAX_REQUEST_TIMEOUT_MS,
              CONFIG_DEFAULT_REQUEST_TIMEOUT_MS, true),
    NUM_FIELD(max_message_bytes, 1, CONFIG_MAX_MESSAGE_BYTES, CONFIG_DEFAULT_MAX_MESSAGE_BYTES,
              true),
};
#define NUM_FIELD_COUNT (sizeof(num_fields) / sizeof(num_fields[0]))

static uint64_t num_get(const struct tally_config *c, const struct num_field *nf)
{
    const char *p = (const char *)c + nf->off;
    if (nf->is32)
        return *(const uint32_t *)(const void *)p;
    return *(const uint64_t *)(const void *)p;
}

static void num_set(struct tally_config *c, const struct num_field *nf, uint64_t v)
{
    char *p = (char *)c + nf->off;
    if (nf->is32)
        *(uint32_t *)(void *)p = (uint32_t)v;
    else
        *(uint64_t *)(void *)p = v;
}

static int num_check_range(const struct num_field *nf, uint64_t v, const char *file,
                           struct tally_err *err)
{
    if (v < nf->min || v > nf->max)
        return field_err(err, file, nf->name, "%llu is out of range (%llu..%llu)",
                         (unsigned long long)v, (unsigned long long)nf->min,
                         (unsigned long long)nf->max);
    return TALLY_OK;
}

/* A JSON non-negative integer, not a string, real or negative number. */
static int json_u64(const json_t *v, const char *file, const char *field, uint64_t *out,
                    struct tally_err *err)
{
    if (json_is_string(v))
        return field_err(err, file, field, "must be a JSON integer, not a string (\"%s\")",
                         json_string_value(v));
    if (json_is_real(v))
        return field_err(err, file, field, "must be an integer, not %g", json_real_value(v));
    if (!json_is_integer(v))
        return field_err(err, file, field, "must be a JSON integer");
    json_int_t i = json_integer_value(v);
    if (i < 0)
        return field_err(err, file, field, "must not be negative (%lld)", (long long)i);
    *out = (uint64_t)i;
    return TALLY_OK;
}

/* Reject keys of obj not in allowed (NULL-terminated). */
static int check_known_fields(const json_t *obj, const char *const *allowed, const char *file,
                              const char *where, struct tally_err *err)
{
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val)
    {
        (void)val;
        bool known = false;
        for (size_t i = 0; allowed[i] != NULL; i++)
            if (strcmp(key, allowed[i]) == 0)
                known = true;
        if (known)
            continue;
        char list[TALLY_ERRMSG_SIZE / 2] = "";
        size_t used = 0;
        for (size_t i = 0; allowed[i] != NULL && used < sizeof(list); i++)
            used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "",
                                     allowed[i]);
        char field[256];
        snprintf(field, sizeof(field), "%s%s%s", where, where[0] ? "." : "", key);
        return field_err(err, file, field, "unknown field (expected one of: %s)", list);
    }
    return TALLY_OK;
}

/* ---- addresses ------------------------------------------------------------------- */

int config_parse_address(const char *addr, char *host, size_t hostlen, uint16_t *port,
                         struct tally_err *err)
{
    static const char scheme[] = "tcp://";
    const char *example = "expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:27000";
    if (addr == NULL || strncmp(addr, scheme, sizeof(scheme) - 1) != 0)
        return tally_errf(err, TALLY_ECONFIG, "\"%s\" is not an address (%s)", addr ? addr : "",
                          example);
    const char *h = addr + sizeof(scheme) - 1;
    const char *colon = strrchr(h, ':');
    if (colon == NULL || colon == h)
        return tally_errf(err, TALLY_ECONFIG, "\"%s\" has no host or no port (%s)", addr, example);
    size_t hlen = (size_t)(colon - h);
    if (h[0] == '[') { /* [IPv6] */
        if (hlen < 3 || h[hlen - 1] != ']')
            return tally_errf(err, TALLY_ECONFIG, "\"%s\": bad bracketed IPv6 host", addr);
        for (size_t i = 1; i + 1 < hlen; i++)
            if (!isxdigit((unsigned char)h[i]) && h[i] != ':' && h[i] != '.')
                return tally_errf(err, TALLY_ECONFIG, "\"%s\": bad character in IPv6 host", addr);
    } else {
        for (size_t i = 0; i < hlen; i++)
            if (!isalnum((unsigned char)h[i]) && h[i] != '.' && h[i] != '-' && h[i] != '_')
                return tally_errf(err, TALLY_ECONFIG, "\"%s\": bad character '%c' in host (%s)",
                                  addr, h[i], example);
    }
    const char *p = colon + 1;
    if (*p == '\0')
        return tally_errf(err, TALLY_ECONFIG, "\"%s\" has no port (%s)", addr, example);
    unsigned long v = 0;
    for (const char *q = p; *q != '\0'; q++) {
        if (!isdigit((unsigned char)*q) || v > 65535)
            return tally_errf(err, TALLY_ECONFIG, "\"%s\": port must be a number from 1 to 65535",
                              addr);
        v = v * 10 + (unsigned long)(*q - '0');
    }
    if (v < 1 || v > 65535)
        return tally_errf(err, TALLY_ECONFIG, "\"%s\": port must be a number from 1 to 65535",
                          addr);
    if (host != NULL) {
        if (hostlen <= hlen)
            return tally_errf(err, TALLY_ECONFIG, "\"%s\": host name too long", addr);
        memcpy(host, h, hlen);
        host[hlen] = '\0';
    }
    if (port != NULL)
        *port = (uint16_t)v;
    return TALLY_OK;
}

/* ---- shared checks (files and in-memory configs) ---------------------------------- */

static int check_n(uint32_t n, const char *file, struct tally_err *err)
{
    if (n < 4 || n > CONFIG_MAX_REPLICAS || (n - 1) % 3 != 0) {
        if (n > 0 && n < 4)
            return field_err(err, file, "replicas",
                             "n = %u replicas: n must be 3f+1 with f >= 1 (4, 7, 10, 13 or 16); "
                             "fewer than 4 replicas tolerate no faults",
                             n);
        return field_err(err, file, "replicas",
                         "n = %u replicas: n must be 3f+1 (4, 7, 10, 13 or 16; at most %d)", n,
                         CONFIG_MAX_REPLICAS);
    }
    return TALLY_OK;
}

/* rs[0..n-1] in file order (index i = replicas[i] in messages). */
static int check_replicas(const struct tally_replica_config *rs, uint32_t n, const char *file,
                          struct tally_err *err)
{
    char field[64];
    int seen[CONFIG_MAX_REPLICAS];
    for (uint32_t i = 0; i < CONFIG_MAX_REPLICAS; i++)
        seen[i] = -1;
    for (uint32_t i = 0; i < n; i++) {
        const struct tally_replica_config *r = &rs[i];
        snprintf(field, sizeof(field), "replicas[%u].id", i);
        if (r->id >= n)
            return field_err(err, file, field,
                             "%u is out of range: ids must be exactly 0..%u (one per replica)",
                             r->id, n - 1);
        if (seen[r->id] >= 0)
            return field_err(err, file, field, "duplicate id %u (also replicas[%d].id)", r->id,
                             seen[r->id]);
        seen[r->id] = (int)i;
        const char *addrs[2] = {r->peer_address, r->client_address};
        const char *names[2] = {"peer_address", "client_address"};
        for (int a = 0; a < 2; a++) {
            struct tally_err aerr = {0};
            snprintf(field, sizeof(field), "replicas[%u].%s", i, names[a]);
            if (config_parse_address(addrs[a], NULL, 0, NULL, &aerr) != TALLY_OK)
                return field_err(err, file, field, "%s", aerr.msg);
        }
        if (strcmp(r->peer_address, r->client_address) == 0) {
            snprintf(field, sizeof(field), "replicas[%u].client_address", i);
            return field_err(err, file, field, "\"%s\" is also this replica's peer_address",
                             r->client_address);
        }
        for (uint32_t j = 0; j < i; j++) {
            const struct tally_replica_config *o = &rs[j];
            for (int a = 0; a < 2; a++) {
                snprintf(field, sizeof(field), "replicas[%u].%s", i, names[a]);
                if (strcmp(addrs[a], o->peer_address) == 0)
                    return field_err(err, file, field,
                                     "duplicate address \"%s\" (also replicas[%u].peer_address)",
                                     addrs[a], j);
                if (strcmp(addrs[a], o->client_address) == 0)
                    return field_err(err, file, field,
                                     "duplicate address \"%s\" (also replicas[%u].client_address)",
                                     addrs[a], j);
            }
            if (memcmp(r->pk.b, o->pk.b, TC_PUBKEY_BYTES) == 0) {
                snprintf(field, sizeof(field), "replicas[%u].public_key", i);
                return field_err(err, file, field,
                                 "duplicate public key (also replicas[%u].public_key)", j);
            }
        }
    }
    return TALLY_OK;
}

static int check_numbers(const struct tally_config *c, const char *file, struct tally_err *err)
{
    for (size_t i = 0; i < NUM_FIELD_COUNT; i++) {
        int rc = num_check_range(&num_fields[i], num_get(c, &num_fields[i]), file, err);
        if (rc != TALLY_OK)
            return rc;
    }
    if (c->log_window % c->checkpoint_interval != 0)
        return field_err(
            err, file, "log_window", "%llu is not a multiple of checkpoint_interval (%llu)",
            (unsigned long long)c->log_window, (unsigned long long)c->checkpoint_interval);
    uint64_t need = (uint64_t)c->batch_max_txs * LEDGER_TX_BYTES + CONFIG_MESSAGE_OVERHEAD_BYTES;
    if (c->max_message_bytes < need)
        return field_err(err, file, "max_message_bytes",
                         "%llu is too small for a full batch: batch_max_txs (%u) x %d bytes + "
                         "%u bytes overhead = %llu",
                         (unsigned long long)c->max_message_bytes, c->batch_max_txs,
                         LEDGER_TX_BYTES, CONFIG_MESSAGE_OVERHEAD_BYTES, (unsigned long long)need);
    return TALLY_OK;
}

static int check_cluster_name(const char *name, const char *file, struct tally_err *err)
{
    size_t len = strlen(name);
    if (len == 0 || len >= CONFIG_NAME_MAX)
        return field_err(err, file, "cluster_name", "must be 1 to %d characters",
                         CONFIG_NAME_MAX - 1);
    for (size_t i = 0; i < len; i++)
        if (!isprint((unsigned char)name[i]))
            return field_err(err, file, "cluster_name", "must be printable characters");
    return TALLY_OK;
}

/* ---- reading JSON files -------------------------------------------------------------- */

static int load_json(const char *path, json_t **out, struct tally_err *err)
{
    json_error_t jerr;
    FILE *f = fopen(path, "rb");
    *out = NULL;
    if (f == NULL)
        return tally_errf(err, errno == ENOENT ? TALLY_ENOTFOUND : TALLY_EIO, "%s: cannot open: %s",
                          path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        int dir = S_ISDIR(st.st_mode);
        fclose(f);
        return tally_errf(err, TALLY_EIO, "%s: not a regular file%s", path,
                          dir ? " (a directory)" : "");
    }
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
    int read_failed = ferror(f);
    int read_errno = errno;
    fclose(f);
    if (root == NULL) {
        if (read_failed)
            return tally_errf(err, TALLY_EIO, "%s: cannot read: %s", path, strerror(read_errno));
        return tally_errf(err, TALLY_ECONFIG, "%s: invalid JSON at line %d, column %d: %s", path,
                          jerr.line, jerr.column, jerr.text);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return tally_errf(err, TALLY_ECONFIG, "%s: expected a JSON object at the top level", path);
    }
    *out = root;
    return TALLY_OK;
}

static int parse_pubkey(const json_t *v, const char *file, const char *field, tc_pubkey *pk,
                        struct tally_err *err)
{
    if (v == NULL)
        return field_err(err, file, field, "missing");
    const char *hex = json_string_value(v);
    if (hex == NULL || tc_hex_decode(hex, pk->b, TC_PUBKEY_BYTES) != TALLY_OK)
        return field_err(err, file, field, "must be %d hex characters (a string)",
                         2 * TC_PUBKEY_BYTES);
    return TALLY_OK;
}

static int parse_string(const json_t *v, const char *file, const char *field, char *out,
                        size_t outlen, struct tally_err *err)
{
    if (v == NULL)
        return field_err(err, file, field, "missing");
    const char *s = json_string_value(v);
    if (s == NULL)
        return field_err(err, file, field, "must be a string");
    if (strlen(s) >= outlen)
        return field_err(err, file, field, "too long (at most %zu characters)", outlen - 1);
    memcpy(out, s, strlen(s) + 1);
    return TALLY_OK;
}

/* ---- genesis ------------------------------------------------------------------------- */

struct indexed_account {
    struct ledger_genesis_account a;
    size_t index; /* position in the file */
};

static int cmp_indexed(const void *x, const void *y)
{
    const struct indexed_account *a = x, *b = y;
    int c = memcmp(a->a.pk.b, b->a.pk.b, TC_PUBKEY_BYTES);
    if (c != 0)
        return c;
    return a->index < b->index ? -1 : a->index > b->index;
}

static int load_genesis(const char *path, struct tally_genesis *g, struct tally_err *err)
{
    static const char *const top_fields[] = {"accounts", NULL};
    static const char *const acct_fields[] = {"public_key", "balance", NULL};
    struct indexed_account *tmp = NULL;
    json_t *root = NULL;
    char field[64];
    int rc = load_json(path, &root, err);
    if (rc != TALLY_OK)
        return rc;
    rc = check_known_fields(root, top_fields, path, "", err);
    if (rc != TALLY_OK)
        goto out;
    json_t *accts = json_object_get(root, "accounts");
    if (accts == NULL) {
        rc = field_err(err, path, "accounts", "missing");
        goto out;
    }
    if (!json_is_array(accts)) {
        rc = field_err(err, path, "accounts", "must be an array");
        goto out;
    }
    size_t count = json_array_size(accts);
    if (count == 0) {
        rc = field_err(err, path, "accounts", "at least one account is needed");
        goto out;
    }
    if (count > CONFIG_MAX_GENESIS_ACCOUNTS) {
        rc = field_err(err, path, "accounts", "%zu accounts, at most %d allowed", count,
                       CONFIG_MAX_GENESIS_ACCOUNTS);
        goto out;
    }
    tmp = calloc(count, sizeof(*tmp));
    if (tmp == NULL) {
        rc = tally_errf(err, TALLY_ENOMEM, "%s: out of memory for %zu accounts", path, count);
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        json_t *a = json_array_get(accts, i);
        snprintf(field, sizeof(field), "accounts[%zu]", i);
        if (!json_is_object(a)) {
            rc = field_err(err, path, field, "must be an object {\"public_key\", \"balance\"}");
            goto out;
        }
        rc = check_known_fields(a, acct_fields, path, field, err);
        if (rc != TALLY_OK)
            goto out;
        snprintf(field, sizeof(field), "accounts[%zu].public_key", i);
        rc = parse_pubkey(json_object_get(a, "public_key"), path, field, &tmp[i].a.pk, err);
        if (rc != TALLY_OK)
            goto out;
        snprintf(field, sizeof(field), "accounts[%zu].balance", i);
        json_t *bal = json_object_get(a, "balance");
        if (bal == NULL) {
            rc = field_err(err, path, field, "missing");
            goto out;
        }
        rc = json_u64(bal, path, field, &tmp[i].a.balance, err);
        if (rc != TALLY_OK)
            goto out;
        tmp[i].index = i;
    }
    qsort(tmp, count, sizeof(*tmp), cmp_indexed);
    uint64_t sum = 0;
    for (size_t i = 0; i < count; i++) {
        if (i > 0 && memcmp(tmp[i].a.pk.b, tmp[i - 1].a.pk.b, TC_PUBKEY_BYTES) == 0) {
            snprintf(field, sizeof(field), "accounts[%zu].public_key", tmp[i].index);
            rc = field_err(err, path, field, "duplicate account (also accounts[%zu])",
                           tmp[i - 1].index);
            goto out;
        }
        if (tmp[i].a.balance > UINT64_MAX - sum) {
            rc = field_err(err, path, "accounts",
                           "balances sum to more than 2^64-1 (the total supply must fit u64)");
            goto out;
        }
        sum += tmp[i].a.balance;
    }
    g->accounts = malloc(count * sizeof(*g->accounts));
    if (g->accounts == NULL) {
        rc = tally_errf(err, TALLY_ENOMEM, "%s: out of memory for %zu accounts", path, count);
        goto out;
    }
    for (size_t i = 0; i < count; i++)
        g->accounts[i] = tmp[i].a;
    g->count = count;
out:
    free(tmp);
    json_decref(root);
    return rc;
}

static int check_genesis(const struct tally_genesis *g, const char *file, struct tally_err *err)
{
    if (g->count == 0 || g->accounts == NULL)
        return field_err(err, file, "accounts", "at least one account is needed");
    if (g->count > CONFIG_MAX_GENESIS_ACCOUNTS)
        return field_err(err, file, "accounts", "%zu accounts, at most %d allowed", g->count,
                         CONFIG_MAX_GENESIS_ACCOUNTS);
    uint64_t sum = 0;
    for (size_t i = 0; i < g->count; i++) {
        char field[64];
        snprintf(field, sizeof(field), "accounts[%zu]", i);
        if (i > 0) {
            int c = memcmp(g->accounts[i - 1].pk.b, g->accounts[i].pk.b, TC_PUBKEY_BYTES);
            if (c == 0)
                return field_err(err, file, field, "duplicate account (also accounts[%zu])", i - 1);
            if (c > 0)
                return field_err(err, file, field, "accounts must be sorted by public key");
        }
        if (g->accounts[i].balance > UINT64_MAX - sum)
            return field_err(err, file, "accounts",
                             "balances sum to more than 2^64-1 (the total supply must fit u64)");
        sum += g->accounts[i].balance;
    }
    return TALLY_OK;
}

/* ---- cluster -------------------------------------------------------------------------- */

static int resolve_genesis_path(const char *cluster_path, const char *ref, char *out, size_t size,
                                struct tally_err *err)
{
    int len;
    const char *slash = strrchr(cluster_path, '/');
    if (ref[0] == '/' || slash == NULL)
        len = snprintf(out, size, "%s", ref);
    else
        len = snprintf(out, size, "%.*s/%s", (int)(slash - cluster_path), cluster_path, ref);
    if (len < 0 || (size_t)len >= size)
        return field_err(err, cluster_path, "genesis", "path too long");
    return TALLY_OK;
}

static int parse_replica(const json_t *r, uint32_t i, const char *file,
                         struct tally_replica_config *out, struct tally_err *err)
{
    static const char *const fields[] = {"id", "peer_address", "client_address", "public_key",
                                         NULL};
    char field[64];
    int rc;
    snprintf(field, sizeof(field), "replicas[%u]", i);
    if (!json_is_object(r))
        return field_err(err, file, field, "must be an object");
    rc = check_known_fields(r, fields, file, field, err);
    if (rc != TALLY_OK)
        return rc;
    snprintf(field, sizeof(field), "replicas[%u].id", i);
    json_t *id = json_object_get(r, "id");
    if (id == NULL)
        return field_err(err, file, field, "missing");
    uint64_t idv = 0;
    rc = json_u64(id, file, field, &idv, err);
    if (rc != TALLY_OK)
        return rc;
    out->id = idv > UINT32_MAX ? UINT32_MAX : (uint32_t)idv;
    snprintf(field, sizeof(field), "replicas[%u].peer_address", i);
    rc = parse_string(json_object_get(r, "peer_address"), file, field, out->peer_address,
                      sizeof(out->peer_address), err);
    if (rc != TALLY_OK)
        return rc;
    snprintf(field, sizeof(field), "replicas[%u].client_address", i);
    rc = parse_string(json_object_get(r, "client_address"), file, field, out->client_address,
                      sizeof(out->client_address), err);
    if (rc != TALLY_OK)
        return rc;
    snprintf(field, sizeof(field), "replicas[%u].public_key", i);
    return parse_pubkey(json_object_get(r, "public_key"), file, field, &out->pk, err);
}

static int parse_cluster(const json_t *root, const char *file, struct tally_config *c,
                         char *genesis_ref, size_t ref_size, struct tally_err *err)
{
    static const char *const fields[] = {"cluster_name",
                                         "genesis",
                                         "replicas",
                                         "checkpoint_interval",
                                         "log_window",
                                         "batch_max_txs",
                                         "batch_timeout_ms",
                                         "max_inflight_batches",
                                         "request_timeout_ms",
                                         "max_message_bytes",
                                         NULL};
    struct tally_replica_config rs[CONFIG_MAX_REPLICAS];
    int rc = check_known_fields(root, fields, file, "", err);
    if (rc != TALLY_OK)
        return rc;
    rc = parse_string(json_object_get(root, "cluster_name"), file, "cluster_name", c->cluster_name,
                      sizeof(c->cluster_name), err);
    if (rc != TALLY_OK)
        return rc;
    rc = check_cluster_name(c->cluster_name, file, err);
    if (rc != TALLY_OK)
        return rc;
    rc =
        parse_string(json_object_get(root, "genesis"), file, "genesis", genesis_ref, ref_size, err);
    if (rc != TALLY_OK)
        return rc;
    if (genesis_ref[0] == '\0')
        return field_err(err, file, "genesis", "must name the genesis file");

    for (size_t i = 0; i < NUM_FIELD_COUNT; i++) {
        const struct num_field *nf = &num_fields[i];
        json_t *v = json_object_get(root, nf->name);
        uint64_t val = nf->def;
        if (v != NULL) {
            rc = json_u64(v, file, nf->name, &val, err);
            if (rc == TALLY_OK)
                rc = num_check_range(nf, val, file, err);
            if (rc != TALLY_OK)
                return rc;
        }
        num_set(c, nf, val);
    }

    json_t *reps = json_object_get(root, "replicas");
    if (reps == NULL)
        return field_err(err, file, "replicas", "missing");
    if (!json_is_array(reps))
        return field_err(err, file, "replicas", "must be an array");
    size_t n = json_array_size(reps);
    rc = check_n(n > CONFIG_MAX_REPLICAS ? CONFIG_MAX_REPLICAS + 1 : (uint32_t)n, file, err);
    if (rc != TALLY_OK) {
        if (n > CONFIG_MAX_REPLICAS)
            return field_err(err, file, "replicas", "n = %zu replicas: at most %d are supported", n,
                             CONFIG_MAX_REPLICAS);
        return rc;
    }
    memset(rs, 0, sizeof(rs));
    for (uint32_t i = 0; i < n; i++) {
        rc = parse_replica(json_array_get(reps, i), i, file, &rs[i], err);
        if (rc != TALLY_OK)
            return rc;
    }
    rc = check_replicas(rs, (uint32_t)n, file, err);
    if (rc != TALLY_OK)
        return rc;
    c->n = (uint32_t)n;
    c->f = (c->n - 1) / 3;
    for (uint32_t i = 0; i < n; i++)
        c->replicas[rs[i].id] = rs[i];
    return check_numbers(c, file, err);
}

/* ---- public API ---------------------------------------------------------------------- */

void config_set_defaults(struct tally_config *c)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < NUM_FIELD_COUNT; i++)
        num_set(c, &num_fields[i], num_fields[i].def);
}

int config_load(const char *cluster_path, struct tally_config *out, struct tally_err *err)
{
    char genesis_ref[PATH_MAX];
    json_t *root = NULL;
    config_set_defaults(out);
    int rc = load_json(cluster_path, &root, err);
    if (rc != TALLY_OK)
        return rc;
    rc = parse_cluster(root, cluster_path, out, genesis_ref, sizeof(genesis_ref), err);
    if (rc != TALLY_OK)
        goto out;
    rc = resolve_genesis_path(cluster_path, genesis_ref, out->genesis_path,
                              sizeof(out->genesis_path), err);
    if (rc != TALLY_OK)
        goto out;
    rc = load_genesis(out->genesis_path, &out->genesis, err);
    if (rc != TALLY_OK) {
        if (rc != TALLY_ECONFIG) /* the file itself: say who named it */
            tally_err_wrap(err, "%s: genesis", cluster_path);
        goto out;
    }
out:
    json_decref(root);
    if (rc != TALLY_OK)
        config_free(out);
    return rc;
}

void config_free(struct tally_config *c)
{
    if (c == NULL)
        return;
    free(c->genesis.accounts);
    c->genesis.accounts = NULL;
    c->genesis.count = 0;
}

int config_validate(const struct tally_config *c, const char *what, struct tally_err *err)
{
    int rc = check_cluster_name(c->cluster_name, what, err);
    if (rc == TALLY_OK)
        rc = check_n(c->n, what, err);
    if (rc == TALLY_OK && c->f != (c->n - 1) / 3)
        rc = field_err(err, what, "f", "f = %u does not match n = %u (f = (n-1)/3)", c->f, c->n);
    if (rc == TALLY_OK)
        rc = check_replicas(c->replicas, c->n, what, err);
    for (uint32_t i = 0; rc == TALLY_OK && i < c->n; i++)
        if (c->replicas[i].id != i)
            rc = field_err(err, what, "replicas", "replicas[%u] has id %u (must be %u)", i,
                           c->replicas[i].id, i);
    if (rc == TALLY_OK)
        rc = check_numbers(c, what, err);
    if (rc == TALLY_OK)
        rc = check_genesis(&c->genesis, what, err);
    return rc;
}

int config_replica_index_by_key(const struct tally_config *c, const tc_pubkey *pk)
{
    for (uint32_t i = 0; i < c->n && i < CONFIG_MAX_REPLICAS; i++)
        if (memcmp(c->replicas[i].pk.b, pk->b, TC_PUBKEY_BYTES) == 0)
            return (int)i;
    return -1;
}
