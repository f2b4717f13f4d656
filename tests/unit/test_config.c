/* config/: cluster.json + genesis.json load, validate, explain; tally init. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "config/config.h"
#include "crypto/crypto.h"
#include "tests/helpers/tmpdir.h"

#define assert_ok(rc, err)                                                                         \
    do {                                                                                           \
        int rc_ = (rc);                                                                            \
        if (rc_ != TALLY_OK)                                                                       \
            fail_msg("expected ok, got %d: %s", rc_, tally_err_text(err));                         \
    } while (0)

/* The message must contain every given substring. */
#define assert_msg_has(err, ...)                                                                   \
    do {                                                                                           \
        const char *subs_[] = {__VA_ARGS__};                                                       \
        for (size_t i_ = 0; i_ < sizeof(subs_) / sizeof(subs_[0]); i_++)                           \
            if (strstr((err)->msg, subs_[i_]) == NULL)                                             \
                fail_msg("error message \"%s\" lacks \"%s\"", (err)->msg, subs_[i_]);              \
    } while (0)

struct fixture {
    char dir[TMPDIR_PATH_MAX];
    char cluster_path[TMPDIR_PATH_MAX];
    json_t *cluster; /* valid until a test changes it */
    json_t *genesis;
};

static void pk_hex(uint8_t fill, char out[2 * TC_PUBKEY_BYTES + 1])
{
    tc_keypair kp;
    uint8_t seed[TC_SEED_BYTES];
    memset(seed, fill, sizeof(seed));
    assert_int_equal(tc_keypair_from_seed(&kp, seed), TALLY_OK);
    tc_hex_encode(kp.pk.b, TC_PUBKEY_BYTES, out);
    tc_keypair_free(&kp);
}

static json_t *make_replicas(size_t n)
{
    json_t *reps = json_array();
    char hex[2 * TC_PUBKEY_BYTES + 1], peer[64], client[64];
    for (size_t i = 0; i < n; i++) {
        pk_hex((uint8_t)(0x10 + i), hex);
        snprintf(peer, sizeof(peer), "tcp://127.0.0.1:%zu", 27000 + 2 * i);
        snprintf(client, sizeof(client), "tcp://127.0.0.1:%zu", 27001 + 2 * i);
        json_array_append_new(reps,
                              json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)i, "peer_address",
                                        peer, "client_address", client, "public_key", hex));
    }
    return reps;
}

static json_t *make_genesis(size_t n)
{
    json_t *accts = json_array();
    char hex[2 * TC_PUBKEY_BYTES + 1];
    for (size_t i = 0; i < n; i++) {
        pk_hex((uint8_t)(0x80 + i), hex);
        json_array_append_new(
            accts, json_pack("{s:s, s:I}", "public_key", hex, "balance", (json_int_t)(1000 + i)));
    }
    return json_pack("{s:o}", "accounts", accts);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    if (fx == NULL || tmpdir_create(fx->dir, sizeof(fx->dir)) != 0)
        return -1;
    tmpdir_join(fx->cluster_path, sizeof(fx->cluster_path), fx->dir, "cluster.json");
    fx->cluster =
        json_pack("{s:s, s:s, s:o, s:i, s:i}", "cluster_name", "unit", "genesis", "genesis.json",
                  "replicas", make_replicas(4), "checkpoint_interval", 64, "log_window", 256);
    fx->genesis = make_genesis(3);
    *state = fx;
    return fx->cluster != NULL && fx->genesis != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    json_decref(fx->cluster);
    json_decref(fx->genesis);
    int rc = tmpdir_remove(fx->dir);
    free(fx);
    return rc == 0 ? 0 : -1;
}

static void write_json(const char *dir, const char *name, const json_t *j)
{
    char *text = json_dumps(j, JSON_INDENT(2));
    assert_non_null(text);
    assert_int_equal(tmpdir_write(dir, name, text), 0);
    free(text);
}

