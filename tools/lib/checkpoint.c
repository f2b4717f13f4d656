/* Checkpoint certificates for the tools. See tools/lib/checkpoint.h. */
#include "tools/lib/checkpoint.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger/block.h"
#include "ledger/ledger.h"

/* ---- JSON ------------------------------------------------------------------------- */

static json_t *json_u64(uint64_t v)
{
    if (v <= (uint64_t)INT64_MAX)
        return json_integer((json_int_t)v);
    char buf[24];
    snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
    return json_string(buf);
}

static json_t *json_hex(const uint8_t *b, size_t len)
{
    char hex[2 * TC_SIG_BYTES + 1];
    tc_hex_encode(b, len, hex);
    return json_string(hex);
}

/* A u64 field: a non-negative JSON integer or a decimal string. */
static int get_u64(const json_t *o, const char *key, uint64_t *out, struct tally_err *err)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return TALLY_OK;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end = NULL;
        errno = 0;
        unsigned long long x = strtoull(s, &end, 10);
        if (s[0] >= '0' && s[0] <= '9' && *end == '\0' && errno == 0) {
            *out = (uint64_t)x;
            return TALLY_OK;
        }
    }
    return tally_errf(err, TALLY_EFORMAT, "\"%s\": must be an unsigned 64-bit integer", key);
}

static int get_hex(const json_t *o, const char *key, uint8_t *out, size_t len,
                   struct tally_err *err)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s == NULL || tc_hex_decode(s, out, len) != TALLY_OK)
        return tally_errf(err, TALLY_EFORMAT, "\"%s\": must be %zu hex characters", key, 2 * len);
    return TALLY_OK;
}

json_t *checkpoint_cert_to_json(const struct ledger_cert *c)
{
    json_t *o = json_object(), *sigs = json_array();
    if (o == NULL || sigs == NULL) {
        json_decref(o);
        json_decref(sigs);
        return NULL;
    }
    json_object_set_new(o, "type", json_string("checkpoint"));
    json_object_set_new(o, "height", json_u64(c->ck.height));
    json_object_set_new(o, "block_hash", json_hex(c->ck.block_hash.b, TC_HASH_BYTES));
    json_object_set_new(o, "state_digest", json_hex(c->ck.state_digest.b, TC_HASH_BYTES));
    for (uint32_t i = 0; i < c->count && i < LEDGER_CERT_MAX_SIGS; i++) {
        json_t *s = json_object();
        json_object_set_new(s, "signer", json_hex(c->sigs[i].signer.b, TC_PUBKEY_BYTES));
        json_object_set_new(s, "sig", json_hex(c->sigs[i].sig.b, TC_SIG_BYTES));
        json_array_append_new(sigs, s);
    }
    json_object_set_new(o, "signatures", sigs);
    return o;
}

int checkpoint_cert_from_json(const json_t *o, struct ledger_cert *out, struct tally_err *err)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(o))
        return tally_errf(err, TALLY_EFORMAT, "a checkpoint must be a JSON object");
    const char *type = json_string_value(json_object_get(o, "type"));
    if (type == NULL || strcmp(type, "checkpoint") != 0)
        return tally_errf(err, TALLY_EFORMAT, "\"type\": must be \"checkpoint\"");
    struct ledger_cert c = {0};
    int rc = get_u64(o, "height", &c.ck.height, err);
    if (rc == TALLY_OK)
        rc = get_hex(o, "block_hash", c.ck.block_hash.b, TC_HASH_BYTES, err);
    if (rc == TALLY_OK)
        rc = get_hex(o, "state_digest", c.ck.state_digest.b, TC_HASH_BYTES, err);
    if (rc != TALLY_OK)
        return rc;
    const json_t *sigs = json_object_get(o, "signatures");
    size_t n = json_array_size(sigs);
    if (!json_is_array(sigs) || n == 0 || n > LEDGER_CERT_MAX_SIGS)
        return tally_errf(err, TALLY_EFORMAT, "\"signatures\": must be an array of 1 to %d",
                          LEDGER_CERT_MAX_SIGS);
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_array_get(sigs, i);
        rc = get_hex(s, "signer", c.sigs[i].signer.b, TC_PUBKEY_BYTES, err);
        if (rc == TALLY_OK)
            rc = get_hex(s, "sig", c.sigs[i].sig.b, TC_SIG_BYTES, err);
        if (rc != TALLY_OK)
            return tally_err_wrap(err, "\"signatures\"[%zu]", i);
    }
    c.count = (uint32_t)n;
    *out = c;
    return TALLY_OK;
}

