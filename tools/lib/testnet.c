/* Local testnet management: see testnet.h. */
#include "tools/lib/testnet.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "src/mono.h"
#include "tools/cmds.h"
#include "tools/lib/client.h"

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static json_int_t jint(json_t *o, const char *path1, const char *path2)
{
    json_t *v = json_object_get(o, path1);
    if (v != NULL && path2 != NULL)
        v = json_object_get(v, path2);
    return v != NULL && json_is_integer(v) ? json_integer_value(v) : -1;
}

static json_int_t dropped_total(json_t *st)
{
    json_t *d = json_object_get(st, "dropped");
    json_int_t sum = 0;
    const char *k;
    json_t *v;
    json_object_foreach(d, k, v)
    {
        if (json_is_integer(v))
            sum += json_integer_value(v);
    }
    return sum;
}

uint32_t testnet_print_status(const struct tally_config *cfg, bool json, uint64_t timeout_ms)
{
    struct client *cl = NULL;
    struct tally_err err = {0};
    char *texts[CONFIG_MAX_REPLICAS] = {0};
    uint32_t up = 0;
    if (client_open(cfg, &cl, &err) == 0)
        up = client_status_all(cl, timeout_ms, texts);
    client_close(cl);
    json_t *reps = json_array();
    if (!json)
        printf("%-3s %-24s %-5s %5s %7s %9s %10s %6s %8s %8s\n", "id", "address", "state", "view",
               "primary", "executed", "checkpoint", "peers", "dropped", "height");
    for (uint32_t i = 0; i < cfg->n; i++) {
        json_t *st = texts[i] != NULL ? json_loads(texts[i], 0, NULL) : NULL;
        const char *addr = cfg->replicas[i].client_address;
        if (json) {
            json_t *o =
                json_pack("{s:I, s:s, s:s, s:b}", "id", (json_int_t)i, "client_address", addr,
                          "peer_address", cfg->replicas[i].peer_address, "up", st != NULL);
            if (st != NULL)
                json_object_set(o, "status", st);
            json_array_append_new(reps, o);
        } else if (st == NULL) {
            printf("%-3u %-24s %-5s\n", i, addr, "down");
        } else {
            printf("%-3u %-24s %-5s %5lld %7lld %9lld %10lld %4lld/%u %8lld %8lld\n", i, addr, "up",
                   (long long)jint(st, "view", NULL), (long long)jint(st, "primary", NULL),
                   (long long)jint(st, "last_executed", NULL),
                   (long long)jint(st, "last_stable_checkpoint", NULL),
                   (long long)jint(st, "peers_connected", NULL), cfg->n - 1,
                   (long long)dropped_total(st), (long long)jint(st, "ledger", "height"));
        }
        json_decref(st);
        free(texts[i]);
    }
    if (json) {
        json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:o}", "cluster_name", cfg->cluster_name, "n",
                              (json_int_t)cfg->n, "f", (json_int_t)cfg->f, "up", (json_int_t)up,
                              "replicas", reps);
        char *t = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
        if (t != NULL)
            printf("%s\n", t);
        free(t);
        json_decref(o);
    } else {
        json_decref(reps);
        printf("%u of %u replicas up\n", up, cfg->n);
    }
    return up;
}

/* ---- processes ----------------------------------------------------------- */

static int path_in(char *out, size_t size, const char *dir, const char *fmt, uint32_t id)
{
    char rel[64];
    snprintf(rel, sizeof(rel), fmt, id);
    int n = snprintf(out, size, "%s/%s", dir, rel);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

static bool pid_is_tallyd(long pid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    /* argv[0] is the first NUL-terminated string. */
    const char *base = strrchr(buf, '/');
    base = base != NULL ? base + 1 : buf;
    if (strcmp(base, "tallyd") != 0)
        return false;
    /* A zombie has an empty cmdline, so reaching here means it runs. */
    return true;
}

long testnet_running_pid(const char *dir, uint32_t id)
{
    char path[PATH_MAX];
    if (path_in(path, sizeof(path), dir, "replica-%u.pid", id) != 0)
        return 0;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    long pid = 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    if (pid <= 1 || !pid_is_tallyd(pid))
        return 0;
    return pid;
}

static int tallyd_path(char *out, size_t size)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return -1;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash == NULL)
        return -1;
    *slash = '\0';
    if (snprintf(out, size, "%s/tallyd", self) >= (int)size)
        return -1;
    return access(out, X_OK) == 0 ? 0 : -1;
}

