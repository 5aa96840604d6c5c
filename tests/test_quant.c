/* test_quant.c — quantizer kernels (src/quant/quant.c) against a float64
 * reimplementation of the conventions written in quant.h, known answers for
 * round-half-even ties and degenerate inputs, and properties of the MSE
 * clipping search (never worse than min/max, strictly better on heavy tails,
 * at least as good as every ratio of a coarse grid evaluated here). */
#include <float.h>
#include <stdint.h>
#include <string.h>

#include "../src/quant/quant.h"
#include "testutil.h"

/* ---- random numbers (xorshift64*, Box-Muller) ---- */
static uint64_t rng_state = 0x243F6A8885A308D3ull;
static double urand(void) { return aq_test_urand(&rng_state); } /* (0, 1) */
static double nrand(void) { return aq_test_nrand(&rng_state); }
static double laplace(void)
{
    return urand() < 0.5 ? log(urand()) : -log(urand());
}
static double student_t3(void)
{
    double z = nrand(), c = 0;
    for (int i = 0; i < 3; i++) {
        double g = nrand();
        c += g * g;
    }
    return z / sqrt(c / 3.0);
}

/* ---- float64 reference of quant.h ---- */
typedef struct {
    double scale, zero;
} ref_grid;

static double qmaxd(int bits)
{
    return (double)((1 << bits) - 1);
}

/* min/max grid per quant.h: range extended to include 0; scale rounded to
 * float once; zero = round(-lo/scale) clamped. */
static ref_grid ref_minmax(const float *x, size_t n, int bits, int sym)
{
    double lo = 0, hi = 0;
    for (size_t i = 0; i < n; i++) {
        lo = fmin(lo, x[i]);
        hi = fmax(hi, x[i]);
    }
    ref_grid g;
    if (sym) {
        g.zero = ldexp(1.0, bits - 1);
        g.scale = (float)(fmax(-lo, hi) / (g.zero - 1.0));
    } else {
        g.scale = (float)((hi - lo) / qmaxd(bits));
        g.zero = fmin(fmax(nearbyint(-lo / g.scale), 0.0), qmaxd(bits));
    }
    return g;
}

/* Code of x: t = fl32(x / scale) (the double quotient rounded to float equals
 * the correctly rounded float quotient), round half even, + zero, clamp. */
static int ref_code(float x, ref_grid g, int bits)
{
    double t = (float)((double)x / g.scale);
    double q = nearbyint(t) + g.zero;
    return (int)fmin(fmax(q, 0.0), qmaxd(bits));
}
static float ref_deq(int u, ref_grid g)
{
    return (float)(g.scale * (u - g.zero));
}

static double ref_sse(const float *x, size_t n, ref_grid g, int bits)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)x[i] - (double)ref_deq(ref_code(x[i], g, bits), g);
        s += d * d;
    }
    return s;
}

static void fill(float *x, size_t n, int kind)
{
    double off = kind == 2 ? 3.0 : (kind == 3 ? -2.0 : 0.0);
    for (size_t i = 0; i < n; i++) {
        double v = kind == 1 ? urand() * 2 - 1 : nrand();
        x[i] = (float)(v * 0.7 + off); /* kind 2: all positive-ish, 3: negative-ish */
    }
}

/* RTN with min/max ranges: codes and reconstructions equal the reference
 * element-wise; error <= scale/2 inside the range; per-row API matches. */