/* ---- verdicts --------------------------------------------------------------------- */

int checkpoint_config_chain_id(const struct tally_config *cfg, tc_hash *out, struct tally_err *err)
{
    struct ledger_open_opts o = {.in_memory = true, .sync = false};
    struct ledger *l = NULL;
    int rc = ledger_open_opts("/mem/tally-checkpoint-genesis", &o, &l, err);
    if (rc == TALLY_OK)
        rc = ledger_init_genesis(l, cfg->genesis.accounts, cfg->genesis.count, err);
    if (rc == TALLY_OK)
        ledger_genesis_hash(l, out);
    ledger_close(l);
    return rc != TALLY_OK ? tally_err_wrap(err, "building the configuration's genesis") : rc;
}

static void short_hex(const uint8_t *b, char out[20])
{
    char full[2 * TC_HASH_BYTES + 1];
    tc_hex_encode(b, TC_HASH_BYTES, full);
    memcpy(out, full, 16);
    memcpy(out + 16, "\xe2\x80\xa6", 4);
}

static void verdict_init(struct checkpoint_verdict *v, const struct ledger_cert *c,
                         const struct tally_config *cfg)
{
    memset(v, 0, sizeof(*v));
    v->height = c->ck.height;
    v->valid = true;
    v->replicas = cfg->n;
    v->needed = config_quorum(cfg);
    v->block_hash = c->ck.block_hash;
    v->state_digest = c->ck.state_digest;
}

static void invalid(struct checkpoint_verdict *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void invalid(struct checkpoint_verdict *v, const char *fmt, ...)
{
    if (!v->valid)
        return; /* keep the first reason */
    v->valid = false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->problem, sizeof(v->problem), fmt, ap);
    va_end(ap);
}

/* A message from the ledger without its "height H: " prefix (the verdict
 * line names the height already). */
static void invalid_from(struct checkpoint_verdict *v, const struct tally_err *e)
{
    char prefix[40];
    const char *text = tally_err_text(e);
    int n = snprintf(prefix, sizeof(prefix), "height %llu: ", (unsigned long long)v->height);
    if (n > 0 && strncmp(text, prefix, (size_t)n) == 0)
        text += n;
    invalid(v, "%s", text);
}

/* Replica ids with a valid signature, ascending, each once. */
static void fill_signers(struct checkpoint_verdict *v, const struct ledger_cert *c,
                         const tc_hash *chain_id, const struct tally_config *cfg)
{
    bool ok[CONFIG_MAX_REPLICAS] = {false};
    for (uint32_t i = 0; i < c->count && i < LEDGER_CERT_MAX_SIGS; i++) {
        int id = config_replica_index_by_key(cfg, &c->sigs[i].signer);
        if (id < 0 || id >= CONFIG_MAX_REPLICAS || ok[id])
            continue;
        ok[id] =
            ledger_ckpt_verify(&c->sigs[i].signer, chain_id, &c->ck, &c->sigs[i].sig) == TALLY_OK;
    }
    v->nsigners = 0;
    for (uint32_t id = 0; id < cfg->n && id < CONFIG_MAX_REPLICAS; id++)
        if (ok[id])
            v->signers[v->nsigners++] = id;
}

static void config_keys(const struct tally_config *cfg, tc_pubkey keys[CONFIG_MAX_REPLICAS])
{
    for (uint32_t i = 0; i < cfg->n && i < CONFIG_MAX_REPLICAS; i++)
        keys[i] = cfg->replicas[i].pk;
}

/* The genesis of the ledger being checked must be the configuration's. */
static int check_chain(struct checkpoint_verdict *v, const tc_hash *chain_id,
                       const struct tally_config *cfg, const char *what, struct tally_err *err)
{
    tc_hash want;
    int rc = checkpoint_config_chain_id(cfg, &want, err);
    if (rc != TALLY_OK)
        return rc;
    if (!tc_equal(want.b, chain_id->b, TC_HASH_BYTES)) {
        char have_hex[20], want_hex[20];
        short_hex(chain_id->b, have_hex);
        short_hex(want.b, want_hex);
        invalid(v, "%s genesis block %s is not the cluster's %s (another cluster's ledger)", what,
                have_hex, want_hex);
    }
    return TALLY_OK;
}

