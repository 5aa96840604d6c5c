/* test_cnn.c — every operator of the CNN engine (src/cnn) against float64
 * NumPy references: tests/scripts/cnn_ref.py writes ~50 small graphs with
 * seeded float32 inputs, their reference outputs and per-element error
 * magnitudes; each must satisfy |y - ref| <= gamma(K + 4) * mag (the bound is
 * explained in cnn_ref.py). The small networks are also run one image at a
 * time and must agree bit for bit with the batched run (per-image GEMMs).
 * Then bad graphs: shape mismatches name the node. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/cnn/cnn.h"
#include "test_cnn_build.h"
#include "testutil.h"

#define TOK 128

typedef struct ref_case {
    char name[TOK];
    int K;
    aq_cnn_graph g;
    float *feed;
    size_t n_feed;
    aq_cnn_shape expect_shape;
    double *expect, *mag;
} ref_case;

static int tok(FILE *f, char *buf)
{
    return fscanf(f, "%127s", buf) == 1;
}

static long num(FILE *f)
{
    long v = 0;
    if (fscanf(f, "%ld", &v) != 1) aq_test_failures++;
    return v;
}

static void read_floats(FILE *f, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fscanf(f, "%f", &dst[i]) != 1) aq_test_failures++;
}

static size_t read_shape(FILE *f, int *ndim, int64_t *d)
{
    size_t n = 1;
    *ndim = (int)num(f);
    for (int i = 0; i < *ndim; i++)
        n *= (size_t)((d[i] = num(f)) < 0 ? 1 : d[i]);
    return n;
}

static void read_value(FILE *f, aq_cnn_graph *g)
{
    char name[TOK], kind[TOK];
    int ndim;
    int64_t d[AQ_MAX_DIMS];
    tok(f, name), tok(f, kind);
    size_t n = read_shape(f, &ndim, d);
    if (!strcmp(kind, "input")) {
        tg_input(g, name, ndim, d);
        return;
    }
    float *data = malloc(n * sizeof(float) + 1);
    read_floats(f, data, n);
    tg_const(g, name, ndim, d, data);
    free(data);
}

/* "KEY COUNT VALUES..." into the node's attributes (ONNX spelling). */
static void read_attr(FILE *f, aq_cnn_attrs *a)
{
    char key[TOK], v[TOK];
    tok(f, key);
    int cnt = (int)num(f);
    double x[AQ_MAX_DIMS] = {0};
    for (int i = 0; i < cnt; i++) {
        tok(f, v);
        if (!strcmp(key, "auto_pad"))
            a->auto_pad = !strcmp(v, "SAME_UPPER")   ? AQ_PAD_SAME_UPPER
                          : !strcmp(v, "SAME_LOWER") ? AQ_PAD_SAME_LOWER
                          : !strcmp(v, "VALID")      ? AQ_PAD_VALID
                                                     : AQ_PAD_NOTSET;
        else if (i < AQ_MAX_DIMS)
            x[i] = atof(v);
    }
    if (!strcmp(key, "kernel_shape"))
        a->kernel[0] = (int)x[0], a->kernel[1] = (int)x[1];
    else if (!strcmp(key, "strides"))
        a->strides[0] = (int)x[0], a->strides[1] = (int)x[1];
    else if (!strcmp(key, "dilations"))
        a->dilations[0] = (int)x[0], a->dilations[1] = (int)x[1];
    else if (!strcmp(key, "pads"))
        for (int i = 0; i < 4; i++)
            a->pads[i] = (int)x[i];
    else if (!strcmp(key, "group"))
        a->group = (int)x[0];
    else if (!strcmp(key, "ceil_mode"))
        a->ceil_mode = (int)x[0];
    else if (!strcmp(key, "count_include_pad"))
        a->count_include_pad = (int)x[0];
    else if (!strcmp(key, "epsilon"))
        a->epsilon = (float)x[0];
    else if (!strcmp(key, "alpha"))
        a->alpha = (float)x[0];
    else if (!strcmp(key, "beta"))
        a->beta = (float)x[0];
    else if (!strcmp(key, "transA"))
        a->trans_a = (int)x[0];
    else if (!strcmp(key, "transB"))
        a->trans_b = (int)x[0];
    else if (!strcmp(key, "min"))
        a->clip_min = (float)x[0];
    else if (!strcmp(key, "max"))
        a->clip_max = (float)x[0];
    else if (!strcmp(key, "axis"))
        a->axis = (int)x[0];
    else if (!strcmp(key, "shape")) {
        a->shape_ndim = cnt;
        for (int i = 0; i < cnt; i++)
            a->shape[i] = (int64_t)x[i];
    } else if (strcmp(key, "auto_pad"))
        CHECK_MSG(0, "unknown attribute %s", key);
}

