#include "src/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const err_texts[TALLY_ERR_COUNT] = {
#define TALLY_ERR_TEXT(name, text) [name] = text,
    TALLY_ERRORS(TALLY_ERR_TEXT)
#undef TALLY_ERR_TEXT
};

const char *tally_strerror(int code)
{
    if (code < 0 || code >= TALLY_ERR_COUNT)
        return "unknown error";
    return err_texts[code];
}

int tally_errf(struct tally_err *err, int code, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

int tally_err_wrap(struct tally_err *err, const char *fmt, ...)
{
    if (err == NULL)
        return TALLY_EINVAL;
    char prefix[TALLY_ERRMSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    char old[TALLY_ERRMSG_SIZE];
    memcpy(old, err->msg, sizeof(old));
    if (old[0] == '\0')
        snprintf(old, sizeof(old), "%s", tally_strerror(err->code));
    /* Join in a buffer large enough for both, then keep what fits. */
    char joined[2 * TALLY_ERRMSG_SIZE + 2];
    snprintf(joined, sizeof(joined), "%s: %s", prefix, old);
    memcpy(err->msg, joined, sizeof(err->msg) - 1);
    err->msg[sizeof(err->msg) - 1] = '\0';
    return err->code;
}

const char *tally_err_text(const struct tally_err *err)
{
    if (err->msg[0] != '\0')
        return err->msg;
    return tally_strerror(err->code);
}
