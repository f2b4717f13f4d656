/* CLOCK_MONOTONIC: the time of timed waits, timers and measurements, so that
 * a wall-clock step (NTP, an operator) neither stalls nor cuts short a
 * pthread_cond_timedwait nor skews a latency. Prefix: mono_. */
#ifndef TALLY_MONO_H
#define TALLY_MONO_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* pthread_cond_init for a condition variable timed on CLOCK_MONOTONIC. */
int mono_cond_init(pthread_cond_t *c);
/* CLOCK_MONOTONIC now plus ms (or us): the deadline of a timed wait on such
 * a condition variable. */
struct timespec mono_deadline(uint64_t ms);
struct timespec mono_deadline_us(uint64_t us);
/* CLOCK_MONOTONIC now, in microseconds, milliseconds or seconds. */
uint64_t mono_now_us(void);
uint64_t mono_now_ms(void);
double mono_now_s(void);

#endif