static long spawn_replica(const char *tallyd, const char *dir, uint32_t id)
{
    char cluster[PATH_MAX], data[PATH_MAX], logp[PATH_MAX], idtext[16];
    if (snprintf(cluster, sizeof(cluster), "%s/cluster.json", dir) >= (int)sizeof(cluster) ||
        path_in(data, sizeof(data), dir, "data-%u", id) != 0 ||
        path_in(logp, sizeof(logp), dir, "replica-%u.log", id) != 0)
        return -1;
    snprintf(idtext, sizeof(idtext), "%u", id);
    int logfd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) {
        fprintf(stderr, "tally testnet: cannot open %s: %s\n", logp, strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(logfd);
        fprintf(stderr, "tally testnet: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        setsid();
        int nullfd = open("/dev/null", O_RDONLY);
        if (nullfd >= 0)
            dup2(nullfd, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        execl(tallyd, "tallyd", "--config", cluster, "--id", idtext, "--data", data, (char *)NULL);
        dprintf(2, "tally testnet: cannot run %s: %s\n", tallyd, strerror(errno));
        _exit(127);
    }
    close(logfd);
    return pid;
}

/* The last non-empty line of DIR/replica-I.log (tallyd's reason for exiting)
 * into out, or "" when there is none. */
static void last_log_line(const char *dir, uint32_t id, char *out, size_t size)
{
    char path[PATH_MAX], buf[4096];
    out[0] = '\0';
    if (path_in(path, sizeof(path), dir, "replica-%u.log", id) != 0)
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
    close(fd);
    if (n <= 0)
        return;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    const char *line = strrchr(buf, '\n');
    line = line != NULL ? line + 1 : buf;
    size_t len = strlen(line) < size ? strlen(line) : size - 1;
    memcpy(out, line, len);
    out[len] = '\0';
}

/* Undo a failed start: stop the replicas this run started (pids[i] > 0) and
 * remove their pid files. */
static void stop_started(const char *dir, const long *pids, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (pids[i] > 0 && pid_is_tallyd(pids[i]))
            kill((pid_t)pids[i], SIGTERM);
    uint64_t deadline = mono_now_ms() + 5000;
    for (uint32_t i = 0; i < n; i++) {
        while (pids[i] > 0 && pid_is_tallyd(pids[i]) && mono_now_ms() < deadline) {
            while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
            sleep_ms(20);
        }
        if (pids[i] > 0 && pid_is_tallyd(pids[i]))
            kill((pid_t)pids[i], SIGKILL);
        char path[PATH_MAX];
        if (pids[i] > 0 && path_in(path, sizeof(path), dir, "replica-%u.pid", i) == 0)
            unlink(path);
    }
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

static int write_pid(const char *dir, uint32_t id, long pid)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    if (path_in(path, sizeof(path), dir, "replica-%u.pid", id) != 0)
        return -1;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "%ld\n", pid);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        return -1;
    return 0;
}

int testnet_start(const struct testnet_start_opts *o)
{
    char cluster[PATH_MAX], tallyd[PATH_MAX];
    if (snprintf(cluster, sizeof(cluster), "%s/cluster.json", o->dir) >= (int)sizeof(cluster)) {
        fprintf(stderr, "tally testnet: --dir: path too long\n");
        return 1;
    }
    if (tallyd_path(tallyd, sizeof(tallyd)) != 0) {
        fprintf(stderr, "tally testnet: cannot find the tallyd binary next to tally\n");
        return 1;
    }
    if (access(cluster, F_OK) != 0) {
        if (cmd_init == NULL) {
            fprintf(stderr, "tally testnet: tally init is not built\n");
            return 1;
        }
        char nodes[16], port[16];
        snprintf(nodes, sizeof(nodes), "%u", o->nodes);
        snprintf(port, sizeof(port), "%u", o->base_port);
        char *argv[] = {"init", "--dir",       (char *)o->dir, "--nodes",
                        nodes,  "--base-port", port,           NULL};
        int argc = o->base_port != 0 ? 7 : 5;
        argv[argc] = NULL;
        /* tally init reports to stdout; keep --json output a single object. */
        int saved = -1;
        if (o->json) {
            fflush(stdout);
            saved = dup(1);
            int nullfd = open("/dev/null", O_WRONLY);
            if (nullfd >= 0) {
                dup2(nullfd, 1);
                close(nullfd);
            }
        }
        int rc = cmd_init(argc, argv);
        if (saved >= 0) {
            fflush(stdout);
            dup2(saved, 1);
            close(saved);
        }
        if (rc != 0)
            return 1;
    }
    struct tally_config cfg = {0};
    struct tally_err err = {0};
    if (config_load(cluster, &cfg, &err) != 0) {
        fprintf(stderr, "tally testnet: %s\n", tally_err_text(&err));
        return 1;
    }
    int status = 1;
    long started[CONFIG_MAX_REPLICAS] = {0}; /* by this run: stopped again on failure */
    for (uint32_t i = 0; i < cfg.n; i++) {
        long pid = testnet_running_pid(o->dir, i);
        if (pid > 0) {
            if (!o->json)
                printf("replica %u already running (pid %ld)\n", i, pid);
            continue;
        }
        pid = spawn_replica(tallyd, o->dir, i);
        if (pid < 0)
            goto out;
        started[i] = pid;
        if (write_pid(o->dir, i, pid) != 0) {
            fprintf(stderr, "tally testnet: cannot write the pid file of replica %u\n", i);
            goto out;
        }
    }
    /* Wait until every replica answers STATUS, or one of them died. */
    uint64_t deadline = mono_now_ms() + o->wait_ms;
    struct client *cl = NULL;
    if (client_open(&cfg, &cl, &err) != 0) {
        fprintf(stderr, "tally testnet: %s\n", tally_err_text(&err));
        goto out;
    }
    uint32_t up = 0;
    for (;;) {
        char *texts[CONFIG_MAX_REPLICAS] = {0};
        up = client_status_all(cl, 300, texts);
        for (uint32_t i = 0; i < cfg.n; i++)
            free(texts[i]);
        if (up == cfg.n)
            break;
        for (uint32_t i = 0; i < cfg.n; i++) {
            int ws;
            /* Reap children that exited (they are ours: we forked them). */
            while (waitpid(-1, &ws, WNOHANG) > 0)
                ;
            if (testnet_running_pid(o->dir, i) == 0) {
                char why[512];
                last_log_line(o->dir, i, why, sizeof(why));
                fprintf(stderr, "tally testnet: replica %u exited%s%s (see %s/replica-%u.log)\n", i,
                        why[0] ? ": " : "", why, o->dir, i);
                client_close(cl);
                goto out;
            }
        }
        if (mono_now_ms() >= deadline) {
            fprintf(stderr, "tally testnet: only %u of %u replicas answered within %llu ms\n", up,
                    cfg.n, (unsigned long long)o->wait_ms);
            client_close(cl);
            goto out;
        }
        sleep_ms(50);
    }
    client_close(cl);
    if (o->json) {
        json_t *pids = json_array();
        for (uint32_t i = 0; i < cfg.n; i++)
            json_array_append_new(pids, json_integer(testnet_running_pid(o->dir, i)));
        json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:o}", "dir", o->dir, "cluster_file", cluster,
                              "n", (json_int_t)cfg.n, "up", (json_int_t)up, "pids", pids);
        char *t = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
        if (t != NULL)
            printf("%s\n", t);
        free(t);
        json_decref(j);
    } else {
        printf("testnet %s: %u replicas running\n", o->dir, cfg.n);
        for (uint32_t i = 0; i < cfg.n; i++)
            printf("  replica %u  pid %-7ld client %s  log %s/replica-%u.log\n", i,
                   testnet_running_pid(o->dir, i), cfg.replicas[i].client_address, o->dir, i);
        printf("cluster: %s\n", cluster);
    }
    status = 0;
