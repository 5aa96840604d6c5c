/* status.h — the one error convention of adaquant.
 *
 * Every fallible function returns an aq_status and takes an `aq_error *err`
 * as its last argument. On failure it fills err with a human sentence that
 * says what was wrong and where (file, byte offset, tensor, layer, rank),
 * and returns the non-zero code. On success err is left untouched.
 * Callers propagate with AQ_TRY (plain return) or AQ_TRY_GOTO (cleanup).
 * Callers add context with aq_error_prefix ("model.bin: " + inner message).
 *
 * This folder (common/) is the foundation layer: every other folder may use
 * it, it uses nothing of ours. It holds no global mutable state. */
#ifndef AQ_STATUS_H
#define AQ_STATUS_H

#include <stddef.h>

#if defined(__GNUC__)
#define AQ_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define AQ_PRINTF(a, b)
#endif

typedef enum aq_status {
    AQ_OK = 0,
    AQ_ERR_IO,         /* open/read/write/rename failed */
    AQ_ERR_FORMAT,     /* malformed or truncated file contents */
    AQ_ERR_ARG,        /* bad argument or option from the user or caller */
    AQ_ERR_NOMEM,      /* allocation failed */
    AQ_ERR_SHAPE,      /* tensor shape or size mismatch */
    AQ_ERR_NUMERIC,    /* NaN/Inf or a numerically impossible problem */
    AQ_ERR_INFEASIBLE, /* a budget or constraint set that cannot be met */
    AQ_ERR_SOLVER,     /* the MIP solver failed or hit a limit */
    AQ_ERR_MPI,        /* a distributed failure: a rank died, a collective failed */
    AQ_ERR_NOTFOUND,   /* a named tensor, layer or file is missing */
    AQ_ERR_INTERNAL    /* a bug: an invariant did not hold */
} aq_status;

#define AQ_ERROR_MSG_MAX 1024

/* An error record. Zero-initialise it (aq_error e = {0};). */
typedef struct aq_error {
    aq_status code;
    char msg[AQ_ERROR_MSG_MAX];
} aq_error;

/* Record a failure: formats fmt into err->msg, sets err->code = code and
 * returns code, so `return aq_fail(err, AQ_ERR_FORMAT, "...", ...);` reads
 * naturally. err may be NULL (the message is then dropped). */
aq_status aq_fail(aq_error *err, aq_status code, const char *fmt, ...) AQ_PRINTF(3, 4);

/* Prepend context to an existing message: "<context>: <old message>". */
void aq_error_prefix(aq_error *err, const char *fmt, ...) AQ_PRINTF(2, 3);

/* A short name of a code ("format error", "I/O error", ...). */
const char *aq_status_name(aq_status code);

/* Out-of-memory failure, with what was being allocated. */
aq_status aq_fail_nomem(aq_error *err, const char *what, size_t bytes);

#define AQ_TRY(expr)                                                                               \
    do {                                                                                           \
        aq_status aq_s_ = (expr);                                                                  \
        if (aq_s_ != AQ_OK) return aq_s_;                                                          \
    } while (0)

/* For functions with cleanup: `AQ_TRY_GOTO(st, f(...), done);` */
#define AQ_TRY_GOTO(st, expr, label)                                                               \
    do {                                                                                           \
        (st) = (expr);                                                                             \
        if ((st) != AQ_OK) goto label;                                                             \
    } while (0)

#endif
