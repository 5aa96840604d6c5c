/* onnx_read.c — read an ONNX model into the CNN graph IR (io/cnn_graph.h).
 *
 * The protobuf is decoded by protobuf-c's code generated at build time from
 * Debian's onnx.proto (no hand-written protobuf parsing). Here: constants
 * (initializers and Constant nodes; float32 data in the graph, integers for
 * shapes in a side table), the graph input/output, node inputs resolved by
 * name, the opset differences the header lists, a topological sort, and the
 * folding of Reshape/Identity applied to a constant (the MNIST model reshapes
 * its MatMul weight with a Reshape node: folded, the weight is a constant like
 * every other layer's). Per-op attributes: io/onnx_attrs.c; nodes, inputs and
 * the sort: io/onnx_graph.c; folding and legacy broadcast: io/onnx_fix.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_internal.h"

#define DT_FLOAT ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT

static const char *nz(const char *s)
{
    return s ? s : "";
}

const char *aq_onnx_node_label(const Onnx__NodeProto *np, int index, char *buf, size_t cap)
{
    if (np->name && np->name[0]) return np->name;
    snprintf(buf, cap, "%s_%d", nz(np->op_type), index);
    return buf;
}

const aq_onnx_iconst *aq_onnx_iconst_find(const aq_onnx_rd *r, const char *name)
{
    for (int i = 0; i < r->n_ic; i++)
        if (strcmp(r->ic[i].name, name) == 0) return &r->ic[i];
    return NULL;
}

/* A new value (name copied); its id in *id. */
aq_status aq_onnx_add_value(aq_onnx_rd *r, const char *name, int *id, aq_error *err)
{
    aq_cnn_graph *g = r->g;
    if (aq_cnn_graph_find(g, name) >= 0 || aq_onnx_iconst_find(r, name))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: value '%s' is defined twice", r->what, name);
    if (g->n_values == r->cap_values) {
        int cap = r->cap_values ? 2 * r->cap_values : 64;
        aq_cnn_value *nv = realloc(g->values, (size_t)cap * sizeof *nv);
        if (!nv) return aq_fail_nomem(err, "ONNX values", (size_t)cap * sizeof *nv);
        g->values = nv;
        r->cap_values = cap;
    }
    aq_cnn_value *v = &g->values[g->n_values];
    memset(v, 0, sizeof *v);
    if (!(v->name = strdup(name))) return aq_fail_nomem(err, "a value name", strlen(name) + 1);
    *id = g->n_values++;
    return AQ_OK;
}

/* dims -> ndim/shape/numel, refusing external data, too many dims, negative dims. */
static aq_status tensor_shape(const aq_onnx_rd *r, const Onnx__TensorProto *t, const char *name,
                              int *ndim, int64_t *shape, int64_t *numel, aq_error *err)
{
    if ((t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) ||
        t->n_external_data)
        return aq_fail(
            err, AQ_ERR_FORMAT,
            "%s: tensor '%s' keeps its data in an external file (ONNX external "
            "data), which is not supported: save the model with its weights inside the .onnx file",
            r->what, name);
    if (t->segment)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor '%s' is segmented (not supported)", r->what,
                       name);
    if (t->n_dims > AQ_MAX_DIMS)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor '%s' has %zu dimensions (at most %d)",
                       r->what, name, t->n_dims, AQ_MAX_DIMS);
    *ndim = (int)t->n_dims;
    *numel = 1;
    for (size_t i = 0; i < t->n_dims; i++) {
        if (t->dims[i] < 0 || t->dims[i] > ((int64_t)1 << 40) ||
            *numel * t->dims[i] > ((int64_t)1 << 40))
            return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor '%s' has a bad or huge dimension %lld",
                           r->what, name, (long long)t->dims[i]);
        shape[i] = t->dims[i];
        *numel *= t->dims[i];
    }
    return AQ_OK;
}

static aq_status size_mismatch(const aq_onnx_rd *r, const char *name, const char *field,
                               size_t have, int64_t numel, aq_error *err)
{
    return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor '%s': %s holds %zu elements, its dims say %lld",
                   r->what, name, field, have, (long long)numel);
}