/* Write the fixture's files and load them. */
static int load(struct fixture *fx, struct tally_config *c, struct tally_err *err)
{
    write_json(fx->dir, "cluster.json", fx->cluster);
    write_json(fx->dir, "genesis.json", fx->genesis);
    memset(err, 0, sizeof(*err));
    int rc = config_load(fx->cluster_path, c, err);
    if (rc != TALLY_OK)
        assert_null(c->genesis.accounts); /* nothing left to free on failure */
    return rc;
}

/* Load and expect TALLY_ECONFIG. */
static void expect_fail(struct fixture *fx, struct tally_err *err)
{
    struct tally_config c;
    int rc = load(fx, &c, err);
    if (rc == TALLY_OK) {
        config_free(&c);
        fail_msg("expected the configuration to be rejected");
    }
    assert_int_equal(rc, TALLY_ECONFIG);
    if (getenv("TALLY_TEST_VERBOSE") != NULL)
        print_message("  rejected: %s\n", err->msg);
}

static json_t *replica(struct fixture *fx, size_t i)
{
    return json_array_get(json_object_get(fx->cluster, "replicas"), i);
}

/* ---- valid ------------------------------------------------------------------ */

static void test_valid_config_loads(void **state)
{
    struct fixture *fx = *state;
    struct tally_config c;
    struct tally_err err = {0};
    assert_ok(load(fx, &c, &err), &err);
    assert_string_equal(c.cluster_name, "unit");
    assert_int_equal(c.n, 4);
    assert_int_equal(c.f, 1);
    assert_int_equal(config_quorum(&c), 3);
    assert_int_equal(config_reply_quorum(&c), 2);
    assert_int_equal(c.checkpoint_interval, 64);
    assert_int_equal(c.log_window, 256);
    assert_int_equal(c.batch_max_txs, CONFIG_DEFAULT_BATCH_MAX_TXS);
    assert_int_equal(c.batch_timeout_ms, CONFIG_DEFAULT_BATCH_TIMEOUT_MS);
    assert_int_equal(c.max_inflight_batches, CONFIG_DEFAULT_MAX_INFLIGHT_BATCHES);
    assert_int_equal(c.request_timeout_ms, CONFIG_DEFAULT_REQUEST_TIMEOUT_MS);
    assert_int_equal(c.max_message_bytes, CONFIG_DEFAULT_MAX_MESSAGE_BYTES);
    assert_string_equal(c.replicas[2].peer_address, "tcp://127.0.0.1:27004");
    assert_string_equal(c.replicas[2].client_address, "tcp://127.0.0.1:27005");
    char path[TMPDIR_PATH_MAX];
    assert_string_equal(c.genesis_path, tmpdir_join(path, sizeof(path), fx->dir, "genesis.json"));

    for (uint32_t i = 0; i < 4; i++) {
        char hex[65];
        tc_pubkey pk;
        assert_int_equal(c.replicas[i].id, i);
        pk_hex((uint8_t)(0x10 + i), hex);
        assert_int_equal(tc_pubkey_parse(hex, &pk, NULL), TALLY_OK);
        assert_int_equal(config_replica_index_by_key(&c, &pk), (int)i);
    }
    tc_pubkey unknown;
    memset(unknown.b, 0xee, sizeof(unknown.b));
    assert_int_equal(config_replica_index_by_key(&c, &unknown), -1);

    assert_int_equal(c.genesis.count, 3);
    for (size_t i = 1; i < c.genesis.count; i++)
        assert_true(memcmp(c.genesis.accounts[i - 1].pk.b, c.genesis.accounts[i].pk.b,
                           TC_PUBKEY_BYTES) < 0);
    uint64_t sum = 0;
    for (size_t i = 0; i < c.genesis.count; i++)
        sum += c.genesis.accounts[i].balance;
    assert_int_equal(sum, 1000 + 1001 + 1002);
    assert_ok(config_validate(&c, "loaded", &err), &err);
    config_free(&c);
    config_free(&c); /* safe twice */
}

