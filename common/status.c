/* status.c — formatting of aq_error records (see status.h). */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

aq_status aq_fail(aq_error *err, aq_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

void aq_error_prefix(aq_error *err, const char *fmt, ...)
{
    if (!err) return;
    char ctx[AQ_ERROR_MSG_MAX], old[AQ_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = '\0';
    /* Truncation of very long messages is acceptable: keep the context. */
    size_t n = strlen(ctx);
    if (n > sizeof err->msg - 3) n = sizeof err->msg - 3;
    memcpy(err->msg, ctx, n);
    err->msg[n] = ':';
    err->msg[n + 1] = ' ';
    size_t room = sizeof err->msg - n - 2;
    size_t m = strlen(old);
    if (m >= room) m = room - 1;
    memcpy(err->msg + n + 2, old, m);
    err->msg[n + 2 + m] = '\0';
}

const char *aq_status_name(aq_status code)
{
    switch (code) {
    case AQ_OK: return "ok";
    case AQ_ERR_IO: return "I/O error";
    case AQ_ERR_FORMAT: return "format error";
    case AQ_ERR_ARG: return "invalid argument";
    case AQ_ERR_NOMEM: return "out of memory";
    case AQ_ERR_SHAPE: return "shape mismatch";
    case AQ_ERR_NUMERIC: return "numeric error";
    case AQ_ERR_INFEASIBLE: return "infeasible";
    case AQ_ERR_SOLVER: return "solver error";
    case AQ_ERR_MPI: return "distributed error";
    case AQ_ERR_NOTFOUND: return "not found";
    case AQ_ERR_INTERNAL: return "internal error";
    }
    return "unknown error";
}

aq_status aq_fail_nomem(aq_error *err, const char *what, size_t bytes)
{
    return aq_fail(err, AQ_ERR_NOMEM, "out of memory allocating %zu bytes for %s", bytes, what);
}
