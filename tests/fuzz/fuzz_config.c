/* libFuzzer: cluster config parser and validator. The input is split at the
 * first NUL byte into cluster.json and genesis.json. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

static char dir[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (tc_init() != TALLY_OK)
        abort();
    snprintf(dir, sizeof(dir), "/tmp/tally-fuzz-config-XXXXXX");
    if (mkdtemp(dir) == NULL)
        abort();
    return 0;
}

static void write_file(const char *path, const uint8_t *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        abort();
    if (len > 0 && fwrite(data, 1, len, f) != len)
        abort();
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *split = memchr(data, 0, size);
    size_t cluster_len = split != NULL ? (size_t)(split - data) : size;
    const uint8_t *genesis = split != NULL ? split + 1 : data + size;
    size_t genesis_len = (size_t)(data + size - genesis);
    char cluster_path[128], genesis_path[128];
    snprintf(cluster_path, sizeof(cluster_path), "%s/cluster.json", dir);
    snprintf(genesis_path, sizeof(genesis_path), "%s/genesis.json", dir);
    write_file(cluster_path, data, cluster_len);
    write_file(genesis_path, genesis, genesis_len);
    struct tally_config c;
    struct tally_err err = {0};
    if (config_load(cluster_path, &c, &err) == TALLY_OK)
        config_free(&c);
    return 0;
}