static void test_ids_in_any_order_and_seven_replicas(void **state)
{
    struct fixture *fx = *state;
    struct tally_config c;
    struct tally_err err = {0};
    json_t *reps = make_replicas(7);
    /* Swap the first and last entries: ids, not positions, decide. */
    json_t *first = json_incref(json_array_get(reps, 0));
    json_array_set(reps, 0, json_array_get(reps, 6));
    json_array_set_new(reps, 6, first);
    json_object_set_new(fx->cluster, "replicas", reps);
    assert_ok(load(fx, &c, &err), &err);
    assert_int_equal(c.n, 7);
    assert_int_equal(c.f, 2);
    assert_int_equal(config_quorum(&c), 5);
    assert_int_equal(config_reply_quorum(&c), 3);
    assert_string_equal(c.replicas[0].peer_address, "tcp://127.0.0.1:27000");
    assert_string_equal(c.replicas[6].peer_address, "tcp://127.0.0.1:27012");
    config_free(&c);
}

/* ---- replicas ---------------------------------------------------------------- */

static void test_n5_rejected(void **state)
{
    struct fixture *fx = *state;
    struct tally_err err;
    json_object_set_new(fx->cluster, "replicas", make_replicas(5));
    expect_fail(fx, &err);
    assert_msg_has(&err, "cluster.json", "replicas", "n = 5", "3f+1");
}

static void test_n3_rejected(void **state)
{
    struct fixture *fx = *state;
    struct tally_err err;
    json_object_set_new(fx->cluster, "replicas", make_replicas(3));
    expect_fail(fx, &err);
    assert_msg_has(&err, "cluster.json", "n = 3", "3f+1", "f >= 1");
}

static void test_duplicate_id(void **state)
{
    struct fixture *fx = *state;
    struct tally_err err;
    json_object_set_new(replica(fx, 2), "id", json_integer(1));
    expect_fail(fx, &err);
    assert_msg_has(&err, "cluster.json", "replicas[2].id", "duplicate id 1");
}

static void test_missing_id(void **state)
{
    struct fixture *fx = *state;
    struct tally_err err;
    /* ids 0, 1, 2, 4: 3 is missing, so 4 is out of range. */
    json_object_set_new(replica(fx, 3), "id", json_integer(4));
    expect_fail(fx, &err);
    assert_msg_has(&err, "replicas[3].id", "0..3");
    /* And the field itself missing. */
    json_object_del(replica(fx, 3), "id");
    expect_fail(fx, &err);
    assert_msg_has(&err, "replicas[3].id", "missing");
}

static void test_duplicate_key(void **state)
{
    struct fixture *fx = *state;
    struct tally_err err;
    json_object_set(replica(fx, 3), "public_key", json_object_get(replica(fx, 1), "public_key"));
    expect_fail(fx, &err);
    assert_msg_has(&err, "replicas[3].public_key", "duplicate public key", "replicas[1]");
}

static void test_bad_hex_key(void **state)
{
    struct fixture *fx = *state;
    struct tally_err err;
    json_object_set_new(replica(fx, 2), "public_key", json_string("abcd"));
    expect_fail(fx, &err);
    assert_msg_has(&err, "cluster.json: replicas[2].public_key: must be 64 hex characters");
    char bad[65];
    memset(bad, 'g', 64);
    bad[64] = '\0';
    json_object_set_new(replica(fx, 2), "public_key", json_string(bad));
    expect_fail(fx, &err);
    assert_msg_has(&err, "replicas[2].public_key", "64 hex");
}

static void test_bad_address(void **state)
{
    struct fixture *fx = *state;
    struct tally_err err;
    json_object_set_new(replica(fx, 1), "peer_address", json_string("127.0.0.1:27002"));
    expect_fail(fx, &err);
    assert_msg_has(&err, "replicas[1].peer_address", "tcp://HOST:PORT");
    json_object_set_new(replica(fx, 1), "peer_address", json_string("tcp://:27002"));
    expect_fail(fx, &err);
    assert_msg_has(&err, "replicas[1].peer_address");
    json_object_set_new(replica(fx, 1), "peer_address", json_string("tcp://bad host:27002"));
    expect_fail(fx, &err);
    assert_msg_has(&err, "replicas[1].peer_address", "host");
    /* Duplicate addresses, across replicas and across kinds. */
    json_object_set_new(replica(fx, 1), "peer_address", json_string("tcp://127.0.0.1:27000"));
    expect_fail(fx, &err);
    assert_msg_has(&err, "replicas[1].peer_address", "duplicate address",
                   "replicas[0].peer_address");
    json_object_set_new(replica(fx, 1), "peer_address", json_string("tcp://127.0.0.1:27001"));
    expect_fail(fx, &err);
    assert_msg_has(&err, "duplicate address", "replicas[0].client_address");
}

