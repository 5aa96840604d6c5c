/* ops.c — the numeric primitives of the engine: products over aq_sgemm (src/blas/sgemm.h), RMSNorm
 * (also per head: Qwen3's q/k norm), HF rotate-half RoPE and a linear layer
 * (with its bias) or its quantized override. */
#include <blis.h>
#include <math.h>
#include <string.h>

#include "../quant/quant.h"
#include "ops.h"

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

/* exp(x) for x <= 0, 4 lanes at a time with GCC/clang vector extensions
 * (16-byte vectors: baseline SSE2 on x86-64, NEON on arm64). Cephes expf:
 * x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial for e^r, times 2^n built in
 * the exponent bits; relative error ~1e-7 (2 ulp). Inputs below -87 give
 * ~1e-38 instead of 0, which no softmax sum can notice. */
typedef float aq_v4f __attribute__((vector_size(16)));
typedef int aq_v4i __attribute__((vector_size(16)));

static inline aq_v4f exp4(aq_v4f x)
{
    const aq_v4f lo = {-87.0f, -87.0f, -87.0f, -87.0f};
    aq_v4i below = x < lo; /* -1 in lanes to clamp */
    x = (aq_v4f)(((aq_v4i)x & ~below) | ((aq_v4i)lo & below));
    aq_v4f t = x * 1.44269504088896341f;
    aq_v4i n = __builtin_convertvector(t, aq_v4i); /* truncates toward 0 */
    n += __builtin_convertvector(n, aq_v4f) > t;   /* -1 where that rounded up: floor */
    aq_v4f fn = __builtin_convertvector(n, aq_v4f);
    aq_v4f r = x - fn * 0.693359375f + fn * 2.12194440e-4f;
    aq_v4f p = 1.9875691500e-4f * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    return p * (aq_v4f)((n + 127) << 23);
}

static inline aq_v4f vmax(aq_v4f a, aq_v4f b)
{
    aq_v4i gt = a > b;
    return (aq_v4f)(((aq_v4i)a & gt) | ((aq_v4i)b & ~gt));
}

void aq_softmax_prefix(float *row, int n, int len)
{
    /* n4 full lanes, then a tail padded with lanes that are dropped */
    int n4 = n & ~3, j;
    float mx = row[0];
    if (n4) {
        aq_v4f m4;
        memcpy(&m4, row, sizeof m4);
        for (j = 4; j < n4; j += 4) {
            aq_v4f v;
            memcpy(&v, row + j, sizeof v);
            m4 = vmax(m4, v);
        }
        mx = fmaxf(fmaxf(m4[0], m4[1]), fmaxf(m4[2], m4[3]));
    }
    for (j = n4; j < n; j++)
        mx = row[j] > mx ? row[j] : mx;
    aq_v4f acc = {0.0f, 0.0f, 0.0f, 0.0f};
    for (j = 0; j < n4; j += 4) {
        aq_v4f v;
        memcpy(&v, row + j, sizeof v);
        v = exp4(v - mx);
        memcpy(row + j, &v, sizeof v);
        acc += v;
    }
    double sum = (double)(acc[0] + acc[1]) + (double)(acc[2] + acc[3]);
    if (n4 < n) {
        aq_v4f v = {0.0f, 0.0f, 0.0f, 0.0f};
        for (j = n4; j < n; j++)
            v[j - n4] = row[j] - mx;
        v = exp4(v);
        for (j = n4; j < n; j++) {
            row[j] = v[j - n4];
            sum += row[j];
        }
    }
    float inv = (float)(1.0 / sum);
    for (j = 0; j < n4; j += 4) {
        aq_v4f v;
        memcpy(&v, row + j, sizeof v);
        v *= inv;
        memcpy(row + j, &v, sizeof v);
    }
    for (j = n4; j < n; j++)
        row[j] *= inv;
    if (len > n) memset(row + n, 0, (size_t)(len - n) * sizeof(float));
}

void aq_attend_seq(const aq_model *m, const float *q, const float *k, const float *v, float *out,
                   float *scores, int L)
{
    int hs = m->hs, qd = m->qd, kvd = m->kvd, group = m->cfg.n_heads / m->cfg.n_kv_heads;
    float alpha = 1.0f / sqrtf((float)hs);
    for (int h = 0; h < m->cfg.n_heads; h++) {
        const float *qh = q + (size_t)h * hs, *kh = k + (size_t)(h / group) * hs,
                    *vh = v + (size_t)(h / group) * hs;
        float *o = out + (size_t)h * hs;
        /* scores[L, L] = alpha * Q_h K_h^T (strided views into q and k) */
        aq_sgemm(0, 1, L, L, hs, alpha, qh, qd, 1, kh, kvd, 1, 0.0f, scores, L, 1);
        for (int i = 0; i < L; i++)
            aq_softmax_prefix(scores + (size_t)i * L, i + 1, L); /* causal mask: j > i -> 0 */
        aq_sgemm(0, 0, L, hs, L, 1.0f, scores, L, 1, vh, kvd, 1, 0.0f, o, qd, 1);
    }
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

/* Rotate every head's halves (a, b) by the position's angle: dir = +1 the
 * forward rotation, -1 its inverse (the transpose). Multiplying by +-1 is
 * exact, so the forward's bits do not depend on the shared code. */
static void rope_rotate(const aq_model *m, float *x, size_t n, int n_heads, const int *pos, float dir)
{
    int hs = m->hs, half = hs / 2;
    for (size_t r = 0; r < n; r++) {
        const float *c = m->rope_cos + (size_t)pos[r] * half,
                    *s = m->rope_sin + (size_t)pos[r] * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + r * (size_t)n_heads * hs + (size_t)h * hs;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - (dir * b) * s[i];
                v[i + half] = b * c[i] + (dir * a) * s[i];
            }
        }
    }
}

void aq_rope_rows(const aq_model *m, float *x, size_t n, int n_heads, const int *pos)
{
    rope_rotate(m, x, n, n_heads, pos, 1.0f);
}

void aq_rope_rows_inv(const aq_model *m, float *x, size_t n, int n_heads, const int *pos)
{
    rope_rotate(m, x, n, n_heads, pos, -1.0f);
}

void aq_model_qk_norm(const aq_model *m, int block, int which, float *x, size_t n)
{
    const float *g = aq_model_qk_norm_gain(m, block, which);
    int heads = which ? m->cfg.n_kv_heads : m->cfg.n_heads;
    /* every head of every row is one RMSNorm row of hs (in place is safe:
     * each element is read before it is written) */
    if (g) aq_rmsnorm_rows(x, g, x, n * (size_t)heads, m->hs, m->cfg.norm_eps);
}

void aq_model_apply_linear(aq_model *m, int block, aq_linear which, const float *x, float *y,
                           size_t n, int quantized, float *xq_buf)
{
    int d_out, d_in;
    aq_model_lin_shape(m, which, &d_out, &d_in);
    const aq_ovr *ov = quantized ? &m->ovr[aq_model_lin_index(m, block, which)] : NULL;
    if (!ov || !ov->weight) {
        aq_sgemm_xwt(x, aq_model_lin_weight(m, block, which), y, n, d_in, d_out);
        const float *b = aq_model_linear_bias(m, block, which);
        for (size_t r = 0; b && r < n; r++)
            for (int j = 0; j < d_out; j++)
                y[r * (size_t)d_out + j] += b[j];
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
