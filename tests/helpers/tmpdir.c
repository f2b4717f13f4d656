#include "tests/helpers/tmpdir.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tmpdir_create(char *path, size_t size)
{
    const char *tmpl = "/tmp/tally-test-XXXXXX";
    if (size <= strlen(tmpl))
        return -1;
    snprintf(path, size, "%s", tmpl);
    return mkdtemp(path) == NULL ? -1 : 0;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 ? 0 : -1;
}

int tmpdir_remove(const char *path)
{
    if (path == NULL || path[0] == '\0')
        return 0;
    return nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

int tmpdir_write(const char *dir, const char *name, const char *text)
{
    char path[TMPDIR_PATH_MAX];
    tmpdir_join(path, sizeof(path), dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    size_t len = strlen(text);
    int ok = fwrite(text, 1, len, f) == len;
    if (fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

char *tmpdir_join(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size)
        abort();
    return out;
}