static void test_rtn(void)
{
    enum { R = 7, C = 173 };
    static float w[R * C], out[R * C], fq[R * C], sc[R], zp[R];
    static uint8_t codes[R * C], codes2[R * C];
    for (int bits = 2; bits <= 8; bits++)
        for (int sym = 0; sym <= 1; sym++)
            for (int kind = 0; kind < 4; kind++) {
                aq_qspec spec = {bits, sym};
                fill(w, R * C, kind);
                /* per tensor */
                float s, z;
                aq_qrange(w, R * C, spec, AQ_RANGE_MINMAX, &s, &z);
                ref_grid g = ref_minmax(w, R * C, bits, sym);
                CHECK_MSG(s == (float)g.scale && z == (float)g.zero,
                          "bits %d sym %d: scale %g/%g zero %g/%g", bits, sym, s, g.scale, z,
                          g.zero);
                aq_quantize(w, R * C, s, z, bits, codes);
                aq_dequantize(codes, R * C, s, z, out);
                memcpy(fq, w, sizeof w);
                aq_fake_quant(fq, R * C, s, z, bits, fq); /* in place */
                int bad = 0;
                double lo = s * (0 - (double)z), hi = s * (qmaxd(bits) - z);
                for (size_t i = 0; i < R * C; i++) {
                    int u = ref_code(w[i], g, bits);
                    if (codes[i] != u || out[i] != ref_deq(u, g) || fq[i] != out[i] ||
                        aq_quantize1(w[i], s, z, bits) != u)
                        bad++;
                    if (w[i] >= lo && w[i] <= hi &&
                        /* half a step, plus the float32 rounding of out = s (u - z) */
                        fabs((double)w[i] - out[i]) > 0.5 * s * (1 + 1e-6))
                        bad++;
                }
                CHECK_MSG(bad == 0, "per-tensor bits %d sym %d kind %d: %d mismatches", bits, sym,
                          kind, bad);
                /* per row */
                aq_qrange_rows(w, R, C, spec, AQ_RANGE_MINMAX, sc, zp);
                aq_quantize_rows(w, R, C, sc, zp, bits, codes2);
                aq_dequantize_rows(codes2, R, C, sc, zp, out);
                bad = 0;
                for (size_t r = 0; r < R; r++) {
                    ref_grid gr = ref_minmax(w + r * C, C, bits, sym);
                    if (sc[r] != (float)gr.scale || zp[r] != (float)gr.zero) bad++;
                    for (size_t c = 0; c < C; c++) {
                        int u = ref_code(w[r * C + c], gr, bits);
                        if (codes2[r * C + c] != u || out[r * C + c] != ref_deq(u, gr)) bad++;
                    }
                }
                CHECK_MSG(bad == 0, "per-row bits %d sym %d kind %d: %d mismatches", bits, sym,
                          kind, bad);
            }
}

/* Ties round half to even; clamping at both ends; NaN -> code 0. */
static void test_known_answers(void)
{
    /* scale 1, zero 8, 4 bits: t = x exactly. */
    CHECK(aq_quantize1(2.5f, 1, 8, 4) == 10); /* 2.5 -> 2 */
    CHECK(aq_quantize1(3.5f, 1, 8, 4) == 12); /* 3.5 -> 4 */
    CHECK(aq_quantize1(-0.5f, 1, 8, 4) == 8); /* -0.5 -> -0 */
    CHECK(aq_quantize1(-1.5f, 1, 8, 4) == 6); /* -1.5 -> -2 */
    CHECK(aq_quantize1(0.5001f, 1, 8, 4) == 9);
    CHECK(aq_quantize1(100.f, 1, 8, 4) == 15); /* clamp high */
    CHECK(aq_quantize1(-100.f, 1, 8, 4) == 0); /* clamp low */
    CHECK(aq_quantize1(1e30f, 1e-30f, 8, 4) == 15);
    CHECK(aq_quantize1(-INFINITY, 1, 8, 4) == 0);
    CHECK(aq_quantize1(NAN, 1, 8, 4) == 0);
    /* The same through the vectorized array paths (9 values: 2 blocks + tail). */
    const float xs[9] = {2.5f, 3.5f, -0.5f, -1.5f, 0.5001f, 100.f, -100.f, -INFINITY, NAN};
    const uint8_t want[9] = {10, 12, 8, 6, 9, 15, 0, 0, 0};
    uint8_t us[9];
    float fq[9];
    for (size_t off = 0; off < 9; off++) { /* every alignment / tail split */
        aq_quantize(xs + off, 9 - off, 1, 8, 4, us);
        CHECK(memcmp(us, want + off, 9 - off) == 0);
        aq_fake_quant(xs + off, 9 - off, 1, 8, 4, fq);
        for (size_t i = 0; i + off < 9; i++)
            CHECK(fq[i] == (float)want[i + off] - 8.0f);
    }
    /* scale 0.5: 0.75/0.5 = 1.5 -> 2; 1.25/0.5 = 2.5 -> 2. */
    CHECK(aq_quantize1(0.75f, 0.5f, 0, 8) == 2);
    CHECK(aq_quantize1(1.25f, 0.5f, 0, 8) == 2);
    CHECK(aq_dequantize1(3, 0.5f, 1) == 1.0f);
    /* asymmetric 2-bit min/max of {-1, 2}: scale 1, zero round(1) = 1. */
    float x[2] = {-1, 2}, s, z;
    aq_qrange(x, 2, (aq_qspec){2, 0}, AQ_RANGE_MINMAX, &s, &z);
    CHECK(s == 1.0f && z == 1.0f);
    /* symmetric 3-bit of {-8, 6}: scale 8/3, zero 4. */
    float y[2] = {-8, 6};
    aq_qrange(y, 2, (aq_qspec){3, 1}, AQ_RANGE_MINMAX, &s, &z);
    CHECK(s == 8.0f / 3.0f && z == 4.0f);
    /* all-positive data: the range is extended down to 0, so zero = 0. */
    float p[3] = {1, 2, 4};
    aq_qrange(p, 3, (aq_qspec){4, 0}, AQ_RANGE_MINMAX, &s, &z);
    CHECK(z == 0.0f && s == 4.0f / 15.0f);
    CHECK(aq_qspec_check((aq_qspec){2, 0}, NULL) == AQ_OK);
    CHECK(aq_qspec_check((aq_qspec){8, 1}, NULL) == AQ_OK);
    aq_error e = {0};
    CHECK(aq_qspec_check((aq_qspec){1, 0}, &e) == AQ_ERR_ARG && strstr(e.msg, "1"));
    CHECK(aq_qspec_check((aq_qspec){9, 0}, NULL) == AQ_ERR_ARG);
}

