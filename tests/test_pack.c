/* test_pack.c — bit packing of quantizer codes (src/quant/pack.c) against a
 * bit-by-bit reference written here and hand-computed byte vectors. */
#include <stdint.h>
#include <string.h>

#include "../src/quant/quant.h"
#include "testutil.h"

/* Reference: set stream bit k = bit k%8 of byte k/8, one bit at a time. */
static void ref_pack(const uint8_t *codes, size_t n, int bits, uint8_t *out, size_t nbytes)
{
    memset(out, 0, nbytes);
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < bits; b++) {
            size_t k = i * (size_t)bits + (size_t)b;
            if ((codes[i] >> b) & 1) out[k / 8] |= (uint8_t)(1u << (k % 8));
        }
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) { return (uint32_t)(aq_test_u64(&rng_state) >> 32); }

static void test_hand_vectors(void)
{
    uint8_t out[8];
    /* 3-bit [1,2,3,4,5]: 1 | 2<<3 | 3<<6 | 4<<9 | 5<<12 = 1+16+192+2048+20480
     * = 22737 = 0x58D1 -> bytes D1 58 (15 bits, top bit of byte 1 = padding 0). */
    const uint8_t c3[5] = {1, 2, 3, 4, 5};
    CHECK(aq_packed_bytes(5, 3) == 2);
    memset(out, 0xAA, sizeof out);
    aq_pack(c3, 5, 3, out);
    CHECK(out[0] == 0xD1 && out[1] == 0x58);
    CHECK(out[2] == 0xAA); /* nothing written past the packed size */
    /* 4-bit [1,2,3] -> 0x21, 0x03 (low nibble first). */
    const uint8_t c4[3] = {1, 2, 3};
    aq_pack(c4, 3, 4, out);
    CHECK(out[0] == 0x21 && out[1] == 0x03);
    /* 2-bit [3,0,1,2,3] -> 3 | 0<<2 | 1<<4 | 2<<6 = 0x93, then 0x03. */
    const uint8_t c2[5] = {3, 0, 1, 2, 3};
    aq_pack(c2, 5, 2, out);
    CHECK(out[0] == 0x93 && out[1] == 0x03);
    /* 6-bit [63, 1, 32]: 63 | 1<<6 | 32<<12 = 0x2007F -> 7F 00 02. */
    const uint8_t c6[3] = {63, 1, 32};
    CHECK(aq_packed_bytes(3, 6) == 3);
    aq_pack(c6, 3, 6, out);
    CHECK(out[0] == 0x7F && out[1] == 0x00 && out[2] == 0x02);
    /* 1-bit [1,0,1,1,0,0,0,0,1] -> 0x0D, 0x01. */
    const uint8_t c1[9] = {1, 0, 1, 1, 0, 0, 0, 0, 1};
    aq_pack(c1, 9, 1, out);
    CHECK(out[0] == 0x0D && out[1] == 0x01);
    /* Out-of-range codes are masked: 3-bit [9, 7] -> 1 | 7<<3 = 0x39. */
    const uint8_t bad[2] = {9, 7};
    aq_pack(bad, 2, 3, out);
    CHECK(out[0] == 0x39);
    /* Unpacking the hand vector gives the codes back. */
    uint8_t back[5];
    const uint8_t in3[2] = {0xD1, 0x58};
    aq_unpack(in3, 5, 3, back);
    CHECK(memcmp(back, c3, 5) == 0);
}

static void test_round_trip(void)
{
    static const size_t lens[] = {0, 1, 2, 3, 5, 7, 8, 9, 13, 16, 101, 1000, 4099};
    for (int bits = 1; bits <= 8; bits++)
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            size_t n = lens[li], nb = aq_packed_bytes(n, bits);
            CHECK(nb == (n * (size_t)bits + 7) / 8);
            uint8_t *codes = malloc(n + 1), *back = malloc(n + 1);
            uint8_t *packed = malloc(nb + 4), *ref = malloc(nb + 1);
            for (size_t i = 0; i < n; i++)
                codes[i] = (uint8_t)(rnd() & ((1u << bits) - 1u));
            memset(packed, 0x5C, nb + 4);
            aq_pack(codes, n, bits, packed);
            ref_pack(codes, n, bits, ref, nb);
            CHECK_MSG(nb == 0 || memcmp(packed, ref, nb) == 0, "bits %d n %zu", bits, n);
            CHECK_MSG(packed[nb] == 0x5C && packed[nb + 3] == 0x5C, "overrun bits %d n %zu", bits,
                      n);
            memset(back, 0xEE, n + 1);
            aq_unpack(packed, n, bits, back);
            CHECK_MSG(n == 0 || memcmp(back, codes, n) == 0, "round trip bits %d n %zu", bits, n);
            CHECK(back[n] == 0xEE);
            /* Garbage in the padding bits of the last byte must not matter. */
            if (nb && (n * (size_t)bits) % 8) {
                packed[nb - 1] |= (uint8_t)(0xFFu << ((n * (size_t)bits) % 8));
                aq_unpack(packed, n, bits, back);
                CHECK_MSG(memcmp(back, codes, n) == 0, "padding bits %d n %zu", bits, n);
            }
            free(codes), free(back), free(packed), free(ref);
        }
}

int main(void)
{
    test_hand_vectors();
    test_round_trip();
    AQ_TEST_END();
}