/* A float32 tensor into value v (data owned by the graph). */
static aq_status tensor_float(const aq_onnx_rd *r, const Onnx__TensorProto *t, const char *name,
                              aq_cnn_value *v, aq_error *err)
{
    int64_t numel;
    AQ_TRY(tensor_shape(r, t, name, &v->ndim, v->shape, &numel, err));
    if (t->has_raw_data && t->raw_data.len != (size_t)numel * 4)
        return size_mismatch(r, name, "raw_data", t->raw_data.len / 4, numel, err);
    if (!t->has_raw_data && t->n_float_data != (size_t)numel)
        return size_mismatch(r, name, "float_data", t->n_float_data, numel, err);
    v->is_const = 1;
    if (!(v->data = malloc((size_t)numel * 4 + 1)))
        return aq_fail_nomem(err, name, (size_t)numel * 4);
    if (numel)
        memcpy(v->data,
               t->has_raw_data ? (const void *)t->raw_data.data : (const void *)t->float_data,
               (size_t)numel * 4); /* raw_data is little-endian, as the host */
    return AQ_OK;
}

/* An integer tensor (shapes, axes, flags) into the side table. */
static aq_status tensor_int(aq_onnx_rd *r, const Onnx__TensorProto *t, const char *name,
                            aq_error *err)
{
    static const int sizes[] = {
        [2] = 1, [3] = 1, [6] = 4, [7] = 8, [9] = 1}; /* u8 i8 i32 i64 bool */
    int ndim, dt = t->data_type;
    int64_t shape[AQ_MAX_DIMS], numel;
    AQ_TRY(tensor_shape(r, t, name, &ndim, shape, &numel, err));
    if (numel > 4096)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: integer tensor '%s' is too large (%lld elements) "
                       "for a shape or axis",
                       r->what, name, (long long)numel);
    if (r->n_ic == r->cap_ic) {
        int cap = r->cap_ic ? 2 * r->cap_ic : 16;
        aq_onnx_iconst *n = realloc(r->ic, (size_t)cap * sizeof *n);
        if (!n) return aq_fail_nomem(err, "ONNX integer constants", (size_t)cap * sizeof *n);
        r->ic = n;
        r->cap_ic = cap;
    }
    aq_onnx_iconst *c = &r->ic[r->n_ic];
    if (!(c->v = calloc((size_t)numel + 1, 8))) return aq_fail_nomem(err, name, (size_t)numel * 8);
    c->name = name;
    c->n = numel;
    r->n_ic++;
    int sz = sizes[dt];
    if (t->has_raw_data) {
        if (t->raw_data.len != (size_t)(numel * sz))
            return size_mismatch(r, name, "raw_data", t->raw_data.len / sz, numel, err);
        for (int64_t i = 0; i < numel; i++) {
            const uint8_t *p = t->raw_data.data + i * sz;
            int64_t x = 0;
            memcpy(&x, p, (size_t)sz);
            if (sz == 4)
                x = (int32_t)x;
            else if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT8)
                x = (int8_t)x;
            c->v[i] = x;
        }
    } else if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64) {
        if (t->n_int64_data != (size_t)numel)
            return size_mismatch(r, name, "int64_data", t->n_int64_data, numel, err);
        if (numel) memcpy(c->v, t->int64_data, (size_t)numel * 8); /* NULL when empty */
    } else {
        if (t->n_int32_data != (size_t)numel)
            return size_mismatch(r, name, "int32_data", t->n_int32_data, numel, err);
        for (int64_t i = 0; i < numel; i++)
            c->v[i] = t->int32_data[i];
    }
    return AQ_OK;
}

/* Initializer or Constant value -> a float constant value or an integer constant. */
aq_status aq_onnx_add_tensor(aq_onnx_rd *r, const Onnx__TensorProto *t, const char *name,
                             aq_error *err)
{
    int dt = t->has_data_type ? t->data_type : 0, id;
    if (!name[0]) return aq_fail(err, AQ_ERR_FORMAT, "%s: a constant tensor has no name", r->what);
    if (dt == DT_FLOAT) {
        AQ_TRY(aq_onnx_add_value(r, name, &id, err));
        return tensor_float(r, t, name, &r->g->values[id], err);
    }
    if (dt == 2 || dt == 3 || dt == 6 || dt == 7 || dt == 9) {
        if (aq_cnn_graph_find(r->g, name) >= 0 || aq_onnx_iconst_find(r, name))
            return aq_fail(err, AQ_ERR_FORMAT, "%s: value '%s' is defined twice", r->what, name);
        return tensor_int(r, t, name, err);
    }
    return aq_fail(err, AQ_ERR_FORMAT,
                   "%s: tensor '%s' has ONNX data type %d; only float32 (weights) and "
                   "integer shapes/axes are supported",
                   r->what, name, dt);
}

