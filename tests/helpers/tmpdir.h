/* Test helper: a fresh directory under /tmp, removed recursively afterwards.
 * Depends on libc only. */
#ifndef TALLY_TESTS_TMPDIR_H
#define TALLY_TESTS_TMPDIR_H

#include <stddef.h>

#define TMPDIR_PATH_MAX 4096

/* Create /tmp/tally-test-XXXXXX (mode 0700) and write its path into path
 * (size bytes). Returns 0, or -1 with errno set. */
int tmpdir_create(char *path, size_t size);

/* Remove path and everything below it (does not follow symlinks). Returns 0,
 * or -1 when something could not be removed. NULL or "" is a no-op. */
int tmpdir_remove(const char *path);

/* Write text to dir/name (created or truncated, mode 0644). Returns 0 or -1. */
int tmpdir_write(const char *dir, const char *name, const char *text);

/* Join dir and name into out ("dir/name"); returns out. Aborts if it does not fit. */
char *tmpdir_join(char *out, size_t size, const char *dir, const char *name);

#endif
