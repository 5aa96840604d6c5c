/* pack.c — bit packing of quantizer codes into a little-endian bit stream.
 *
 * Code i occupies stream bits [i*bits, (i+1)*bits); stream bit k is bit k%8
 * of byte k/8 (so the first code sits in the low bits of byte 0). The last
 * byte is zero-padded. Codes are masked to `bits` bits on packing, so an
 * out-of-range code cannot corrupt its neighbours. 8 bits is a copy; other
 * widths pack groups of 8 codes (= `bits` whole bytes) through a 64-bit
 * word, and the tail through a shift register. (bits outside 1..8 are
 * treated as 8.)
 * Allocation-free and reentrant. */
#include <string.h>

#include "quant.h"

size_t aq_packed_bytes(size_t n, int bits)
{
    /* (n * bits + 7) / 8 without overflowing for huge n */
    return (n / 8) * (size_t)bits + ((n % 8) * (size_t)bits + 7) / 8;
}

/* Whole groups of 8 codes = `bits` bytes each, assembled in a 64-bit word.
 * Called with a literal `bits` from a switch so that the compiler unrolls
 * both inner loops into straight shifts. */
static inline __attribute__((always_inline)) void pack_groups(const uint8_t *codes, size_t groups,
                                                              int bits, uint8_t *out)
{
    const uint64_t mask = (1u << bits) - 1u;
    for (size_t g = 0; g < groups; g++, codes += 8, out += bits) {
        uint64_t v = 0;
        for (int j = 0; j < 8; j++)
            v |= (codes[j] & mask) << (j * bits);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        memcpy(out, &v, (size_t)bits); /* the low `bits` bytes of v, in stream order */
#else
        for (int b = 0; b < bits; b++)
            out[b] = (uint8_t)(v >> (8 * b));
#endif
    }
}

static inline __attribute__((always_inline)) void unpack_groups(const uint8_t *in, size_t groups,
                                                                int bits, uint8_t *codes)
{
    const uint64_t mask = (1u << bits) - 1u;
    for (size_t g = 0; g < groups; g++, in += bits, codes += 8) {
        uint64_t v = 0;
        for (int b = 0; b < bits; b++)
            v |= (uint64_t)in[b] << (8 * b);
        for (int j = 0; j < 8; j++)
            codes[j] = (uint8_t)((v >> (j * bits)) & mask);
    }
}

void aq_pack(const uint8_t *codes, size_t n, int bits, uint8_t *out)
{
    size_t groups = n / 8, i = groups * 8, o = groups * (size_t)bits;
    switch (bits) {
    case 1: pack_groups(codes, groups, 1, out); break;
    case 2: pack_groups(codes, groups, 2, out); break;
    case 3: pack_groups(codes, groups, 3, out); break;
    case 4: pack_groups(codes, groups, 4, out); break;
    case 5: pack_groups(codes, groups, 5, out); break;
    case 6: pack_groups(codes, groups, 6, out); break;
    case 7: pack_groups(codes, groups, 7, out); break;
    default:
        if (n) memcpy(out, codes, n);
        return;
    }
    const uint32_t mask = (1u << bits) - 1u;
    uint32_t acc = 0; /* tail: pending bits, lowest = next stream bit */
    int nacc = 0;
    for (; i < n; i++) {
        acc |= (codes[i] & mask) << nacc;
        nacc += bits;
        while (nacc >= 8) {
            out[o++] = (uint8_t)acc;
            acc >>= 8;
            nacc -= 8;
        }
    }
    if (nacc > 0) out[o] = (uint8_t)acc;
}

void aq_unpack(const uint8_t *in, size_t n, int bits, uint8_t *codes)
{
    size_t groups = n / 8, i = groups * 8, o = groups * (size_t)bits;
    switch (bits) {
    case 1: unpack_groups(in, groups, 1, codes); break;
    case 2: unpack_groups(in, groups, 2, codes); break;
    case 3: unpack_groups(in, groups, 3, codes); break;
    case 4: unpack_groups(in, groups, 4, codes); break;
    case 5: unpack_groups(in, groups, 5, codes); break;
    case 6: unpack_groups(in, groups, 6, codes); break;
    case 7: unpack_groups(in, groups, 7, codes); break;
    default:
        if (n) memcpy(codes, in, n);
        return;
    }
    const uint32_t mask = (1u << bits) - 1u;
    uint32_t acc = 0; /* tail */
    int nacc = 0;
    for (; i < n; i++) {
        if (nacc < bits) { /* bits <= 7 < 8: one byte always suffices */
            acc |= (uint32_t)in[o++] << nacc;
            nacc += 8;
        }
        codes[i] = (uint8_t)(acc & mask);
        acc >>= bits;
        nacc -= bits;
    }
}
