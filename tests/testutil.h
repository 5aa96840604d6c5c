/* testutil.h — tiny assertion helpers and asset lookup shared by the C tests.
 * A failed check prints file:line and the expression, and the test exits 1
 * at the end (AQ_TEST_END). A missing asset exits 77 (ctest: skipped). */
#ifndef AQ_TESTUTIL_H
#define AQ_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../common/status.h"

extern int aq_test_failures;

/* 1 in an AddressSanitizer build (gcc defines __SANITIZE_ADDRESS__, clang has
 * __has_feature): tests whose cost is many random instances run fewer there,
 * the other passes run them all. */
#if defined(__SANITIZE_ADDRESS__)
#define AQ_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AQ_TEST_SANITIZED 1
#endif
#endif
#ifndef AQ_TEST_SANITIZED
#define AQ_TEST_SANITIZED 0
#endif

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            aq_test_failures++;                                                                    \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            aq_test_failures++;                                                                    \
        }                                                                                          \
    } while (0)

/* |a-b| <= tol * max(1, |b|) */
#define CHECK_CLOSE(a, b, tol)                                                                     \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        if (!(fabs(a_ - b_) <= (tol) * fmax(1.0, fabs(b_)))) {                                     \
            fprintf(stderr, "%s:%d: CHECK_CLOSE failed: %s=%.10g vs %s=%.10g (tol %g)\n",          \
                    __FILE__, __LINE__, #a, a_, #b, b_, (double)(tol));                            \
            aq_test_failures++;                                                                    \
        }                                                                                          \
    } while (0)

/* The call must succeed; prints the aq_error message otherwise. */
#define CHECK_OK(expr, errp)                                                                       \
    do {                                                                                           \
        aq_status s_ = (expr);                                                                     \
        if (s_ != AQ_OK) {                                                                         \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, (errp)->msg);    \
            aq_test_failures++;                                                                    \
        }                                                                                          \
    } while (0)

#define AQ_TEST_END()                                                                              \
    do {                                                                                           \
        if (aq_test_failures) {                                                                    \
            fprintf(stderr, "%d check(s) failed\n", aq_test_failures);                             \
            return 1;                                                                              \
        }                                                                                          \
        printf("all checks passed\n");                                                             \
        return 0;                                                                                  \
    } while (0)

/* Path of an asset under ../shared (AQ_SHARED_DIR); exits 77 with a message
 * naming it when absent. Returns a static-lifetime malloc'd string. */
char *aq_test_asset(const char *relpath);
/* A fresh temporary directory (removed by the caller or left in /tmp). */
char *aq_test_tmpdir(const char *tag);
/* The whole file, malloc'd with a NUL after the last byte (caller frees);
 * *len = its size. NULL (and *len = 0) if it cannot be read. */
unsigned char *aq_test_read_file(const char *path, size_t *len);
/* Entries of a directory other than "." and ".." (0 if it cannot be opened):
 * e.g. that a failed atomic write left no temporary file. */
int aq_test_count_entries(const char *dir);
/* Non-zero if /usr/bin/python3 can import numpy. */
int aq_test_have_numpy(void);
/* Deterministic test randomness (xorshift64*): uniform in (0, 1) and standard
 * normal (Box-Muller), advancing *state (any non-zero seed). */
uint64_t aq_test_u64(uint64_t *state); /* the raw 64-bit draw (random bit patterns) */
double aq_test_urand(uint64_t *state);
double aq_test_nrand(uint64_t *state);
/* Uniform integer in [0, n) (n >= 1) and uniform float in [-0.5, 0.5), from
 * the same stream.
 * Every C test draws its random data from these (issue 13: one generator). */
int aq_test_irand(uint64_t *state, int n);
float aq_test_frand(uint64_t *state);

#endif
