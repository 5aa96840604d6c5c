/* benchutil.h — the clocks and the error exit every benchmark uses
 * (header-only: benchmarks are single files). */
#ifndef AQ_BENCHUTIL_H
#define AQ_BENCHUTIL_H

#include <stdio.h>
#include <time.h>

#include "../common/status.h"

/* Process CPU seconds: single-threaded figures that other jobs on a shared
 * machine disturb far less than wall time. */
static inline double aq_bench_cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Monotonic wall seconds (multi-process or I/O-bound figures). */
static inline double aq_bench_wall_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Print "PROG: WHAT: message" to stderr; returns the exit status 1. */
static inline int aq_bench_fail(const char *prog, const char *what, const aq_error *err)
{
    fprintf(stderr, "%s: %s: %s\n", prog, what, err->msg);
    return 1;
}

#endif
