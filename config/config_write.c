/* Writers for `tally init`: cluster.json and genesis.json, never overwriting. */
#include "config/config.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Write text to a temporary file beside path, fsync it, then link it into
 * place: link() fails with EEXIST instead of replacing, and readers never see
 * a partial file. */
static int write_new_file(const char *path, const char *text, struct tally_err *err)
{
    char tmp[PATH_MAX];
    int rc = TALLY_OK;
    if (snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path) >= (int)sizeof(tmp))
        return tally_errf(err, TALLY_EINVAL, "%s: path too long", path);
    if (access(path, F_OK) == 0)
        return tally_errf(err, TALLY_EEXIST, "%s: already exists; not overwriting", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return tally_errf(err, TALLY_EIO, "%s: cannot create: %s", path, strerror(errno));
    size_t len = strlen(text);
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = tally_errf(err, errno == ENOSPC ? TALLY_ENOSPC : TALLY_EIO, "%s: cannot write: %s",
                            path, strerror(errno));
            goto out;
        }
        done += (size_t)w;
    }
    if (fchmod(fd, 0644) != 0 || fsync(fd) != 0) {
        rc = tally_errf(err, TALLY_EIO, "%s: cannot write: %s", path, strerror(errno));
        goto out;
    }
    if (link(tmp, path) != 0) {
        rc = tally_errf(err, errno == EEXIST ? TALLY_EEXIST : TALLY_EIO, "%s: cannot create: %s%s",
                        path, strerror(errno), errno == EEXIST ? "; not overwriting" : "");
        goto out;
    }
out:
    close(fd);
    unlink(tmp);
    return rc;
}

static int write_json(const char *path, json_t *root, struct tally_err *err)
{
    if (root == NULL)
        return tally_errf(err, TALLY_ENOMEM, "%s: cannot build JSON", path);
    char *text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    if (text == NULL)
        return tally_errf(err, TALLY_ENOMEM, "%s: cannot encode JSON", path);
    size_t len = strlen(text);
    char *withnl = realloc(text, len + 2);
    if (withnl == NULL) {
        free(text);
        return tally_errf(err, TALLY_ENOMEM, "%s: cannot encode JSON", path);
    }
    withnl[len] = '\n';
    withnl[len + 1] = '\0';
    int rc = write_new_file(path, withnl, err);
    free(withnl);
    return rc;
}

int config_write_cluster(const char *path, const struct tally_config *c, const char *genesis_ref,
                         struct tally_err *err)
{
    char hex[2 * TC_PUBKEY_BYTES + 1];
    json_t *reps = json_array();
    if (reps == NULL)
        return tally_errf(err, TALLY_ENOMEM, "%s: cannot build JSON", path);
    for (uint32_t i = 0; i < c->n && i < CONFIG_MAX_REPLICAS; i++) {
        const struct tally_replica_config *r = &c->replicas[i];
        tc_hex_encode(r->pk.b, TC_PUBKEY_BYTES, hex);
        if (json_array_append_new(reps, json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)r->id,
                                                  "peer_address", r->peer_address, "client_address",
                                                  r->client_address, "public_key", hex)) != 0) {
            json_decref(reps);
            return tally_errf(err, TALLY_ENOMEM, "%s: cannot build JSON", path);
        }
    }
    json_t *root = json_pack(
        "{s:s, s:s, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "cluster_name", c->cluster_name,
        "genesis", genesis_ref, "replicas", reps, "checkpoint_interval",
        (json_int_t)c->checkpoint_interval, "log_window", (json_int_t)c->log_window,
        "batch_max_txs", (json_int_t)c->batch_max_txs, "batch_timeout_ms",
        (json_int_t)c->batch_timeout_ms, "max_inflight_batches",
        (json_int_t)c->max_inflight_batches, "request_timeout_ms",
        (json_int_t)c->request_timeout_ms, "max_message_bytes", (json_int_t)c->max_message_bytes);
    return write_json(path, root, err); /* "o" stole reps, even on failure */
}

int config_write_genesis(const char *path, const struct tally_genesis *g, struct tally_err *err)
{
    char hex[2 * TC_PUBKEY_BYTES + 1];
    json_t *accts = json_array();
    if (accts == NULL)
        return tally_errf(err, TALLY_ENOMEM, "%s: cannot build JSON", path);
    for (size_t i = 0; i < g->count; i++) {
        tc_hex_encode(g->accounts[i].pk.b, TC_PUBKEY_BYTES, hex);
        if (g->accounts[i].balance > (uint64_t)INT64_MAX) {
            json_decref(accts);
            return tally_errf(err, TALLY_EINVAL,
                              "%s: accounts[%zu].balance: above 2^63-1 cannot be written as JSON",
                              path, i);
        }
        if (json_array_append_new(accts, json_pack("{s:s, s:I}", "public_key", hex, "balance",
                                                   (json_int_t)g->accounts[i].balance)) != 0) {
            json_decref(accts);
            return tally_errf(err, TALLY_ENOMEM, "%s: cannot build JSON", path);
        }
    }
    return write_json(path, json_pack("{s:o}", "accounts", accts), err);
}