/* Degenerate inputs: finite nonzero scale, exact reconstruction. */
static void test_degenerate(void)
{
    static const float consts[] = {0.0f, 1.0f, -3.25f, 1e-30f, 7e37f, -1e-3f};
    float x[9], out[9], s, z;
    uint8_t codes[9];
    for (int bits = 2; bits <= 8; bits++)
        for (int sym = 0; sym <= 1; sym++)
            for (int m = 0; m <= 1; m++)
                for (size_t ci = 0; ci < sizeof consts / sizeof consts[0]; ci++)
                    for (size_t n = 0; n <= 9; n += (n == 0 ? 1 : 8)) { /* n = 0, 1, 9 */
                        for (size_t i = 0; i < n; i++)
                            x[i] = consts[ci];
                        aq_qrange(x, n, (aq_qspec){bits, sym}, m ? AQ_RANGE_MSE : AQ_RANGE_MINMAX,
                                  &s, &z);
                        CHECK_MSG(isfinite(s) && s > 0 && z == nearbyintf(z) && z >= 0 &&
                                      z <= (1 << bits) - 1,
                                  "bits %d sym %d c %g n %zu: scale %g zero %g", bits, sym,
                                  consts[ci], n, s, z);
                        if (sym) CHECK(z == (float)(1 << (bits - 1)));
                        if (n == 0 || consts[ci] == 0.0f) CHECK(s == 1.0f);
                        aq_quantize(x, n, s, z, bits, codes);
                        aq_dequantize(codes, n, s, z, out);
                        for (size_t i = 0; i < n; i++)
                            CHECK_MSG(out[i] == x[i], "bits %d sym %d c %g: got %g", bits, sym,
                                      consts[ci], out[i]);
                        /* 0 stays exactly representable */
                        CHECK(aq_dequantize1(aq_quantize1(0.0f, s, z, bits), s, z) == 0.0f);
                    }
    /* Denormal-only input: scale is still a finite normal float. */
    x[0] = 1e-44f, x[1] = -2e-44f;
    aq_qrange(x, 2, (aq_qspec){4, 0}, AQ_RANGE_MSE, &s, &z);
    CHECK(isfinite(s) && s >= FLT_MIN);
    /* Extreme range (documented limit |x| <= 1e37): no overflow to inf. */
    x[0] = -1e37f, x[1] = 1e37f, x[2] = 1.0f;
    for (int sym = 0; sym <= 1; sym++) {
        aq_qrange(x, 3, (aq_qspec){2, sym}, AQ_RANGE_MINMAX, &s, &z);
        CHECK(isfinite(s) && s > 0);
        aq_fake_quant(x, 3, s, z, 2, out);
        CHECK(isfinite(out[0]) && isfinite(out[1]));
    }
}