static void test_bad_port(void **state)
{
    struct fixture *fx = *state;
    struct tally_err err;
    const char *bad[] = {"tcp://127.0.0.1:0", "tcp://127.0.0.1:65536", "tcp://127.0.0.1:99999999",
                         "tcp://127.0.0.1:",  "tcp://127.0.0.1:80x",   "tcp://127.0.0.1:-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_object_set_new(replica(fx, 0), "client_address", json_string(bad[i]));
        expect_fail(fx, &err);
        assert_msg_has(&err, "replicas[0].client_address", "port");
    }
    uint16_t port;
    char host[64];
    assert_int_equal(config_parse_address("tcp://10.0.0.1:65535", host, sizeof(host), &port, NULL),
                     TALLY_OK);
    assert_string_equal(host, "10.0.0.1");
    assert_int_equal(port, 65535);
    assert_int_equal(config_parse_address("tcp://[::1]:1", host, sizeof(host), &port, NULL),
                     TALLY_OK);
    assert_string_equal(host, "[::1]");
    assert_int_equal(port, 1);
}

/* ---- numbers ------------------------------------------------------------------- */

static void test_window_not_multiple_of_k(void **state)
{
    struct fixture *fx = *state;
    struct tally_err err;
    json_object_set_new(fx->cluster, "log_window", json_integer(200));
    expect_fail(fx, &err);
    assert_msg_has(&err, "cluster.json: log_window", "multiple of checkpoint_interval", "64");
    json_object_set_new(fx->cluster, "log_window", json_integer(0));
    expect_fail(fx, &err);
    assert_msg_has(&err, "log_window", "out of range");
}

static void test_negative_and_string_numbers(void **state)
{
    struct fixture *fx = *state;
    struct tally_err err;
    json_object_set_new(fx->cluster, "checkpoint_interval", json_integer(-64));
    expect_fail(fx, &err);
    assert_msg_has(&err, "checkpoint_interval", "negative");
    json_object_set_new(fx->cluster, "checkpoint_interval", json_string("64"));
    expect_fail(fx, &err);
    assert_msg_has(&err, "checkpoint_interval", "integer", "string");
    json_object_set_new(fx->cluster, "checkpoint_interval", json_real(64.5));
    expect_fail(fx, &err);
    assert_msg_has(&err, "checkpoint_interval", "integer");
    json_object_set_new(fx->cluster, "checkpoint_interval", json_integer(64));
    json_object_set_new(replica(fx, 0), "id", json_string("0"));
    expect_fail(fx, &err);
    assert_msg_has(&err, "replicas[0].id", "string");
    json_object_set_new(replica(fx, 0), "id", json_integer(0));
    json_object_set_new(fx->cluster, "batch_max_txs", json_integer(CONFIG_MAX_BATCH_TXS + 1));
    expect_fail(fx, &err);
    assert_msg_has(&err, "batch_max_txs", "out of range");
    json_object_set_new(fx->cluster, "batch_max_txs", json_integer(4096));
    json_object_set_new(fx->cluster, "max_message_bytes", json_integer(100000));
    expect_fail(fx, &err);
    assert_msg_has(&err, "max_message_bytes", "too small", "batch_max_txs");
}

static void test_unknown_field(void **state)
{
    struct fixture *fx = *state;
    struct tally_err err;
    json_object_set_new(fx->cluster, "checkpoint_intervall", json_integer(64));
    expect_fail(fx, &err);
    assert_msg_has(&err, "cluster.json", "checkpoint_intervall", "unknown field");
    json_object_del(fx->cluster, "checkpoint_intervall");
    json_object_set_new(replica(fx, 1), "adress", json_string("x"));
    expect_fail(fx, &err);
    assert_msg_has(&err, "replicas[1].adress", "unknown field");
}

