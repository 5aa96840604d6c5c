/* ggml_rows.h — the awkward test rows of the ggml block-format tests
 * (test_ggml_blocks.c, test_ggml_blocks_llamacpp.c): rows of N weights. */
#ifndef AQ_TEST_GGML_ROWS_H
#define AQ_TEST_GGML_ROWS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "testutil.h"

enum { N = 512 }; /* weights per test row: two K-quant super-blocks */

static inline float f32_of(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Rows that stress the formats: zeros, constants, single outliers, one sign,
 * tiny and huge magnitudes (fp16 underflow and overflow of the scales),
 * values on the rounding grids (ties) and fp16 rounding ties. */
static inline void fill_row(int kind, float *x, uint64_t *rs)
{
    for (int i = 0; i < N; i++) {
        float g = (float)aq_test_nrand(rs);
        switch (kind) {
        case 0: x[i] = g; break;
        case 1: x[i] = 0.0f; break;
        case 2: x[i] = 0.75f; break;                           /* constant */
        case 3: x[i] = i % 97 == 5 ? 40.0f : 0.01f * g; break; /* outliers */
        case 4: x[i] = -fabsf(g); break;                       /* negative only */
        case 5: x[i] = fabsf(g) + 3.0f; break;                 /* positive, offset */
        case 6: x[i] = 1e-6f * g; break;
        case 7: x[i] = 1e-30f * g; break;                      /* scales below fp16's range */
        case 8: x[i] = 3e5f * g; break;                        /* scales above fp16's range */
        case 9: x[i] = (float)((int)(g * 8.0f)) * 0.5f; break; /* grid values: ties */
        case 10: x[i] = (float)(i % 32) - 15.5f; break;        /* ramps, half steps */
        case 11: x[i] = i % 64 < 32 ? 0.0f : g; break;         /* half the blocks zero */
        case 12: x[i] = f32_of(0x3f801000u + (uint32_t)(i % 7) * 0x2000u) * (i % 2 ? -1 : 1); break;
        case 13: x[i] = i % 16 == 3 ? -2.0f : (i % 16 == 9 ? 2.0f : 0.0f); break; /* +-max ties */
        case 14: x[i] = g * g * g; break;                                         /* heavy tails */
        default: x[i] = (float)(i % 5) * 1e-3f + 1e4f; break; /* large offset, small spread */
        }
    }
}
enum { NKINDS = 16 };

#endif