/* " (nearest certified heights: 128 and 384)" and the like. */
static void nearest_text(char *out, size_t size, bool has_below, uint64_t below, bool has_above,
                         uint64_t above)
{
    if (has_below && has_above)
        snprintf(out, size, " (nearest certified heights: %llu and %llu)",
                 (unsigned long long)below, (unsigned long long)above);
    else if (has_below)
        snprintf(out, size, " (the nearest certified height is %llu, the last one)",
                 (unsigned long long)below);
    else if (has_above)
        snprintf(out, size, " (the nearest certified height is %llu, the first one)",
                 (unsigned long long)above);
    else
        snprintf(out, size, " (no certificate is stored at all)");
}

int checkpoint_verify_data(const char *dir, const struct tally_config *cfg, const uint64_t *height,
                           struct checkpoint_verdict *out, struct tally_err *err)
{
    memset(out, 0, sizeof(*out));
    struct ledger_open_opts o = {.read_only = true};
    struct ledger *l = NULL;
    struct ledger_cert c;
    bool found = false;
    int rc = ledger_open_opts(dir, &o, &l, err);
    if (rc != TALLY_OK)
        return rc;
    if (!ledger_has_genesis(l)) {
        rc = tally_errf(err, TALLY_EINVAL, "data directory %s has no genesis block", dir);
        goto out;
    }
    if (height != NULL) {
        rc = ledger_get_cert(l, *height, &c, &found, err);
        if (rc == TALLY_OK && !found) {
            /* Name the neighbours: the last one below, the first one above. */
            struct ledger_cert n;
            bool has_below = false, has_above = false, f = true;
            uint64_t below = 0, above = 0, from = 0;
            while (f && !has_above) {
                rc = ledger_find_cert_from(l, from, &n, &f, err);
                if (rc != TALLY_OK)
                    break;
                if (f && n.ck.height > *height) {
                    has_above = true;
                    above = n.ck.height;
                } else if (f) {
                    has_below = true;
                    below = n.ck.height;
                    from = n.ck.height + 1;
                }
            }
            if (rc != TALLY_OK)
                goto out;
            char near[120];
            nearest_text(near, sizeof(near), has_below, below, has_above, above);
            rc = tally_errf(err, TALLY_ENOTFOUND, "no checkpoint certificate at height %llu%s",
                            (unsigned long long)*height, near);
            goto out;
        }
    } else {
        rc = ledger_last_cert(l, &c, &found, err);
        if (rc == TALLY_OK && !found)
            rc = tally_errf(err, TALLY_ENOTFOUND,
                            "no checkpoint certificate is stored in %s (its ledger ends at height "
                            "%llu)",
                            dir, (unsigned long long)ledger_height(l));
    }
    if (rc != TALLY_OK)
        goto out;

    verdict_init(out, &c, cfg);
    tc_hash chain_id;
    ledger_genesis_hash(l, &chain_id);
    rc = check_chain(out, &chain_id, cfg, "the data directory's", err);
    if (rc != TALLY_OK)
        goto out;
    fill_signers(out, &c, &chain_id, cfg);
    tc_pubkey keys[CONFIG_MAX_REPLICAS];
    config_keys(cfg, keys);
    struct tally_err cerr = {0};
    if (ledger_cert_check(l, &c, keys, cfg->n, config_quorum(cfg), &cerr) != TALLY_OK)
        invalid_from(out, &cerr);
out:
    ledger_close(l);
    return rc;
}

/* ---- export ----------------------------------------------------------------------- */

