/* ops.c — the numeric primitives of the engine: the BLIS matrix product, RMSNorm,
 * HF rotate-half RoPE and a linear layer with its optional quantized override. */
#include <blis.h>
#include <math.h>
#include <string.h>

#include "../quant/quant.h"
#include "model_internal.h"

void aq_sgemm(int ta, int tb, long m, long n, long k, float alpha, const float *a, long rsa,
              long csa, const float *b, long rsb, long csb, float beta, float *c, long rsc,
              long csc)
{
    /* BLIS's small-matrix ("sup") path picks kernels by matrix shape, so a
     * row's result would depend on how many other rows share the call. With
     * it disabled every output element is accumulated in the same order
     * whatever m is: a token's activations do not depend on the batch it is
     * in, which makes capture statistics reproducible across batchings. */
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(1, &rntm);
    bli_rntm_disable_l3_sup(&rntm);
    /* the typed API takes non-const pointers but does not write A or B */
    bli_sgemm_ex(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 m, n, k, &alpha, (float *)a, rsa, csa, (float *)b, rsb, csb, &beta, c, rsc, csc,
                 NULL, &rntm);
}

void aq_sgemm_xwt(const float *x, const float *w, float *y, size_t n, int d_in, int d_out)
{
    if (n == 0) return;
    aq_sgemm(0, 1, (long)n, d_out, d_in, 1.0f, x, d_in, 1, w, d_in, 1, 0.0f, y, d_out, 1);
}

void aq_sgemv_wx(const float *w, const float *x, float *y, int d_in, int d_out)
{
    float one = 1.0f, zero = 0.0f;
    bli_sgemv(BLIS_NO_TRANSPOSE, BLIS_NO_CONJUGATE, d_out, d_in, &one, (float *)w, d_in, 1,
              (float *)x, 1, &zero, y, 1);
}

void aq_rmsnorm_rows(const float *x, const float *g, float *out, size_t n, int d, float eps)
{
    for (size_t r = 0; r < n; r++) {
        const float *xr = x + r * (size_t)d;
        float *o = out + r * (size_t)d;
        double ss = 0.0;
        for (int i = 0; i < d; i++)
            ss += (double)xr[i] * xr[i];
        float inv = (float)(1.0 / sqrt(ss / d + (double)eps));
        for (int i = 0; i < d; i++)
            o[i] = g[i] * (xr[i] * inv);
    }
}

void aq_rope_rows(const aq_model *m, float *x, size_t n, int n_heads, const int *pos)
{
    int hs = m->hs, half = hs / 2;
    for (size_t r = 0; r < n; r++) {
        const float *c = m->rope_cos + (size_t)pos[r] * half,
                    *s = m->rope_sin + (size_t)pos[r] * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + r * (size_t)n_heads * hs + (size_t)h * hs;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

void aq_model_apply_linear(aq_model *m, int block, aq_linear which, const float *x, float *y,
                           size_t n, int quantized, float *xq_buf)
{
    int d_out, d_in;
    aq_model_lin_shape(m, which, &d_out, &d_in);
    const aq_ovr *ov = quantized ? &m->ovr[aq_model_lin_index(m, block, which)] : NULL;
    if (!ov || !ov->weight) {
        aq_sgemm_xwt(x, aq_model_lin_weight(m, block, which), y, n, d_in, d_out);
        return;
    }
    const float *in = x;
    if (ov->a_bits > 0) {
        /* the qlayer formula: x^ = s * (clamp(rne(x/s) + z, 0, 2^b - 1) - z) */
        aq_fake_quant(x, n * (size_t)d_in, ov->a_scale, ov->a_zero, ov->a_bits, xq_buf);
        in = xq_buf;
    }
    aq_sgemm_xwt(in, ov->weight, y, n, d_in, d_out);
    if (ov->bias)
        for (size_t r = 0; r < n; r++)
            for (int j = 0; j < d_out; j++)
                y[r * (size_t)d_out + j] += ov->bias[j];
}
