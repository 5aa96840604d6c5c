/* align.c — an aligned view of a layer problem. Callers may hand aq_layer_run
 * tensor data straight from a file or result payload, where a float or double
 * array can start at any byte offset; reading it through a typed pointer is
 * undefined behaviour (UBSan: misaligned load). Arrays whose address is not a
 * multiple of their element size are copied (memcpy) into aligned buffers;
 * aligned arrays are used in place, so the usual case costs nothing. The
 * copy is bytewise, so results do not depend on the input's alignment. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layer_state.h"

static int misaligned(const void *ptr, size_t align) { return ptr && (uintptr_t)ptr % align != 0; }

/* n * k elements, or 0 when the product overflows (reported as a shape error). */
static size_t mul_ok(size_t n, size_t k, int *ovf)
{
    if (k && n > SIZE_MAX / 16 / k) {
        *ovf = 1;
        return 0;
    }
    return n * k;
}

/* src itself when aligned for element size es (or empty), else a malloc'd
 * copy recorded in owned[*k]; NULL with *fail set when out of memory. */
static const void *aligned(const void *src, size_t n, size_t es, void **owned, int *k, size_t *fail)
{
    if (!misaligned(src, es) || n == 0) return src;
    void *buf = malloc(n * es);
    if (!buf) {
        if (!*fail) *fail = n * es;
        return NULL;
    }
    memcpy(buf, src, n * es);
    owned[(*k)++] = buf;
    return buf;
}

aq_status aq_problem_align(const aq_layer_problem *in, aq_layer_problem *out, void **owned, aq_error *err)
{
    const char *nm = in->name ? in->name : "layer";
    int k = 0, ovf = 0;
    size_t fail = 0;
    *out = *in;
    for (int i = 0; i < AQ_PROBLEM_ARRAYS; i++) owned[i] = NULL;
    size_t D = in->d_in + 1;
    size_t nw = mul_ok(in->d_out, in->d_in, &ovf), nx = mul_ok(in->n_rows, in->d_in, &ovf);
    size_t ng = mul_ok(D, D, &ovf), ns = mul_ok(in->n_sample, in->d_in, &ovf);
    if (ovf || in->d_in == SIZE_MAX)
        return aq_fail(err, AQ_ERR_SHAPE, "layer %s: sizes overflow (d_out %zu, d_in %zu, N %zu, sample %zu)", nm,
                       in->d_out, in->d_in, in->n_rows, in->n_sample);
    const size_t F = sizeof(float), G = sizeof(double);
    out->weight = aligned(in->weight, nw, F, owned, &k, &fail);
    out->bias = aligned(in->bias, in->d_out, F, owned, &k, &fail);
    out->x = aligned(in->x, nx, F, owned, &k, &fail);
    /* an array passed twice (x_in == x: parallel mode) stays one array: the
     * driver tests that identity (aq_grams_from_rows aliases B = C = A) */
    out->x_in = in->x_in == in->x ? out->x : aligned(in->x_in, nx, F, owned, &k, &fail);
    out->gram_a = aligned(in->gram_a, ng, G, owned, &k, &fail);
    out->gram_b = in->gram_b == in->gram_a ? out->gram_a : aligned(in->gram_b, ng, G, owned, &k, &fail);
    out->gram_c = in->gram_c == in->gram_a ? out->gram_a
                  : in->gram_c == in->gram_b ? out->gram_b
                                             : aligned(in->gram_c, ng, G, owned, &k, &fail);
    out->sample_x = aligned(in->sample_x, ns, F, owned, &k, &fail);
    out->sample_x_in = in->sample_x_in == in->sample_x ? out->sample_x
                                                       : aligned(in->sample_x_in, ns, F, owned, &k, &fail);
    if (fail) {
        aq_problem_align_free(owned);
        *out = *in;
        return aq_fail_nomem(err, "aligned copy of a misaligned input array", fail);
    }
    return AQ_OK;
}

void aq_problem_align_free(void **owned)
{
    for (int i = 0; i < AQ_PROBLEM_ARRAYS; i++) {
        free(owned[i]);
        owned[i] = NULL;
    }
}
