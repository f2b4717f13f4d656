/* The pure parts of tally bench: see bench.h. */
#include "tools/lib/bench.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crypto/crypto.h"
#include "src/mono.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

uint64_t bench_percentile(const uint64_t *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    if (p <= 0)
        return sorted[0];
    /* rank = ceil(p/100 * n), 1-based; computed in integers (per 10,000)
     * so that p = 99.9 with n = 1000 is exactly rank 999. */
    uint64_t pp = (uint64_t)llround(p * 100.0); /* hundredths of a percent */
    if (pp >= 10000)
        return sorted[n - 1];
    uint64_t rank = ((uint64_t)n * pp + 9999) / 10000;
    if (rank == 0)
        rank = 1;
    return sorted[rank - 1];
}

void bench_latency_summary(uint64_t *v, size_t n, struct bench_latency *out)
{
    memset(out, 0, sizeof(*out));
    out->n = n;
    if (n == 0)
        return;
    qsort(v, n, sizeof(*v), cmp_u64);
    out->p50 = bench_percentile(v, n, 50);
    out->p90 = bench_percentile(v, n, 90);
    out->p99 = bench_percentile(v, n, 99);
    out->p999 = bench_percentile(v, n, 99.9);
    out->max = v[n - 1];
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)v[i];
    out->mean = sum / (double)n;
}

double bench_ceiling_drift(double before, double after)
{
    if (before <= 0 || after <= 0)
        return 0;
    return (after - before) / before;
}

void bench_per_second(const uint64_t *at_us, size_t n, uint64_t start_us, uint64_t *counts,
                      size_t nbuckets)
{
    memset(counts, 0, nbuckets * sizeof(*counts));
    for (size_t i = 0; i < n; i++) {
        if (at_us[i] < start_us)
            continue;
        uint64_t k = (at_us[i] - start_us) / 1000000u;
        if (k < nbuckets)
            counts[k]++;
    }
}

double bench_ceiling_tx_per_s(unsigned cores, double verify_per_s_per_core, uint32_t n)
{
    if (n == 0 || cores == 0 || verify_per_s_per_core <= 0)
        return 0;
    return (double)cores * verify_per_s_per_core / (double)n;
}

#define BENCH_CRYPTO_MSG_BYTES 200
#define BENCH_CRYPTO_MSGS 64
#define BENCH_CRYPTO_STEP 64 /* operations between clock reads */

int bench_measure_crypto(uint64_t sign_us, uint64_t verify_us, struct bench_crypto *out,
                         struct tally_err *err)
{
    int rc = 0;
    tc_keypair kp = {0};
    uint8_t msgs[BENCH_CRYPTO_MSGS][BENCH_CRYPTO_MSG_BYTES];
    tc_sig sigs[BENCH_CRYPTO_MSGS];
    memset(out, 0, sizeof(*out));
    if (tc_keypair_generate(&kp) != 0)
        return tally_errf(err, TALLY_ECRYPTO, "generating a key pair");
    for (size_t i = 0; i < BENCH_CRYPTO_MSGS; i++)
        for (size_t j = 0; j < BENCH_CRYPTO_MSG_BYTES; j++)
            msgs[i][j] = (uint8_t)(i * 31 + j * 7);

    uint64_t t0 = mono_now_us(), t1 = t0;
    while (t1 - t0 < sign_us || out->signs < BENCH_CRYPTO_MSGS) {
        for (size_t k = 0; k < BENCH_CRYPTO_STEP; k++, out->signs++)
            tc_sign(&kp, msgs[out->signs % BENCH_CRYPTO_MSGS], BENCH_CRYPTO_MSG_BYTES,
                    &sigs[out->signs % BENCH_CRYPTO_MSGS]);
        t1 = mono_now_us();
    }
    out->sign_per_s = (double)out->signs * 1e6 / (double)(t1 - t0);