/* MSE search: never worse than min/max, strictly better on most heavy-tailed
 * vectors, and at least as good as each ratio 1, 0.92, ..., 0.2 evaluated
 * with the float64 reference. */
static void test_mse(void)
{
    enum { N = 1000 };
    static float x[N];
    int trials = 0, better = 0, bad = 0;
    for (int bits = 2; bits <= 8; bits++)
        for (int sym = 0; sym <= 1; sym++)
            for (int t = 0; t < 12; t++) {
                size_t n = (size_t)(1 + (t * 97) % N);
                for (size_t i = 0; i < n; i++) {
                    double v = t % 3 == 0 ? laplace() : student_t3();
                    if (t % 3 == 2 && urand() < 0.01) v *= 30; /* outliers */
                    x[i] = (float)(v + (t % 4 == 1 ? 1.5 : 0));
                }
                aq_qspec spec = {bits, sym};
                float s, z;
                aq_qrange(x, n, spec, AQ_RANGE_MSE, &s, &z);
                ref_grid gm = ref_minmax(x, n, bits, sym);
                ref_grid g = {s, z};
                double e = ref_sse(x, n, g, bits), e0 = ref_sse(x, n, gm, bits);
                trials++;
                if (e > e0 * (1 + 1e-12)) bad++; /* up to summation-order rounding */
                if (e < e0 * (1 - 1e-9)) better++; /* really better: beyond summation rounding */
                CHECK(z == nearbyintf(z) && z >= 0 && z <= (1 << bits) - 1);
                if (sym) CHECK(z == (float)(1 << (bits - 1)));
                /* coarse grid of clip ratios, computed independently */
                double lo = 0, hi = 0;
                for (size_t i = 0; i < n; i++)
                    lo = fmin(lo, x[i]), hi = fmax(hi, x[i]);
                for (int j = 0; j <= 10; j++) {
                    double r = 1.0 - 0.08 * j;
                    ref_grid gr;
                    if (sym) {
                        gr.zero = ldexp(1.0, bits - 1);
                        gr.scale = (float)(r * fmax(-lo, hi) / (gr.zero - 1.0));
                    } else {
                        gr.scale = (float)(r * (hi - lo) / qmaxd(bits));
                        gr.zero = fmin(fmax(nearbyint(-r * lo / gr.scale), 0.0), qmaxd(bits));
                    }
                    double er = ref_sse(x, n, gr, bits);
                    /* these ratios 1 - 0.08 j are the search's r_k for k = 10 j (quant.c),
                     * computed by another expression (the scale may differ by a float32
                     * ulp) and the search's per-element errors are float32 (6e-8
                     * relative each); 1e-4 relative covers both; 1e-12 for er = 0 */
                    CHECK_MSG(e <= er * (1 + 1e-4) + 1e-12,
                              "bits %d sym %d n %zu: mse %g worse than ratio %g (%g)", bits, sym, n,
                              e, r, er);
                }
            }
    CHECK_MSG(bad == 0, "%d of %d MSE ranges worse than min/max", bad, trials);
    CHECK_MSG(better * 2 > trials, "MSE strictly better on only %d of %d", better, trials);
    printf("MSE search: strictly better than min/max on %d of %d heavy-tailed vectors\n", better,
           trials);
    /* Per-row MSE equals per-vector MSE row by row. */
    enum { R = 5, C = 300 };
    static float w[R * C];
    float sc[R], zp[R];
    for (size_t i = 0; i < R * C; i++)
        w[i] = (float)laplace();
    aq_qrange_rows(w, R, C, (aq_qspec){3, 0}, AQ_RANGE_MSE, sc, zp);
    for (size_t r = 0; r < R; r++) {
        float s, z;
        aq_qrange(w + r * C, C, (aq_qspec){3, 0}, AQ_RANGE_MSE, &s, &z);
        CHECK(s == sc[r] && z == zp[r]);
    }
}

int main(void)
{
    test_known_answers();
    test_rtn();
    test_degenerate();
    test_mse();
    AQ_TEST_END();
}
