#include "src/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

int tally_log_threshold = TALLY_LOG_INFO;
static char log_tag[32] = "tally";
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

void tally_log_set_level(enum tally_log_level level)
{
    tally_log_threshold = (int)level;
}

void tally_log_init(const char *tag)
{
    if (tag != NULL)
        snprintf(log_tag, sizeof(log_tag), "%s", tag);
    const char *env = getenv("TALLY_LOG");
    if (env == NULL)
        return;
    if (strcasecmp(env, "debug") == 0)
        tally_log_set_level(TALLY_LOG_DEBUG);
    else if (strcasecmp(env, "info") == 0)
        tally_log_set_level(TALLY_LOG_INFO);
    else if (strcasecmp(env, "warn") == 0)
        tally_log_set_level(TALLY_LOG_WARN);
    else if (strcasecmp(env, "error") == 0)
        tally_log_set_level(TALLY_LOG_ERROR);
}

void tally_log_write(enum tally_log_level level, const char *id, const char *fmt, ...)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[32];
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "%s.%03ldZ %s [%s] %s %s\n", stamp, ts.tv_nsec / 1000000L, level_names[level],
            log_tag, id, line);
    pthread_mutex_unlock(&log_lock);
}
