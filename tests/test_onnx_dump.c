/* test_onnx_dump.c — print the CNN graph that aq_onnx_read makes of an ONNX
 * file as JSON (every value, constants with their float32 data printed
 * round-trip exactly, every node with its attributes), for
 * tests/scripts/test_onnx_read.py, which checks it against its own protobuf
 * decoding (tests/scripts/onnx_pb.py) and model.safetensors. One line per file
 * given (one process for many files: start-up dominates under ASan); on a
 * reader error the line is {"error": message}. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../io/cnn_graph.h"

static void put_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void put_float(double x)
{
    if (isinf(x))
        printf(x > 0 ? "Infinity" : "-Infinity");
    else
        printf("%.9g", x);
}

static void put_ints(const char *key, const int *v, int n)
{
    printf(",\"%s\":[", key);
    for (int i = 0; i < n; i++)
        printf("%s%d", i ? "," : "", v[i]);
    putchar(']');
}

static void put_i64s(const int64_t *v, int n)
{
    putchar('[');
    for (int i = 0; i < n; i++)
        printf("%s%lld", i ? "," : "", (long long)v[i]);
    putchar(']');
}

static void put_value(const aq_cnn_value *v)
{
    printf("{\"name\":");
    put_str(v->name);
    printf(",\"const\":%d", v->is_const);
    if (v->is_const) {
        int64_t n = 1;
        printf(",\"shape\":");
        put_i64s(v->shape, v->ndim);
        for (int d = 0; d < v->ndim; d++)
            n *= v->shape[d];
        printf(",\"data\":[");
        for (int64_t i = 0; i < n; i++) {
            if (i) putchar(',');
            put_float(v->data[i]);
        }
        putchar(']');
    }
    putchar('}');
}

static void put_node(const aq_cnn_node *n)
{
    static const char *const pads[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};
    const aq_cnn_attrs *a = &n->a;
    printf("{\"name\":");
    put_str(n->name);
    printf(",\"op\":\"%s\",\"out\":%d", aq_cnn_op_name(n->op), n->out);
    put_ints("in", n->in, n->n_in);
    put_ints("kernel", a->kernel, 2);
    put_ints("strides", a->strides, 2);
    put_ints("pads", a->pads, 4);
    put_ints("dilations", a->dilations, 2);
    printf(",\"group\":%d,\"auto_pad\":\"%s\",\"ceil_mode\":%d,\"count_include_pad\":%d", a->group,
           pads[a->auto_pad], a->ceil_mode, a->count_include_pad);
    printf(",\"epsilon\":");
    put_float(a->epsilon);
    printf(",\"alpha\":");
    put_float(a->alpha);
    printf(",\"beta\":");
    put_float(a->beta);
    printf(",\"trans_a\":%d,\"trans_b\":%d,\"clip\":[", a->trans_a, a->trans_b);
    put_float(a->clip_min);
    putchar(',');
    put_float(a->clip_max);
    printf("],\"axis\":%d,\"shape\":", a->axis);
    put_i64s(a->shape, a->shape_ndim);
    putchar('}');
}

/* One JSON line: the graph, or {"error": message}. */
static void dump_file(const char *path)
{
    aq_cnn_graph g;
    aq_error err = {0};
    if (aq_onnx_read(path, &g, &err) != AQ_OK) {
        printf("{\"error\":");
        put_str(err.msg);
        printf("}\n");
        return;
    }
    printf("{\"opset\":%d,\"ir_version\":%d,\"input\":%d,\"output\":%d,\"in_shape\":", g.opset,
           g.ir_version, g.input, g.output);
    put_i64s(g.in_shape, g.in_ndim);
    printf(",\"values\":[");
    for (int i = 0; i < g.n_values; i++) {
        if (i) putchar(',');
        put_value(&g.values[i]);
    }
    printf("],\"nodes\":[");
    for (int i = 0; i < g.n_nodes; i++) {
        if (i) putchar(',');
        put_node(&g.nodes[i]);
    }
    printf("]}\n");
    aq_cnn_graph_free(&g);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.onnx...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++)
        dump_file(argv[i]);
    return 0;
}
