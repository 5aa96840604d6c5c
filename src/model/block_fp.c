/* block_fp.c — FP residuals at block boundaries (block_fp.h), batch by batch
 * through the engine's resumable forward. */
#include "block_fp.h"

#include <string.h>

#include "model_internal.h"

/* The start residual of rows [r0, r0 + n) into y. */
static void start_rows(const aq_model *m, const int *tokens, const float *x_in, size_t r0, size_t n, float *y)
{
    size_t D = (size_t)m->cfg.dim;
    if (x_in) {
        memmove(y + r0 * D, x_in + r0 * D, n * D * sizeof(float));
        return;
    }
    float *dst = y + r0 * D;
    for (size_t i = 0; i < n; i++, dst += D) memcpy(dst, m->embed + (size_t)tokens[r0 + i] * D, D * sizeof *dst);
}

aq_status aq_block_run(aq_model *m, const int *tokens, const int *lens, int n_seqs, int first, int last,
                       int quantized, const float *x_in, float *y, size_t max_rows, aq_error *err)
{
    int L = m->cfg.n_layers;
    if (first < 0 || first > L || last < first - 1 || last >= L || (!x_in && first != 0))
        return aq_fail(err, AQ_ERR_ARG, "block forward: blocks %d..%d of %d (from %s)", first, last, L,
                       x_in ? "a residual" : "the embedding");
    size_t cap = max_rows ? max_rows : 4096, D = (size_t)m->cfg.dim, r0 = 0;
    aq_forward_opts o;
    aq_forward_opts_default(&o);
    o.stop_after_block = last;
    o.quantized = quantized;
    for (int s0 = 0; s0 < n_seqs;) {
        int nb = 0;
        size_t rows = 0;
        while (s0 + nb < n_seqs && (nb == 0 || rows + (size_t)lens[s0 + nb] <= cap)) rows += (size_t)lens[s0 + nb++];
        if (last < first) {
            start_rows(m, tokens, x_in, r0, rows, y);
        } else {
            aq_forward_resume r = {first, x_in ? x_in + r0 * D : NULL, NULL};
            AQ_TRY(aq_model_forward_resume(m, tokens + r0, lens + s0, nb, &o, &r, NULL, err));
            memcpy(y + r0 * D, m->s.x, rows * D * sizeof(float)); /* the residual after block `last` */
        }
        r0 += rows;
        s0 += nb;
    }
    return AQ_OK;
}
