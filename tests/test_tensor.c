/* test_tensor.c — F16/BF16 conversions against independent references:
 * every one of the 65536 half values against a float64 formula
 * (-1)^s 2^(e-15) (1 + m/1024); narrowing checked at exact midpoints between
 * neighbouring representable values (ties must go to the even neighbour) and
 * just beside them (must go to the nearer one); overflow, NaN and Inf. */
#include <stdint.h>
#include <string.h>

#include "../io/tensor.h"
#include "testutil.h"

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static double half_ref(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static void test_f16(void)
{
    for (uint32_t h = 0; h < 65536; h++) {
        double ref = half_ref((uint16_t)h);
        float got = aq_f16_to_f32((uint16_t)h);
        if (isnan(ref)) {
            CHECK_MSG(isnan(got), "h=0x%04x", h);
            CHECK_MSG((aq_f32_to_f16(got) & 0x7e00) == 0x7e00, "NaN 0x%04x must stay a quiet NaN",
                      h);
            continue;
        }
        CHECK_MSG(got == (float)ref && !signbit(got) == !signbit(ref), "h=0x%04x: %g vs %g", h,
                  (double)got, ref);
        CHECK_MSG(aq_f32_to_f16(got) == h, "h=0x%04x does not round-trip", h);
        uint16_t next = (uint16_t)(h + 1);
        if ((h & 0x7fff) >= 0x7c00 || (next & 0x7fff) > 0x7c00 || (next & 0x7fff) == 0) continue;
        /* midpoint between h and its successor in magnitude (exact in float) */
        /* past the largest finite value the "successor" is 2^16 (it rounds to Inf) */
        double a = ref, b = (next & 0x7fff) == 0x7c00 ? copysign(65536.0, ref) : half_ref(next);
        float mid = (float)((a + b) / 2);
        CHECK_MSG((double)mid == (a + b) / 2, "midpoint not exact at 0x%04x", h);
        uint16_t even = (h & 1) ? next : (uint16_t)h;
        CHECK_MSG(aq_f32_to_f16(mid) == even, "tie at 0x%04x/0x%04x -> 0x%04x", h, next,
                  aq_f32_to_f16(mid));
        float below = nextafterf(mid, (float)a), above = nextafterf(mid, (float)b);
        CHECK_MSG(aq_f32_to_f16(below) == h, "below mid 0x%04x", h);
        CHECK_MSG(aq_f32_to_f16(above) == next, "above mid 0x%04x", h);
    }
    CHECK(aq_f32_to_f16(65519.996f) == 0x7bff); /* below the rounding boundary */
    CHECK(aq_f32_to_f16(65520.0f) == 0x7c00);   /* the tie with 2^16 rounds to Inf */
    CHECK(aq_f32_to_f16(1e10f) == 0x7c00 && aq_f32_to_f16(-1e10f) == 0xfc00);
    CHECK(aq_f32_to_f16(INFINITY) == 0x7c00 && aq_f32_to_f16(-INFINITY) == 0xfc00);
    CHECK(aq_f32_to_f16(0x1p-25f) == 0x0000);           /* tie with 0 -> even (0) */
    CHECK(aq_f32_to_f16(nextafterf(0x1p-25f, 1)) == 1); /* just above -> smallest subnormal */
    CHECK(aq_f32_to_f16(-0x1p-26f) == 0x8000);          /* underflow keeps the sign */
    CHECK(aq_f32_to_f16(1e-30f) == 0);
}

static double bf16_ref(uint16_t h)
{
    int s = h >> 15, e = (h >> 7) & 255, m = h & 127;
    double v = e == 0 ? ldexp(m, -133) : e == 255 ? (m ? NAN : INFINITY) : ldexp(128 + m, e - 134);
    return s ? -v : v;
}

static void test_bf16(void)
{
    for (uint32_t h = 0; h < 65536; h++) {
        double ref = bf16_ref((uint16_t)h);
        float got = aq_bf16_to_f32((uint16_t)h);
        if (isnan(ref)) {
            CHECK_MSG(isnan(got) && isnan(aq_bf16_to_f32(aq_f32_to_bf16(got))), "h=0x%04x", h);
            continue;
        }
        CHECK_MSG(got == (float)ref && !signbit(got) == !signbit(ref), "bf16 0x%04x", h);
        CHECK_MSG(aq_f32_to_bf16(got) == h, "bf16 0x%04x does not round-trip", h);
        uint16_t next = (uint16_t)(h + 1);
        if ((h & 0x7fff) >= 0x7f80 || (next & 0x7fff) > 0x7f80 || (next & 0x7fff) == 0) continue;
        double a = ref, b = (next & 0x7fff) == 0x7f80 ? copysign(0x1p128, ref) : bf16_ref(next);
        float mid = (float)((a + b) / 2);
        CHECK_MSG((double)mid == (a + b) / 2, "bf16 midpoint not exact at 0x%04x", h);
        uint16_t even = (h & 1) ? next : (uint16_t)h;
        CHECK_MSG(aq_f32_to_bf16(mid) == even, "bf16 tie at 0x%04x", h);
        CHECK_MSG(aq_f32_to_bf16(nextafterf(mid, (float)a)) == h, "bf16 below mid 0x%04x", h);
        CHECK_MSG(aq_f32_to_bf16(nextafterf(mid, (float)b)) == next, "bf16 above mid 0x%04x", h);
    }
    CHECK(aq_f32_to_bf16(3.4e38f) == 0x7f80); /* rounds up past the max -> Inf */
    CHECK((bits(aq_bf16_to_f32(aq_f32_to_bf16(NAN))) & 0x7fc00000u) == 0x7fc00000u);
    uint32_t snan = 0x7f800001u; /* payload only in the low bits: must not become Inf */
    float fs;
    memcpy(&fs, &snan, 4);
    CHECK(isnan(aq_bf16_to_f32(aq_f32_to_bf16(fs))));
}

int main(void)
{
    test_f16();
    test_bf16();
    AQ_TEST_END();
}
