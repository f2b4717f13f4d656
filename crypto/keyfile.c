/* Key files: JSON written 0600, read back with every problem named. */
#include "crypto/crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEYFILE_TYPE "tally-ed25519-key"
#define KEYFILE_MAX_BYTES 4096

int tc_pubkey_parse(const char *hex, tc_pubkey *pk, struct tally_err *err)
{
    if (hex == NULL || tc_hex_decode(hex, pk->b, TC_PUBKEY_BYTES) != TALLY_OK)
        return tally_errf(err, TALLY_EFORMAT, "public key must be %d hex characters",
                          2 * TC_PUBKEY_BYTES);
    return TALLY_OK;
}

int tc_keyfile_write(const char *path, const tc_keypair *kp, struct tally_err *err)
{
    return tc_keyfile_write_flags(path, kp, 0, err);
}

int tc_keyfile_write_flags(const char *path, const tc_keypair *kp, unsigned flags,
                           struct tally_err *err)
{
    uint8_t seed[TC_SEED_BYTES];
    char seed_hex[2 * TC_SEED_BYTES + 1];
    char pk_hex[2 * TC_PUBKEY_BYTES + 1];
    char *text = NULL;
    json_t *obj = NULL;
    int fd = -1;
    int rc = TALLY_OK;

    tc_keypair_seed(kp, seed);
    tc_hex_encode(seed, sizeof(seed), seed_hex);
    tc_hex_encode(kp->pk.b, TC_PUBKEY_BYTES, pk_hex);
    obj =
        json_pack("{s:s, s:s, s:s}", "type", KEYFILE_TYPE, "public_key", pk_hex, "seed", seed_hex);
    if (obj == NULL) {
        rc = tally_errf(err, TALLY_ENOMEM, "%s: cannot build key file", path);
        goto out;
    }
    text = json_dumps(obj, JSON_INDENT(2));
    if (text == NULL) {
        rc = tally_errf(err, TALLY_ENOMEM, "%s: cannot encode key file", path);
        goto out;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = tally_errf(err, errno == EEXIST ? TALLY_EEXIST : TALLY_EIO,
                        "%s: cannot create key file: %s", path, strerror(errno));
        goto out;
    }
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1 ||
        (!(flags & TC_KEYFILE_NOSYNC) && fsync(fd) != 0)) {
        rc = tally_errf(err, TALLY_EIO, "%s: cannot write key file: %s", path, strerror(errno));
        unlink(path);
        goto out;
    }
out:
    if (fd >= 0)
        close(fd);
    if (text != NULL) {
        sodium_memzero(text, strlen(text));
        free(text);
    }
    json_decref(obj);
    sodium_memzero(seed, sizeof(seed));
    sodium_memzero(seed_hex, sizeof(seed_hex));
    return rc;
}

int tc_keyfile_parse(const char *buf, size_t len, const char *path, tc_keypair *kp,
                     struct tally_err *err)
{
    uint8_t seed[TC_SEED_BYTES];
    json_t *obj = NULL;
    json_error_t jerr;
    tc_pubkey want_pk;
    int rc = TALLY_OK;

    kp->sk = NULL;
    if (len > KEYFILE_MAX_BYTES) {
        rc = tally_errf(err, TALLY_ETOOBIG, "%s: key file is %zu bytes, at most %d expected", path,
                        len, KEYFILE_MAX_BYTES);
        goto out;
    }
    obj = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (obj == NULL || !json_is_object(obj)) {
        rc = tally_errf(err, TALLY_EFORMAT, "%s: not a tally key file (line %d: %s)", path,
                        jerr.line, obj == NULL ? jerr.text : "expected a JSON object");
        goto out;
    }
    const char *type = json_string_value(json_object_get(obj, "type"));
    if (type == NULL || strcmp(type, KEYFILE_TYPE) != 0) {
        rc =
            tally_errf(err, TALLY_EFORMAT, "%s: field \"type\" must be \"%s\"", path, KEYFILE_TYPE);
        goto out;
    }
    const char *seed_hex = json_string_value(json_object_get(obj, "seed"));
    if (seed_hex == NULL || tc_hex_decode(seed_hex, seed, sizeof(seed)) != TALLY_OK) {
        rc = tally_errf(err, TALLY_EFORMAT,
                        "%s: field \"seed\" must be %d hex characters (a %d-byte Ed25519 seed)",
                        path, 2 * TC_SEED_BYTES, TC_SEED_BYTES);
        goto out;
    }
    const char *pk_hex = json_string_value(json_object_get(obj, "public_key"));
    if (pk_hex == NULL || tc_hex_decode(pk_hex, want_pk.b, TC_PUBKEY_BYTES) != TALLY_OK) {
        rc = tally_errf(err, TALLY_EFORMAT, "%s: field \"public_key\" must be %d hex characters",
                        path, 2 * TC_PUBKEY_BYTES);
        goto out;
    }
    rc = tc_keypair_from_seed(kp, seed);
    if (rc != TALLY_OK) {
        tally_errf(err, rc, "%s: cannot allocate key memory", path);
        goto out;
    }
    if (!tc_equal(kp->pk.b, want_pk.b, TC_PUBKEY_BYTES)) {
        tc_keypair_free(kp);
        rc = tally_errf(err, TALLY_EMISMATCH, "%s: public_key does not match the seed", path);
        goto out;
    }
out:
    json_decref(obj);
    sodium_memzero(seed, sizeof(seed));
    return rc;
}

int tc_keyfile_read(const char *path, tc_keypair *kp, struct tally_err *err)
{
    char buf[KEYFILE_MAX_BYTES + 1];
    struct stat st;
    ssize_t got = 0;
    int rc = TALLY_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    kp->sk = NULL;
    if (fd < 0) {
        rc = tally_errf(err, errno == ENOENT ? TALLY_ENOTFOUND : TALLY_EIO,
                        "%s: cannot open key file: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = tally_errf(err, TALLY_EFORMAT, "%s: not a regular file", path);
        goto out;
    }
    if ((st.st_mode & 077) != 0) {
        rc = tally_errf(err, TALLY_EPERM,
                        "%s: key file is readable by others (mode %03o); run chmod 600 %s", path,
                        (unsigned)(st.st_mode & 0777), path);
        goto out;
    }
    if (st.st_size > KEYFILE_MAX_BYTES) {
        rc = tally_errf(err, TALLY_ETOOBIG, "%s: key file is %lld bytes, at most %d expected", path,
                        (long long)st.st_size, KEYFILE_MAX_BYTES);
        goto out;
    }
    got = read(fd, buf, KEYFILE_MAX_BYTES);
    if (got < 0) {
        rc = tally_errf(err, TALLY_EIO, "%s: cannot read key file: %s", path, strerror(errno));
        goto out;
    }
    buf[got] = '\0';
    rc = tc_keyfile_parse(buf, (size_t)got, path, kp, err);
out:
    if (fd >= 0)
        close(fd);
    sodium_memzero(buf, sizeof(buf));
    return rc;
}
