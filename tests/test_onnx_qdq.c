/* test_onnx_qdq.c — `test_onnx_qdq MODEL.onnx OUT.onnx WBITS [ACT_FILE]`: read
 * MODEL, quantize every Conv/Gemm/MatMul weight round-to-nearest per output
 * channel (asymmetric min/max, src/quant/quant.h) to WBITS, take per-node
 * activation parameters from ACT_FILE (lines "node scale zero bits"), and
 * write the QDQ model with aq_onnx_write_qdq. tests/scripts/test_onnx_qdq.py
 * checks the file independently (its own RTN, NumPy and onnxruntime runs).
 * `test_onnx_qdq --bad DIR` instead checks the writer's refusals. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../io/onnx_write.h"
#include "../src/quant/quant.h"

/* The weight as the quantizer's [out, in] matrix (transposed for a [K, N] MatMul/Gemm weight). */
static float *weight_rows(const aq_cnn_graph *g, const aq_cnn_node *n, size_t *rows, size_t *cols)
{
    const aq_cnn_value *w = &g->values[n->in[1]];
    size_t total = 1;
    for (int d = 0; d < w->ndim; d++)
        total *= (size_t)w->shape[d];
    int axis1 = n->op == AQ_OP_MATMUL || (n->op == AQ_OP_GEMM && !n->a.trans_b);
    *rows = (size_t)w->shape[axis1];
    *cols = total / *rows;
    float *m = malloc(total * sizeof *m);
    for (size_t o = 0; o < *rows; o++)
        for (size_t i = 0; i < *cols; i++)
            m[o * *cols + i] = axis1 ? w->data[i * *rows + o] : w->data[o * *cols + i];
    return m;
}

static int quantize_layers(const aq_cnn_graph *g, int bits, const char *act_file, aq_onnx_qlayer *L)
{
    int nl = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const aq_cnn_node *n = &g->nodes[i];
        if (n->op != AQ_OP_CONV && n->op != AQ_OP_GEMM && n->op != AQ_OP_MATMUL) continue;
        size_t rows, cols;
        float *w = weight_rows(g, n, &rows, &cols), *s = malloc(rows * 4), *z = malloc(rows * 4);
        uint8_t *u = malloc(rows * cols);
        aq_qspec spec = {bits, 0};
        aq_qrange_rows(w, rows, cols, spec, AQ_RANGE_MINMAX, s, z);
        aq_quantize_rows(w, rows, cols, s, z, bits, u);
        free(w);
        L[nl++] =
            (aq_onnx_qlayer){.node = n->name, .bits = bits, .codes = u, .scale = s, .zero = z};
    }
    FILE *f = act_file ? fopen(act_file, "r") : NULL;
    char name[512];
    float sc, zr;
    int ab;
    while (f && fscanf(f, "%511s %g %g %d", name, &sc, &zr, &ab) == 4)
        for (int k = 0; k < nl; k++)
            if (!strcmp(L[k].node, name))
                L[k].act_bits = ab, L[k].act_scale = sc, L[k].act_zero = zr;
    if (f) fclose(f);
    return nl;
}

/* Entries of dir other than . and .. */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d) closedir(d);
    return n;
}

/* Refusals: each must fail with a message containing `want`, and leave DIR empty. */
static int bad_cases(const char *model, const char *dir)
{
    aq_cnn_graph g;
    aq_error err = {0};
    if (access(model, R_OK) != 0) return printf("skip: %s not found\n", model), 77;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return perror(dir), 1;
    if (aq_onnx_read(model, &g, &err) != AQ_OK) return fprintf(stderr, "%s\n", err.msg), 1;
    aq_onnx_qlayer L[64];
    int nl = quantize_layers(&g, 8, NULL, L), fails = 0;
    char out[4096];
    snprintf(out, sizeof out, "%s/bad.onnx", dir);
    struct {
        const char *what, *want;
    } cases[] = {{"fractional zero", "not an integer"},
                 {"unknown node", "is no node"},
                 {"bad scale", "not finite and positive"},
                 {"code range", "exceeds 2^bits-1"},
                 {"relu layer", "only Conv, Gemm and MatMul"}};
    for (int c = 0; c < 5; c++) {
        aq_onnx_qlayer x = L[0];
        float z = x.zero[0] + 0.5f, s = -1, *zeros = calloc(1 << 12, sizeof(float));
        uint8_t *codes = malloc(1 << 16);
        memcpy(codes, x.codes, 8);
        codes[0] = 255;
        if (c == 0) x.zero = &z;
        if (c == 1) x.node = "no_such_node";
        if (c == 2) x.scale = &s;
        if (c == 3) x.codes = codes, x.bits = 4, x.zero = zeros;
        if (c == 4) x.node = g.nodes[2].name; /* a Relu in both shared models */
        aq_error e = {0};
        aq_status st = aq_onnx_write_qdq(&g, &x, 1, out, &e);
        if (st == AQ_OK || !strstr(e.msg, cases[c].want) || !strstr(e.msg, "bad.onnx"))
            fprintf(stderr, "FAIL: %s: %s\n", cases[c].what, e.msg), fails++;
        free(codes);
        free(zeros);
    }
    /* an unwritable target: an I/O error naming it, no temporary file left */
    snprintf(out, sizeof out, "%s/no_such_dir/x.onnx", dir);
    if (aq_onnx_write_qdq(&g, L, nl, out, &err) != AQ_ERR_IO || !strstr(err.msg, "no_such_dir"))
        fprintf(stderr, "FAIL: unwritable path: %s\n", err.msg), fails++;
    if (count_entries(dir) != 0) fprintf(stderr, "FAIL: refusals left files in %s\n", dir), fails++;
    for (int k = 0; k < nl; k++)
        free((void *)L[k].codes), free((void *)L[k].scale), free((void *)L[k].zero);
    aq_cnn_graph_free(&g);
    if (!fails) printf("all checks passed\n");
    return fails != 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--bad")) return bad_cases(argv[2], argv[3]);
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL OUT WBITS [ACT_FILE] | --bad MODEL DIR\n", argv[0]);
        return 2;
    }
    aq_cnn_graph g;
    aq_error err = {0};
    if (aq_onnx_read(argv[1], &g, &err) != AQ_OK) return fprintf(stderr, "%s\n", err.msg), 1;
    aq_onnx_qlayer L[64];
    int nl = quantize_layers(&g, atoi(argv[3]), argc > 4 ? argv[4] : NULL, L);
    aq_status st = aq_onnx_write_qdq(&g, L, nl, argv[2], &err);
    if (st != AQ_OK) fprintf(stderr, "%s\n", err.msg);
    for (int k = 0; k < nl; k++)
        free((void *)L[k].codes), free((void *)L[k].scale), free((void *)L[k].zero);
    aq_cnn_graph_free(&g);
    return st != AQ_OK;
}
