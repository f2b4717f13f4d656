/* Tally error codes: 0 or a positive TALLY_E* code, one table of messages.
 *
 * Context travels with a struct tally_err: the innermost failure sets the code
 * and a message, callers on the way up prepend what they were doing. */
#ifndef TALLY_ERR_H
#define TALLY_ERR_H

#include <stddef.h>

#define TALLY_ERRORS(X)                                                                            \
    X(TALLY_OK, "ok")                                                                              \
    X(TALLY_EINVAL, "invalid argument")                                                            \
    X(TALLY_ENOMEM, "out of memory")                                                               \
    X(TALLY_EIO, "input/output error")                                                             \
    X(TALLY_EFORMAT, "malformed data")                                                             \
    X(TALLY_ETRUNC, "data truncated")                                                              \
    X(TALLY_ETOOBIG, "data exceeds a limit")                                                       \
    X(TALLY_ECRYPTO, "cryptographic failure")                                                      \
    X(TALLY_EBADSIG, "bad signature")                                                              \
    X(TALLY_ENOTFOUND, "not found")                                                                \
    X(TALLY_EEXIST, "already exists")                                                              \
    X(TALLY_EPERM, "bad permissions")                                                              \
    X(TALLY_EBUSY, "resource busy")                                                                \
    X(TALLY_ECORRUPT, "stored data is corrupt")                                                    \
    X(TALLY_ECONFIG, "invalid configuration")                                                      \
    X(TALLY_ETIMEOUT, "timed out")                                                                 \
    X(TALLY_EUNAVAIL, "unavailable")                                                               \
    X(TALLY_ENOSPC, "no space left")                                                               \
    X(TALLY_EMISMATCH, "mismatch")

enum tally_errcode {
#define TALLY_ERR_ENUM(name, text) name,
    TALLY_ERRORS(TALLY_ERR_ENUM)
#undef TALLY_ERR_ENUM
        TALLY_ERR_COUNT
};

#define TALLY_ERRMSG_SIZE 512

/* An error with context. Zero-initialise; code 0 means no error. */
struct tally_err {
    int code;
    char msg[TALLY_ERRMSG_SIZE];
};

/* The fixed text of a code ("bad signature"). Never NULL. */
const char *tally_strerror(int code);

/* Set err (may be NULL) to code with a formatted message; returns code so that
 * callers can write `return tally_errf(err, TALLY_EINVAL, "...")`. */
int tally_errf(struct tally_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepend context to err's message ("reading config: " + old); returns err->code. */
int tally_err_wrap(struct tally_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The message of err, or the code's fixed text when no message was set. */
const char *tally_err_text(const struct tally_err *err);

#endif