out:
    if (status != 0)
        stop_started(o->dir, started, cfg.n);
    config_free(&cfg);
    return status;
}

int testnet_stop(const char *dir, uint64_t wait_ms, bool json)
{
    char cluster[PATH_MAX];
    struct stat st;
    if (stat(dir, &st) != 0) {
        fprintf(stderr, "tally testnet stop: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "tally testnet stop: %s is not a directory\n", dir);
        return 1;
    }
    if (snprintf(cluster, sizeof(cluster), "%s/cluster.json", dir) >= (int)sizeof(cluster) ||
        access(cluster, F_OK) != 0) {
        fprintf(stderr, "tally testnet stop: %s is not a testnet directory (no cluster.json)\n",
                dir);
        return 1;
    }
    long pids[CONFIG_MAX_REPLICAS] = {0};
    uint32_t found = 0, killed = 0;
    for (uint32_t i = 0; i < CONFIG_MAX_REPLICAS; i++) {
        pids[i] = testnet_running_pid(dir, i);
        if (pids[i] > 0) {
            kill((pid_t)pids[i], SIGTERM);
            found++;
        }
    }
    uint64_t deadline = mono_now_ms() + wait_ms;
    for (;;) {
        uint32_t alive = 0;
        for (uint32_t i = 0; i < CONFIG_MAX_REPLICAS; i++)
            if (pids[i] > 0 && pid_is_tallyd(pids[i]))
                alive++;
        if (alive == 0 || mono_now_ms() >= deadline)
            break;
        sleep_ms(20);
    }
    for (uint32_t i = 0; i < CONFIG_MAX_REPLICAS; i++) {
        if (pids[i] > 0 && pid_is_tallyd(pids[i])) {
            fprintf(stderr, "tally testnet: replica %u (pid %ld) did not stop: SIGKILL\n", i,
                    pids[i]);
            kill((pid_t)pids[i], SIGKILL);
            killed++;
        }
        char path[PATH_MAX];
        if (pids[i] > 0 && path_in(path, sizeof(path), dir, "replica-%u.pid", i) == 0)
            unlink(path);
    }
    if (json)
        printf("{\"stopped\":%u,\"killed\":%u}\n", found, killed);
    else
        printf("testnet %s: stopped %u replica%s%s\n", dir, found, found == 1 ? "" : "s",
               killed > 0 ? " (some with SIGKILL)" : "");
    return 0;
}