static void test_missing_required_fields(void **state)
{
    struct fixture *fx = *state;
    struct tally_err err;
    json_object_del(fx->cluster, "cluster_name");
    expect_fail(fx, &err);
    assert_msg_has(&err, "cluster_name", "missing");
    json_object_set_new(fx->cluster, "cluster_name", json_string("unit"));
    json_object_del(fx->cluster, "genesis");
    expect_fail(fx, &err);
    assert_msg_has(&err, "genesis", "missing");
}

/* ---- files ------------------------------------------------------------------------ */

static void test_json_syntax_error_mentions_line(void **state)
{
    struct fixture *fx = *state;
    struct tally_config c;
    struct tally_err err = {0};
    assert_int_equal(tmpdir_write(fx->dir, "cluster.json",
                                  "{\n  \"cluster_name\": \"x\",\n  \"replicas\": [,]\n}\n"),
                     0);
    assert_int_equal(config_load(fx->cluster_path, &c, &err), TALLY_ECONFIG);
    assert_msg_has(&err, "cluster.json", "line 3", "column");

    /* Duplicate keys are syntax errors too (JSON_REJECT_DUPLICATES). */
    assert_int_equal(
        tmpdir_write(fx->dir, "cluster.json", "{\"cluster_name\": \"a\", \"cluster_name\": \"b\"}"),
        0);
    assert_int_equal(config_load(fx->cluster_path, &c, &err), TALLY_ECONFIG);
    assert_msg_has(&err, "duplicate", "cluster_name");

    assert_int_equal(tmpdir_write(fx->dir, "cluster.json", "[1]"), 0);
    assert_int_equal(config_load(fx->cluster_path, &c, &err), TALLY_ECONFIG);
    assert_msg_has(&err, "object");
}

static void test_missing_files(void **state)
{
    struct fixture *fx = *state;
    struct tally_config c;
    struct tally_err err = {0};
    assert_int_equal(config_load(fx->cluster_path, &c, &err), TALLY_ENOTFOUND);
    assert_msg_has(&err, "cluster.json");

    write_json(fx->dir, "cluster.json", fx->cluster);
    assert_int_equal(config_load(fx->cluster_path, &c, &err), TALLY_ENOTFOUND);
    assert_msg_has(&err, "genesis.json");
    assert_null(c.genesis.accounts);
}

/* A directory where a file is expected: named, not "cannot read". */
static void test_config_is_a_directory(void **state)
{
    struct fixture *fx = *state;
    struct tally_config c;
    struct tally_err err = {0};
    assert_int_equal(config_load(fx->dir, &c, &err), TALLY_EIO);
    assert_msg_has(&err, fx->dir, "not a regular file (a directory)");

    char sub[TMPDIR_PATH_MAX];
    tmpdir_join(sub, sizeof(sub), fx->dir, "genesis.json");
    assert_int_equal(mkdir(sub, 0700), 0);
    write_json(fx->dir, "cluster.json", fx->cluster);
    memset(&err, 0, sizeof(err));
    assert_int_equal(config_load(fx->cluster_path, &c, &err), TALLY_EIO);
    assert_msg_has(&err, "genesis.json", "not a regular file");
    assert_null(c.genesis.accounts);
}

/* Every file under dir (names, sizes, contents), hashed: to see that a check
 * changed nothing. */
