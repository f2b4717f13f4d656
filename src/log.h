/* A levelled logger that formats nothing when the level is off.
 *
 * Lines: "2026-11-22T23:59:38.123Z INFO  [r1] L0102 message". The replica tag is
 * set once per process; message ids are stable ("L" + 4 digits) so operators can
 * grep for them. Level from TALLY_LOG=debug|info|warn|error (default info). */
#ifndef TALLY_LOG_H
#define TALLY_LOG_H

enum tally_log_level { TALLY_LOG_DEBUG, TALLY_LOG_INFO, TALLY_LOG_WARN, TALLY_LOG_ERROR };

extern int tally_log_threshold;

void tally_log_init(const char *tag);
void tally_log_set_level(enum tally_log_level level);
void tally_log_write(enum tally_log_level level, const char *id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define TALLY_LOG(level, id, ...)                                                                  \
    do {                                                                                           \
        if ((int)(level) >= tally_log_threshold)                                                   \
            tally_log_write((level), (id), __VA_ARGS__);                                           \
    } while (0)
#define LOG_DEBUG(id, ...) TALLY_LOG(TALLY_LOG_DEBUG, id, __VA_ARGS__)
#define LOG_INFO(id, ...) TALLY_LOG(TALLY_LOG_INFO, id, __VA_ARGS__)
#define LOG_WARN(id, ...) TALLY_LOG(TALLY_LOG_WARN, id, __VA_ARGS__)
#define LOG_ERROR(id, ...) TALLY_LOG(TALLY_LOG_ERROR, id, __VA_ARGS__)

#endif