/* A block line: its header rebuilt from the fields, checked against "hash". */
static int block_from_json(const json_t *o, struct ledger_block_header *h, tc_hash *hash,
                           bool *consistent, struct tally_err *err)
{
    memset(h, 0, sizeof(*h));
    uint64_t count = 0;
    h->version = LEDGER_BLOCK_VERSION;
    int rc = get_u64(o, "height", &h->height, err);
    if (rc == TALLY_OK)
        rc = get_hex(o, "hash", hash->b, TC_HASH_BYTES, err);
    if (rc == TALLY_OK)
        rc = get_hex(o, "prev_hash", h->prev_hash.b, TC_HASH_BYTES, err);
    if (rc == TALLY_OK)
        rc = get_hex(o, "tx_root", h->tx_root.b, TC_HASH_BYTES, err);
    if (rc == TALLY_OK)
        rc = get_hex(o, "results_hash", h->results_hash.b, TC_HASH_BYTES, err);
    if (rc == TALLY_OK)
        rc = get_hex(o, "state_digest", h->state_digest.b, TC_HASH_BYTES, err);
    if (rc == TALLY_OK)
        rc = get_u64(o, "tx_count", &count, err);
    if (rc == TALLY_OK && count > LEDGER_BLOCK_MAX_TXS)
        rc = tally_errf(err, TALLY_EFORMAT, "\"tx_count\": above %d", LEDGER_BLOCK_MAX_TXS);
    if (rc != TALLY_OK)
        return rc;
    h->tx_count = (uint32_t)count;
    tc_hash computed;
    ledger_block_header_hash(h, &computed);
    *consistent = tc_equal(computed.b, hash->b, TC_HASH_BYTES);
    return TALLY_OK;
}

struct export_reader {
    FILE *f;
    const char *path;
    char *line;
    size_t cap;
    unsigned long lineno;
};

/* The next line of the given type ("block" or "checkpoint") parsed, or
 * *o NULL at the end. Other lines are skipped unparsed. */
static int next_line(struct export_reader *r, const char *type, json_t **o, struct tally_err *err)
{
    char needle[40];
    snprintf(needle, sizeof(needle), "\"type\":\"%s\"", type);
    *o = NULL;
    for (;;) {
        errno = 0;
        ssize_t n = getline(&r->line, &r->cap, r->f);
        if (n < 0) {
            if (ferror(r->f))
                return tally_errf(err, TALLY_EIO, "reading %s: %s", r->path, strerror(errno));
            return TALLY_OK;
        }
        r->lineno++;
        if (strstr(r->line, needle) == NULL)
            continue;
        json_error_t jerr;
        *o = json_loads(r->line, 0, &jerr);
        const char *t = json_string_value(json_object_get(*o, "type"));
        if (*o == NULL || t == NULL) {
            json_decref(*o);
            *o = NULL;
            return tally_errf(err, TALLY_EFORMAT, "%s:%lu: not a JSON object with a \"type\"",
                              r->path, r->lineno);
        }
        if (strcmp(t, type) == 0)
            return TALLY_OK;
        json_decref(*o);
        *o = NULL;
    }
}

int checkpoint_verify_export(const char *path, const struct tally_config *cfg,
                             const uint64_t *height, struct checkpoint_verdict *out,
                             struct tally_err *err)
{
    memset(out, 0, sizeof(*out));
    struct export_reader r = {.path = path};
    json_t *o = NULL;
    struct ledger_cert c = {0};
    bool have_cert = false, has_below = false, has_above = false, have_genesis = false;
    uint64_t below = 0, above = 0;
    tc_hash chain_id;
    int rc = TALLY_OK;
    r.f = fopen(path, "r");
    if (r.f == NULL)
        return tally_errf(err, errno == ENOENT ? TALLY_ENOTFOUND : TALLY_EIO, "cannot open %s: %s",
                          path, strerror(errno));