static void read_node(FILE *f, aq_cnn_graph *g)
{
    char op[TOK], name[TOK], out[TOK], ins[AQ_CNN_MAX_IN][TOK];
    const char *ip[AQ_CNN_MAX_IN];
    tok(f, op), tok(f, name);
    int n_in = (int)num(f);
    for (int i = 0; i < n_in && i < AQ_CNN_MAX_IN; i++)
        tok(f, ins[i]), ip[i] = strcmp(ins[i], "-") ? ins[i] : NULL;
    tok(f, out);
    CHECK_MSG(tg_op(op) >= 0, "op %s", op);
    aq_cnn_node *n = tg_node(g, (aq_cnn_op)tg_op(op), name, n_in, ip, out);
    for (long k = num(f); k > 0; k--)
        read_attr(f, &n->a);
}

/* One case; 0 at the end of the stream. */
static int read_case(FILE *f, ref_case *c)
{
    char t[TOK];
    memset(c, 0, sizeof *c);
    if (!tok(f, t)) return 0;
    CHECK(!strcmp(t, "case"));
    tok(f, c->name);
    tg_init(&c->g, (int)num(f));
    c->K = (int)num(f);
    while (tok(f, t) && strcmp(t, "end")) {
        if (!strcmp(t, "value"))
            read_value(f, &c->g);
        else if (!strcmp(t, "node"))
            read_node(f, &c->g);
        else if (!strcmp(t, "output"))
            tok(f, t), c->g.output = tg_value(&c->g, t);
        else if (!strcmp(t, "feed")) {
            c->n_feed = (size_t)num(f);
            c->feed = malloc(c->n_feed * sizeof(float) + 1);
            read_floats(f, c->feed, c->n_feed);
        } else if (!strcmp(t, "expect")) {
            size_t n = read_shape(f, &c->expect_shape.ndim, c->expect_shape.d);
            c->expect = malloc(n * sizeof(double) + 1);
            for (size_t i = 0; i < n; i++)
                CHECK(fscanf(f, "%lf", &c->expect[i]) == 1);
        } else if (!strcmp(t, "mag")) {
            size_t n = aq_cnn_numel(&c->expect_shape);
            c->mag = malloc(n * sizeof(double) + 1);
            for (size_t i = 0; i < n; i++)
                CHECK(fscanf(f, "%lf", &c->mag[i]) == 1);
        } else {
            CHECK_MSG(0, "case %s: unexpected token %s", c->name, t);
            return 0;
        }
    }
    return 1;
}

static void free_case(ref_case *c)
{
    aq_cnn_graph_free(&c->g);
    free(c->feed);
    free(c->expect);
    free(c->mag);
}