    t0 = mono_now_us();
    t1 = t0;
    while (t1 - t0 < verify_us || out->verifies == 0) {
        for (size_t k = 0; k < BENCH_CRYPTO_STEP; k++, out->verifies++) {
            size_t m = out->verifies % BENCH_CRYPTO_MSGS;
            if (tc_verify(&kp.pk, msgs[m], BENCH_CRYPTO_MSG_BYTES, &sigs[m]) != 0) {
                rc = tally_errf(err, TALLY_ECRYPTO, "a signature just made does not verify");
                goto out;
            }
        }
        t1 = mono_now_us();
    }
    out->verify_per_s = (double)out->verifies * 1e6 / (double)(t1 - t0);
out:
    tc_keypair_free(&kp);
    return rc;
}

uint64_t bench_due_us(uint64_t start_us, double rate, uint64_t i)
{
    return start_us + (uint64_t)((double)i * 1e6 / rate);
}

uint64_t bench_due_count(uint64_t start_us, double rate, uint64_t now_us_)
{
    if (now_us_ < start_us)
        return 0;
    uint64_t k = (uint64_t)((double)(now_us_ - start_us) * rate / 1e6) + 1;
    /* Floating point may be off by one either way: settle it on due times. */
    while (k > 0 && bench_due_us(start_us, rate, k - 1) > now_us_)
        k--;
    while (bench_due_us(start_us, rate, k) <= now_us_)
        k++;
    return k;
}

uint64_t bench_behind_us(uint64_t start_us, double rate, uint64_t sent, uint64_t now_us_)
{
    uint64_t due = bench_due_us(start_us, rate, sent);
    return now_us_ > due ? now_us_ - due : 0;
}

uint64_t bench_presign_count(uint64_t count, double rate, double est_rate, double seconds,
                             uint64_t outstanding)
{
    if (count > 0)
        return count;
    double r = rate > 0 ? rate : est_rate;
    uint64_t base = (uint64_t)llround(r * seconds);
    uint64_t want = base + base / 10 + outstanding;
    return want < 1000 ? 1000 : want;
}

uint64_t bench_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t bench_rand_below(uint64_t *state, uint64_t n)
{
    if (n <= 1)
        return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* values >= limit would bias */
    for (;;) {
        uint64_t r = bench_rand(state);
        if (r < limit)
            return r % n;
    }
}

void bench_account_seed(uint64_t i, uint8_t seed[BENCH_SEED_BYTES])
{
    static const char tag[] = "tally bench ledger acct"; /* 23 bytes + i (8) + 1 */
    memset(seed, 0, BENCH_SEED_BYTES);
    memcpy(seed, tag, sizeof(tag) - 1);
    for (int k = 0; k < 8; k++)
        seed[23 + k] = (uint8_t)(i >> (8 * k));
}

void bench_ledger_plan(uint64_t accounts, uint64_t max_genesis, struct bench_ledger_plan *out)
{
    memset(out, 0, sizeof(*out));
    out->accounts = accounts;
    out->funders = accounts < max_genesis ? accounts : max_genesis;
    if (accounts > out->funders && out->funders > 0)
        out->per_funder = (accounts - out->funders + out->funders - 1) / out->funders;
}

uint64_t bench_ledger_children(const struct bench_ledger_plan *p, uint64_t f)
{
    if (f >= p->funders || p->per_funder == 0)
        return 0;
    uint64_t first = p->funders + f * p->per_funder;
    if (first >= p->accounts)
        return 0;
    uint64_t left = p->accounts - first;
    return left < p->per_funder ? left : p->per_funder;
}

unsigned bench_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

void bench_cpu_model(char *out, size_t size)
{
    snprintf(out, size, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "model name", 10) != 0)
            continue;
        char *p = strchr(line, ':');
        if (p == NULL)
            continue;
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t len = strcspn(p, "\n");
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len > 0)
            snprintf(out, size, "%.*s", (int)len, p);
        break;
    }
    fclose(f);
}

void bench_fmt_int(double v, char *out, size_t size)
{
    char digits[32];
    bool neg = v < 0;
    snprintf(digits, sizeof(digits), "%.0f", neg ? -v : v);
    size_t len = strlen(digits), o = 0;
    char tmp[48];
    if (neg && strcmp(digits, "0") != 0)
        tmp[o++] = '-';
    for (size_t i = 0; i < len; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            tmp[o++] = ',';
        tmp[o++] = digits[i];
    }
    tmp[o] = '\0';
    snprintf(out, size, "%s", tmp);
}