/* The ai.onnx opset the model imports (1 when an old model lists none). */
static aq_status model_opset(const aq_onnx_rd *r, const Onnx__ModelProto *m, int *opset,
                             aq_error *err)
{
    *opset = m->n_opset_import ? 0 : 1;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = m->opset_import[i];
        if (o->domain && o->domain[0] && strcmp(o->domain, "ai.onnx") != 0) continue;
        if (o->version < 1 || o->version > 21)
            return aq_fail(err, AQ_ERR_FORMAT, "%s: ONNX opset %lld is not supported (1..21)",
                           r->what, (long long)o->version);
        *opset = (int)o->version;
    }
    if (!*opset)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: the model imports no ai.onnx opset", r->what);
    return AQ_OK;
}

static aq_status read_model(aq_onnx_rd *r, const Onnx__ModelProto *m, aq_error *err)
{
    aq_cnn_graph *g = r->g;
    const Onnx__GraphProto *gp = m->graph;
    if (!gp) return aq_fail(err, AQ_ERR_FORMAT, "%s: not an ONNX model (no graph)", r->what);
    AQ_TRY(model_opset(r, m, &r->opset, err));
    g->opset = r->opset;
    g->ir_version = m->has_ir_version && m->ir_version < 1000 ? (int)m->ir_version : 0;
    if (gp->n_sparse_initializer)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: sparse initializers are not supported", r->what);
    for (size_t i = 0; i < gp->n_initializer; i++)
        AQ_TRY(aq_onnx_add_tensor(r, gp->initializer[i], nz(gp->initializer[i]->name), err));
    AQ_TRY(aq_onnx_graph_input(r, gp, err));
    AQ_TRY(aq_onnx_graph_nodes(r, gp, err));
    return aq_onnx_graph_finish(r, gp, err);
}

aq_status aq_onnx_read_mem(const void *buf, size_t len, const char *what, aq_cnn_graph *g,
                           aq_error *err)
{
    memset(g, 0, sizeof *g);
    g->input = g->output = -1;
    if (!(g->path = strdup(what))) return aq_fail_nomem(err, "a path", strlen(what) + 1);
    if (!aq_onnx_depth_ok(buf, len)) {
        aq_cnn_graph_free(g);
        return aq_fail(err, AQ_ERR_FORMAT, "%s: ONNX messages nested more than %d deep", what,
                       AQ_ONNX_MAX_DEPTH);
    }
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
    if (!m) {
        aq_cnn_graph_free(g);
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: not a valid ONNX protobuf (truncated or malformed; %zu bytes)", what,
                       len);
    }
    aq_onnx_rd r = {.what = g->path, .g = g};
    aq_status st = read_model(&r, m, err);
    for (int i = 0; i < r.n_ic; i++)
        free(r.ic[i].v);
    free(r.ic);
    free(r.src);
    onnx__model_proto__free_unpacked(m, NULL);
    if (st != AQ_OK) aq_cnn_graph_free(g);
    return st;
}

aq_status aq_onnx_read(const char *path, aq_cnn_graph *g, aq_error *err)
{
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "rb");
    if (!f) return aq_fail(err, AQ_ERR_IO, "%s: cannot open: %m", path);
    unsigned char *buf = NULL;
    size_t len = 0, cap = 0, n;
    aq_status st = AQ_OK;
    do {
        if (len == cap) {
            cap = cap ? 2 * cap : 1 << 16;
            unsigned char *nb = realloc(buf, cap);
            if (!nb) {
                st = aq_fail_nomem(err, path, cap);
                break;
            }
            buf = nb;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    if (st == AQ_OK && ferror(f)) st = aq_fail(err, AQ_ERR_IO, "%s: read error", path);
    fclose(f);
    if (st == AQ_OK) st = aq_onnx_read_mem(buf, len, path, g, err);
    free(buf);
    return st;
}