static void dir_digest(const char *dir, tc_hash *out)
{
    char cmd[TMPDIR_PATH_MAX + 128], buf[4096];
    snprintf(cmd, sizeof(cmd), "cd '%s' && find . -type f | LC_ALL=C sort | xargs cat; ls -la",
             dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    uint8_t *all = NULL;
    size_t len = 0, got;
    while ((got = fread(buf, 1, sizeof(buf), p)) > 0) {
        all = realloc(all, len + got);
        assert_non_null(all);
        memcpy(all + len, buf, got);
        len += got;
    }
    pclose(p);
    tc_sha256(all, len, out);
    free(all);
}

/* Write a ledger with c's genesis into dir (or no genesis when c is NULL). */
static void make_ledger(const char *dir, const struct tally_config *c)
{
    struct ledger *l = NULL;
    struct tally_err err = {0};
    struct ledger_open_opts o = {.sync = false};
    assert_ok(ledger_open_opts(dir, &o, &l, &err), &err);
    if (c != NULL)
        assert_ok(ledger_init_genesis(l, c->genesis.accounts, c->genesis.count, &err), &err);
    ledger_close(l);
}

static void test_genesis_hash(void **state)
{
    struct fixture *fx = *state;
    struct tally_config c, other;
    struct tally_err err = {0};
    tc_hash h1, h2, h3;
    assert_ok(load(fx, &c, &err), &err);
    assert_ok(config_genesis_hash(&c, &h1, &err), &err);
    assert_ok(config_genesis_hash(&c, &h2, &err), &err);
    assert_memory_equal(h1.b, h2.b, TC_HASH_BYTES);
    /* The same as the genesis block a ledger writes. */
    char dir[TMPDIR_PATH_MAX];
    struct ledger *l = NULL;
    tmpdir_join(dir, sizeof(dir), fx->dir, "data");
    make_ledger(dir, &c);
    struct ledger_open_opts ro = {.read_only = true};
    assert_ok(ledger_open_opts(dir, &ro, &l, &err), &err);
    ledger_genesis_hash(l, &h3);
    ledger_close(l);
    assert_memory_equal(h1.b, h3.b, TC_HASH_BYTES);
    /* Another balance, another chain. */
    json_object_set_new(json_array_get(json_object_get(fx->genesis, "accounts"), 0), "balance",
                        json_integer(7));
    assert_ok(load(fx, &other, &err), &err);
    assert_ok(config_genesis_hash(&other, &h2, &err), &err);
    assert_memory_not_equal(h1.b, h2.b, TC_HASH_BYTES);
    config_free(&c);
    config_free(&other);
}

static void test_check_data_dir(void **state)
{
    struct fixture *fx = *state;
    struct tally_config c, other;
    struct tally_err err = {0};
    char dir[TMPDIR_PATH_MAX], path[TMPDIR_PATH_MAX];
    struct stat st;
    assert_ok(load(fx, &c, &err), &err);
    json_object_set_new(json_array_get(json_object_get(fx->genesis, "accounts"), 0), "balance",
                        json_integer(7));
    assert_ok(load(fx, &other, &err), &err);

    /* Missing: fine for a first start, and not created; else named. */
    tmpdir_join(dir, sizeof(dir), fx->dir, "data");
    assert_ok(config_check_data_dir(&c, "cluster.json", dir, true, &err), &err);
    assert_int_equal(stat(dir, &st), -1);
    assert_int_equal(config_check_data_dir(&c, "cluster.json", dir, false, &err), TALLY_ENOTFOUND);
    assert_msg_has(&err, dir, "No such file or directory");

    /* A file. */
    assert_int_equal(config_check_data_dir(&c, "cluster.json", fx->cluster_path, true, &err),
                     TALLY_EINVAL);
    assert_msg_has(&err, "cluster.json is not a directory");

    /* Empty: fine for a first start, no ledger to read otherwise. */
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_ok(config_check_data_dir(&c, "cluster.json", dir, true, &err), &err);
    assert_int_equal(config_check_data_dir(NULL, NULL, dir, false, &err), TALLY_ENOTFOUND);
    assert_msg_has(&err, dir, "holds no tally ledger");

    /* Other files and no ledger: never made one. */
    assert_int_equal(config_check_data_dir(&c, "cluster.json", fx->dir, true, &err), TALLY_EINVAL);
    assert_msg_has(&err, "holds other files and no tally ledger", "refusing");
    assert_int_equal(config_check_data_dir(NULL, NULL, fx->dir, false, &err), TALLY_EINVAL);

    /* A ledger without genesis: a first start that stopped early. */
    make_ledger(dir, NULL);
    assert_ok(config_check_data_dir(&c, "cluster.json", dir, true, &err), &err);
    assert_int_equal(config_check_data_dir(&c, "cluster.json", dir, false, &err), TALLY_ENOTFOUND);
    assert_msg_has(&err, "has no genesis block");

    /* This cluster's ledger; another cluster's is refused, and left as it was. */
    tmpdir_join(path, sizeof(path), fx->dir, "data2");
    make_ledger(path, &c);
    assert_ok(config_check_data_dir(&c, "cluster.json", path, true, &err), &err);
    assert_ok(config_check_data_dir(&c, "cluster.json", path, false, &err), &err);
    assert_ok(config_check_data_dir(NULL, NULL, path, false, &err), &err);
    tc_hash before, after;
    dir_digest(path, &before);
    assert_int_equal(config_check_data_dir(&other, "other.json", path, true, &err),
                     TALLY_EMISMATCH);
    assert_msg_has(&err, path, "belongs to another cluster", "other.json");
    assert_int_equal(config_check_data_dir(&other, "other.json", path, false, &err),
                     TALLY_EMISMATCH);
    dir_digest(path, &after);
    assert_memory_equal(before.b, after.b, TC_HASH_BYTES);
    config_free(&c);
    config_free(&other);
}

static void test_genesis_duplicate_account(void **state)
{
    struct fixture *fx = *state;
    struct tally_err err;
    json_t *accts = json_object_get(fx->genesis, "accounts");
    json_object_set(json_array_get(accts, 2), "public_key",
                    json_object_get(json_array_get(accts, 0), "public_key"));
    expect_fail(fx, &err);
    assert_msg_has(&err, "genesis.json", "accounts[2].public_key", "duplicate account",
                   "accounts[0]");
}

static void test_genesis_overflow(void **state)
{
    struct fixture *fx = *state;
    struct tally_err err;
    json_t *accts = json_object_get(fx->genesis, "accounts");
    for (size_t i = 0; i < 3; i++)
        json_object_set_new(json_array_get(accts, i), "balance", json_integer(INT64_MAX));
    expect_fail(fx, &err);
    assert_msg_has(&err, "genesis.json", "accounts", "2^64");
}

static void test_genesis_bad_entries(void **state)
{
    struct fixture *fx = *state;
    struct tally_err err;
    json_t *accts = json_object_get(fx->genesis, "accounts");
    json_object_set_new(json_array_get(accts, 1), "balance", json_integer(-5));
    expect_fail(fx, &err);
    assert_msg_has(&err, "genesis.json", "accounts[1].balance", "negative");
    json_object_set_new(json_array_get(accts, 1), "balance", json_string("5"));
    expect_fail(fx, &err);
    assert_msg_has(&err, "accounts[1].balance", "string");
    json_object_set_new(json_array_get(accts, 1), "balance", json_integer(5));
    json_object_set_new(json_array_get(accts, 1), "nonce", json_integer(0));
    expect_fail(fx, &err);
    assert_msg_has(&err, "accounts[1].nonce", "unknown field");
    json_array_clear(accts);
    expect_fail(fx, &err);
    assert_msg_has(&err, "genesis.json", "accounts", "at least one");
}

/* ---- tally init through the binary -------------------------------------------------- */

static int run(const char *cmd)
{
    int status = system(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_tally_init_binary(void **state)
{
    struct fixture *fx = *state;
    const char *bin_dir = getenv("TALLY_BIN_DIR");
    if (bin_dir == NULL) {
        skip();
        return;
    }
    char cmd[3 * TMPDIR_PATH_MAX], out[TMPDIR_PATH_MAX], path[TMPDIR_PATH_MAX];
    tmpdir_join(out, sizeof(out), fx->dir, "net");
    snprintf(cmd, sizeof(cmd),
             "'%s/tally' init --dir '%s' --nodes 7 --accounts 5 --balance 77 --base-port 31000 "
             ">/dev/null",
             bin_dir, out);
    assert_int_equal(run(cmd), 0);

    struct tally_config c;
    struct tally_err err = {0};
    tmpdir_join(path, sizeof(path), out, "cluster.json");
    assert_ok(config_load(path, &c, &err), &err);
    assert_int_equal(c.n, 7);
    assert_int_equal(c.f, 2);
    assert_string_equal(c.replicas[3].peer_address, "tcp://127.0.0.1:31006");
    assert_string_equal(c.replicas[3].client_address, "tcp://127.0.0.1:31007");
    assert_int_equal(c.genesis.count, 5);
    for (size_t i = 0; i < c.genesis.count; i++)
        assert_int_equal(c.genesis.accounts[i].balance, 77);

    /* Every replica key file matches the config; every account key is funded. */
    for (uint32_t i = 0; i < c.n; i++) {
        char name[64];
        tc_keypair kp;
        struct stat st;
        snprintf(name, sizeof(name), "replica-%u.key", i);
        tmpdir_join(path, sizeof(path), out, name);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_ok(tc_keyfile_read(path, &kp, &err), &err);
        assert_int_equal(config_replica_index_by_key(&c, &kp.pk), (int)i);
        tc_keypair_free(&kp);
    }
    for (uint32_t i = 0; i < 5; i++) {
        char name[64];
        tc_keypair kp;
        snprintf(name, sizeof(name), "accounts/account-%u.key", i);
        tmpdir_join(path, sizeof(path), out, name);
        assert_ok(tc_keyfile_read(path, &kp, &err), &err);
        int found = 0;
        for (size_t k = 0; k < c.genesis.count; k++)
            found += memcmp(c.genesis.accounts[k].pk.b, kp.pk.b, TC_PUBKEY_BYTES) == 0;
        assert_int_equal(found, 1);
        tc_keypair_free(&kp);
    }
    tmpdir_join(path, sizeof(path), out, "accounts/accounts.json");
    json_error_t jerr;
    json_t *list = json_load_file(path, 0, &jerr);
    assert_non_null(list);
    json_t *accts = json_object_get(list, "accounts");
    assert_int_equal(json_array_size(accts), 5);
    assert_string_equal(json_string_value(json_object_get(json_array_get(accts, 4), "name")),
                        "account-4");
    assert_non_null(json_string_value(json_object_get(json_array_get(accts, 4), "key_file")));
    json_decref(list);
    config_free(&c);

    /* Never overwrites; usage errors are exit code 2. */
    strcat(cmd, " 2>/dev/null");
    assert_int_equal(run(cmd), 1);
    snprintf(cmd, sizeof(cmd), "'%s/tally' init --dir '%s/x' --nodes 5 2>/dev/null", bin_dir,
             fx->dir);
    assert_int_equal(run(cmd), 2);
    snprintf(cmd, sizeof(cmd), "'%s/tally' init --help >/dev/null", bin_dir);
    assert_int_equal(run(cmd), 0);

    /* keygen: writes 0600, refuses to overwrite. */
    tmpdir_join(path, sizeof(path), fx->dir, "one.key");
    snprintf(cmd, sizeof(cmd), "'%s/tally' keygen --out '%s' --json >/dev/null", bin_dir, path);
    assert_int_equal(run(cmd), 0);
    tc_keypair kp;
    assert_ok(tc_keyfile_read(path, &kp, &err), &err);
    tc_keypair_free(&kp);
    snprintf(cmd, sizeof(cmd), "'%s/tally' keygen --out '%s' 2>/dev/null", bin_dir, path);
    assert_int_equal(run(cmd), 1);
    snprintf(cmd, sizeof(cmd), "'%s/tally' keygen 2>/dev/null", bin_dir);
    assert_int_equal(run(cmd), 2);
}

int main(void)
{
    if (tc_init() != TALLY_OK)
        return 1;
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_valid_config_loads),
        T(test_ids_in_any_order_and_seven_replicas),
        T(test_n5_rejected),
        T(test_n3_rejected),
        T(test_duplicate_id),
        T(test_missing_id),
        T(test_duplicate_key),
        T(test_bad_hex_key),
        T(test_bad_address),
        T(test_bad_port),
        T(test_window_not_multiple_of_k),
        T(test_negative_and_string_numbers),
        T(test_unknown_field),
        T(test_missing_required_fields),
        T(test_json_syntax_error_mentions_line),
        T(test_missing_files),
        T(test_config_is_a_directory),
        T(test_genesis_hash),
        T(test_check_data_dir),
        T(test_genesis_duplicate_account),
        T(test_genesis_overflow),
        T(test_genesis_bad_entries),
        T(test_tally_init_binary),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