/* Networks run one image at a time must give the batched result exactly. */
static void check_per_image(const ref_case *c, const aq_cnn_plan *p, const float *y)
{
    aq_error err = {0};
    aq_cnn_plan p1;
    size_t in1 = c->n_feed / (size_t)p->batch,
           out1 = aq_cnn_numel(&p->shape[c->g.output]) / (size_t)p->batch;
    float *y1 = malloc(out1 * sizeof(float));
    CHECK_OK(aq_cnn_plan_init(&c->g, 1, &p1, &err), &err);
    for (int n = 0; n < p->batch && !aq_test_failures; n++) {
        CHECK_OK(aq_cnn_forward(&p1, NULL, c->feed + n * in1, y1, NULL, NULL, &err), &err);
        CHECK_MSG(!memcmp(y1, y + n * out1, out1 * sizeof(float)), "%s: image %d alone differs",
                  c->name, n);
    }
    aq_cnn_plan_free(&p1);
    free(y1);
}

static void run_case(const ref_case *c)
{
    aq_error err = {0};
    aq_cnn_plan p;
    const aq_cnn_graph *g = &c->g;
    int64_t per = 1;
    for (int i = 1; i < g->in_ndim; i++)
        per *= g->in_shape[i];
    int batch = (int)(c->n_feed / (size_t)per);
    if (aq_cnn_plan_init(g, batch, &p, &err) != AQ_OK) {
        CHECK_MSG(0, "%s: plan: %s", c->name, err.msg);
        return;
    }
    const aq_cnn_shape *os = &p.shape[g->output];
    char b0[160], b1[160];
    CHECK_MSG(os->ndim == c->expect_shape.ndim &&
                  !memcmp(os->d, c->expect_shape.d, sizeof(int64_t) * os->ndim),
              "%s: shape %s, expected %s", c->name, aq_cnn_shape_str(os, b0, sizeof b0),
              aq_cnn_shape_str(&c->expect_shape, b1, sizeof b1));
    size_t n = aq_cnn_numel(&c->expect_shape);
    float *y = calloc(aq_cnn_numel(os) + 1, sizeof(float));
    CHECK_OK(aq_cnn_forward(&p, NULL, c->feed, y, NULL, NULL, &err), &err);
    const double u = 1.0 / 16777216.0, gam = (c->K + 4) * u / (1 - (c->K + 4) * u);
    double worst = 0;
    int bad = 0;
    for (size_t i = 0; i < n && aq_cnn_numel(os) == n; i++) {
        double e = fabs(y[i] - c->expect[i]), tol = gam * c->mag[i] + 1e-300;
        if (e / tol > worst) worst = e / tol;
        if (!(e <= tol) && bad++ < 3)
            CHECK_MSG(0, "%s[%zu]: %.9g vs reference %.17g (|err| %.3g > bound %.3g)", c->name, i,
                      y[i], c->expect[i], e, tol);
    }
    printf("%-32s %6zu values, max |err|/bound %.2e\n", c->name, n, worst);
    if (!strncmp(c->name, "net_", 4)) check_per_image(c, &p, y);
    free(y);
    aq_cnn_plan_free(&p);
}

static void reference_cases(void)
{
    char cmd[4096];
    const char *src = getenv("AQ_SOURCE_DIR");
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/scripts/cnn_ref.py 17", src ? src : "..");
    FILE *f = popen(cmd, "r");
    CHECK(f != NULL);
    if (!f) return;
    ref_case c;
    int ops_seen[AQ_OP_COUNT] = {0}, cases = 0;
    while (read_case(f, &c)) {
        for (int k = 0; k < c.g.n_nodes; k++)
            ops_seen[c.g.nodes[k].op] = 1;
        run_case(&c);
        free_case(&c);
        cases++;
    }
    CHECK(pclose(f) == 0);
    CHECK_MSG(cases >= 50, "only %d cases", cases);
    for (int op = 0; op < AQ_OP_COUNT; op++)
        CHECK_MSG(ops_seen[op], "no case for %s", aq_cnn_op_name(op));
}

void test_cnn_bad(void);

int main(void)
{
    if (!aq_test_have_numpy()) {
        fprintf(stderr, "skip: /usr/bin/python3 with numpy is required\n");
        return 77;
    }
    reference_cases();
    test_cnn_bad();
    AQ_TEST_END();
}
