/* onnx_depth.c — a guard run before protobuf-c unpacks an ONNX file:
 * protobuf-c decodes nested messages recursively with no depth limit, so a
 * file of a few MB nesting subgraphs 300000 deep overflows the stack (a
 * crash, not an error). This walks only the wire framing (tag, varint,
 * length) and follows a length-delimited field only where protobuf-c's own
 * generated descriptor says it is a message, to measure the nesting depth.
 * It decodes nothing: malformed framing is left to protobuf-c to report. */
#include <stddef.h>
#include <stdint.h>

#include "onnx_internal.h"

static int varint(const uint8_t *p, size_t len, size_t *i, uint64_t *out)
{
    *out = 0;
    for (int shift = 0; shift < 64 && *i < len; shift += 7) {
        uint8_t b = p[(*i)++];
        *out |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80) return 1;
    }
    return 0;
}

/* 0 when messages nest deeper than max below d (a message of type d at p). */
static int depth_ok(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len, int max)
{
    if (max < 0) return 0;
    size_t i = 0;
    uint64_t key, n;
    while (i < len) {
        if (!varint(p, len, &i, &key)) return 1;
        switch (key & 7) {
        case 0:
            if (!varint(p, len, &i, &n)) return 1;
            break;
        case 1: i += 8; break;
        case 5: i += 4; break;
        case 2: {
            if (!varint(p, len, &i, &n) || n > len - i) return 1;
            const ProtobufCFieldDescriptor *f =
                key >> 3 <= UINT32_MAX
                    ? protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3))
                    : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                !depth_ok(f->descriptor, p + i, (size_t)n, max - 1))
                return 0;
            i += (size_t)n;
            break;
        }
        default: return 1;
        }
    }
    return 1;
}

int aq_onnx_depth_ok(const void *buf, size_t len)
{
    return depth_ok(&onnx__model_proto__descriptor, buf, len, AQ_ONNX_MAX_DEPTH);
}