    /* Pass 1: the genesis line (chain id) and the certificate wanted. */
    rc = next_line(&r, "block", &o, err);
    if (rc == TALLY_OK && o != NULL) {
        struct ledger_block_header h;
        bool consistent = false;
        rc = block_from_json(o, &h, &chain_id, &consistent, err);
        if (rc != TALLY_OK)
            rc = tally_err_wrap(err, "%s:%lu: block", path, r.lineno);
        else if (h.height != 0)
            rc = tally_errf(err, TALLY_EFORMAT, "%s:%lu: the first block line is not genesis", path,
                            r.lineno);
        else if (!consistent)
            rc = tally_errf(err, TALLY_EFORMAT,
                            "%s:%lu: the genesis block line does not hash to its \"hash\"", path,
                            r.lineno);
        have_genesis = rc == TALLY_OK;
    }
    json_decref(o);
    o = NULL;
    if (rc == TALLY_OK && !have_genesis)
        rc = tally_errf(err, TALLY_EFORMAT, "%s has no block lines (not a tally export?)", path);
    while (rc == TALLY_OK) {
        rc = next_line(&r, "checkpoint", &o, err);
        if (rc != TALLY_OK || o == NULL)
            break;
        struct ledger_cert cur;
        rc = checkpoint_cert_from_json(o, &cur, err);
        json_decref(o);
        o = NULL;
        if (rc != TALLY_OK) {
            rc = tally_err_wrap(err, "%s:%lu: checkpoint", path, r.lineno);
            break;
        }
        uint64_t hh = cur.ck.height;
        if (height == NULL) {
            if (!have_cert || hh >= c.ck.height) {
                c = cur;
                have_cert = true;
            }
        } else if (hh == *height) {
            c = cur;
            have_cert = true;
        } else if (hh < *height && (!has_below || hh > below)) {
            has_below = true;
            below = hh;
        } else if (hh > *height && (!has_above || hh < above)) {
            has_above = true;
            above = hh;
        }
    }
    if (rc != TALLY_OK)
        goto out;
    if (!have_cert) {
        if (height == NULL) {
            rc = tally_errf(err, TALLY_ENOTFOUND, "%s holds no checkpoint certificate", path);
        } else {
            char near[120];
            nearest_text(near, sizeof(near), has_below, below, has_above, above);
            rc = tally_errf(err, TALLY_ENOTFOUND, "no checkpoint certificate at height %llu%s",
                            (unsigned long long)*height, near);
        }
        goto out;
    }

    verdict_init(out, &c, cfg);
    rc = check_chain(out, &chain_id, cfg, "the export's", err);
    if (rc != TALLY_OK)
        goto out;
    fill_signers(out, &c, &chain_id, cfg);
    tc_pubkey keys[CONFIG_MAX_REPLICAS];
    config_keys(cfg, keys);
    struct tally_err verr = {0};
    if (ledger_cert_verify(&c, &chain_id, keys, cfg->n, config_quorum(cfg), &verr) != TALLY_OK) {
        invalid(out, "%s", tally_err_text(&verr));
        goto out;
    }

    /* Pass 2: the block line at the certified height. */
    if (fseek(r.f, 0, SEEK_SET) != 0) {
        rc = tally_errf(err, TALLY_EIO, "%s: cannot read it twice (a pipe?): %s", path,
                        strerror(errno));
        goto out;
    }
    r.lineno = 0;
    uint64_t last = 0;
    bool have_block = false;
    struct ledger_block_header h;
    tc_hash hash;
    bool consistent = false;
    while (rc == TALLY_OK && !have_block) {
        rc = next_line(&r, "block", &o, err);
        if (rc != TALLY_OK || o == NULL)
            break;
        uint64_t bh = 0;
        rc = get_u64(o, "height", &bh, err);
        if (rc == TALLY_OK && bh == c.ck.height) {
            rc = block_from_json(o, &h, &hash, &consistent, err);
            have_block = rc == TALLY_OK;
        }
        if (rc != TALLY_OK)
            rc = tally_err_wrap(err, "%s:%lu: block", path, r.lineno);
        last = bh;
        json_decref(o);
        o = NULL;
    }
    if (rc != TALLY_OK)
        goto out;
    char want[20], have[20];
    if (!have_block) {
        invalid(out, "no such block (the export ends at %llu)", (unsigned long long)last);
    } else if (!consistent) {
        invalid(out, "the export's block line (line %lu) does not hash to its \"hash\"", r.lineno);
    } else if (!tc_equal(hash.b, c.ck.block_hash.b, TC_HASH_BYTES)) {
        short_hex(c.ck.block_hash.b, want);
        short_hex(hash.b, have);
        invalid(out, "the certified block hash %s is not the ledger's %s", want, have);
    } else if (!tc_equal(h.state_digest.b, c.ck.state_digest.b, TC_HASH_BYTES)) {
        short_hex(c.ck.state_digest.b, want);
        short_hex(h.state_digest.b, have);
        invalid(out, "the certified state digest %s is not the ledger's %s", want, have);
    }
out:
    json_decref(o);
    free(r.line);
    fclose(r.f);
    return rc;
}
