/* onnx_attrs.c — ONNX node attributes -> aq_cnn_attrs, for every operator the
 * CNN graph knows, across opsets 1..21 (legacy attributes such as
 * consumed_inputs, is_test, broadcast are accepted where ONNX had them).
 * An attribute an operator does not take, or a value the engine cannot run
 * (3-D kernels, BatchNormalization spatial=0 or training_mode=1), is refused
 * with the node's name: silently ignoring it would change the results. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "onnx_internal.h"

typedef Onnx__AttributeProto attr_t;

/* Attribute type; protobuf files from before `type` was filled infer it from the field set. */
static int attr_type(const attr_t *a)
{
    if (a->has_type) return (int)a->type;
    if (a->n_ints) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    if (a->n_floats) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS;
    if (a->has_i) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    if (a->has_f) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    if (a->has_s) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    if (a->t) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
    return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED;
}

typedef struct actx {
    const aq_onnx_rd *r;
    const char *label, *op;
    aq_error *err;
} actx;

static aq_status bad(const actx *c, const attr_t *a, const char *why)
{
    return aq_fail(c->err, AQ_ERR_FORMAT, "%s: node '%s' (%s): attribute '%s' %s", c->r->what,
                   c->label, c->op, a->name ? a->name : "", why);
}

static aq_status get_int(const actx *c, const attr_t *a, int64_t lo, int64_t hi, int *out)
{
    if (attr_type(a) != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT)
        return bad(c, a, "is not an int");
    if (a->i < lo || a->i > hi) return bad(c, a, "is out of range");
    *out = (int)a->i;
    return AQ_OK;
}

static aq_status get_float(const actx *c, const attr_t *a, float *out)
{
    if (attr_type(a) != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT)
        return bad(c, a, "is not a float");
    if (isnan(a->f)) return bad(c, a, "is NaN");
    *out = a->f;
    return AQ_OK;
}

/* Exactly n ints, each in [lo, hi]; n = 2 for kernels/strides/dilations
 * and 4 for pads: the engine is 2-D only. */
static aq_status get_ints(const actx *c, const attr_t *a, size_t n, int64_t lo, int *out)
{
    if (attr_type(a) != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS)
        return bad(c, a, "is not a list of ints");
    if (a->n_ints != n) {
        char why[96];
        snprintf(why, sizeof why,
                 "has %zu entries, expected %zu (only 2-D spatial ops are supported)", a->n_ints,
                 n);
        return bad(c, a, why);
    }
    for (size_t i = 0; i < n; i++) {
        if (a->ints[i] < lo || a->ints[i] > (1 << 20))
            return bad(c, a, "has an out-of-range entry");
        out[i] = (int)a->ints[i];
    }
    return AQ_OK;
}

static aq_status get_autopad(const actx *c, const attr_t *a, aq_cnn_autopad *out)
{
    static const char *const names[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};
    if (attr_type(a) != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING)
        return bad(c, a, "is not a string");
    for (int i = 0; i < 4; i++)
        if (a->s.len == strlen(names[i]) && memcmp(a->s.data, names[i], a->s.len) == 0) {
            *out = (aq_cnn_autopad)i;
            return AQ_OK;
        }
    return bad(c, a, "is not NOTSET, SAME_UPPER, SAME_LOWER or VALID");
}

/* Conv and the two windowed pools. */
static aq_status spatial_attr(const actx *c, const attr_t *a, aq_cnn_node *n, int *handled)
{
    const char *nm = a->name;
    aq_cnn_attrs *t = &n->a;
    *handled = 1;
    if (!strcmp(nm, "kernel_shape")) return get_ints(c, a, 2, 1, t->kernel);
    if (!strcmp(nm, "strides")) return get_ints(c, a, 2, 1, t->strides);
    if (!strcmp(nm, "pads")) return get_ints(c, a, 4, 0, t->pads);
    if (!strcmp(nm, "dilations")) return get_ints(c, a, 2, 1, t->dilations);
    if (!strcmp(nm, "auto_pad")) return get_autopad(c, a, &t->auto_pad);
    if (n->op == AQ_OP_CONV && !strcmp(nm, "group")) return get_int(c, a, 1, 1 << 20, &t->group);
    if (n->op != AQ_OP_CONV && !strcmp(nm, "ceil_mode")) return get_int(c, a, 0, 1, &t->ceil_mode);
    if (n->op == AQ_OP_AVGPOOL && !strcmp(nm, "count_include_pad"))
        return get_int(c, a, 0, 1, &t->count_include_pad);
    /* storage_order only orders MaxPool's Indices output, which is refused when used */
    if (n->op == AQ_OP_MAXPOOL && !strcmp(nm, "storage_order")) return AQ_OK;
    *handled = 0;
    return AQ_OK;
}

/* Attributes that every opset-1 era op carried and that mean nothing at inference. */
static int legacy_ignored(aq_cnn_op op, const char *nm)
{
    if (!strcmp(nm, "consumed_inputs")) return 1;
    if (op == AQ_OP_BATCHNORM && (!strcmp(nm, "momentum") || !strcmp(nm, "is_test"))) return 1;
    return 0;
}

static aq_status one_attr(const actx *c, const attr_t *a, const Onnx__NodeProto *np, aq_cnn_node *n)
{
    const char *nm = a->name;
    aq_cnn_attrs *t = &n->a;
    int handled = 0, v;
    if (legacy_ignored(n->op, nm)) return AQ_OK;
    switch (n->op) {
    case AQ_OP_CONV:
    case AQ_OP_MAXPOOL:
    case AQ_OP_AVGPOOL:
        AQ_TRY(spatial_attr(c, a, n, &handled));
        if (handled) return AQ_OK;
        break;
    case AQ_OP_BATCHNORM:
        if (!strcmp(nm, "epsilon")) return get_float(c, a, &t->epsilon);
        if (!strcmp(nm, "spatial") || !strcmp(nm, "training_mode")) {
            AQ_TRY(get_int(c, a, 0, 1, &v));
            if (v != (nm[0] == 's'))
                return bad(c, a,
                           nm[0] == 's' ? "= 0 (per-activation statistics) is not supported"
                                        : "= 1 (training) is not supported");
            return AQ_OK;
        }
        break;
    case AQ_OP_CLIP:
        if (!strcmp(nm, "min")) return get_float(c, a, &t->clip_min);
        if (!strcmp(nm, "max")) return get_float(c, a, &t->clip_max);
        break;
    case AQ_OP_HARDSIGMOID:
        if (!strcmp(nm, "alpha")) return get_float(c, a, &t->alpha);
        if (!strcmp(nm, "beta")) return get_float(c, a, &t->beta);
        break;
    case AQ_OP_ADD:
    case AQ_OP_MUL: /* opset < 7; the reader applies them (io/onnx_read.c) */
        if (!strcmp(nm, "broadcast")) return get_int(c, a, 0, 1, &v);
        if (!strcmp(nm, "axis")) return get_int(c, a, -AQ_MAX_DIMS, AQ_MAX_DIMS - 1, &v);
        break;
    case AQ_OP_FLATTEN:
    case AQ_OP_SOFTMAX:
    case AQ_OP_CONCAT:
        if (!strcmp(nm, "axis")) return get_int(c, a, -AQ_MAX_DIMS, AQ_MAX_DIMS, &t->axis);
        break;
    case AQ_OP_RESHAPE:
        if (!strcmp(nm, "allowzero")) return get_int(c, a, 0, 1, &v); /* checked with the shape */
        if (!strcmp(nm, "shape")) {
            if (attr_type(a) != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS)
                return bad(c, a, "is not a list of ints");
            if (a->n_ints > AQ_MAX_DIMS) return bad(c, a, "has too many dimensions");
            t->shape_ndim = (int)a->n_ints;
            for (size_t i = 0; i < a->n_ints; i++)
                t->shape[i] = a->ints[i];
            return AQ_OK;
        }
        break;
    case AQ_OP_GEMM:
        if (!strcmp(nm, "alpha")) return get_float(c, a, &t->alpha);
        if (!strcmp(nm, "beta")) return get_float(c, a, &t->beta);
        if (!strcmp(nm, "transA")) return get_int(c, a, 0, 1, &t->trans_a);
        if (!strcmp(nm, "transB")) return get_int(c, a, 0, 1, &t->trans_b);
        if (!strcmp(nm, "broadcast"))
            return get_int(c, a, 0, 1, &v); /* opset < 7: C broadcasts as NumPy */
        break;
    case AQ_OP_IDENTITY: /* Dropout at inference */
        if (!strcmp(np->op_type, "Dropout") &&
            (!strcmp(nm, "ratio") || !strcmp(nm, "is_test") || !strcmp(nm, "seed")))
            return AQ_OK;
        break;
    default: break;
    }
    return bad(c, a, "is not supported");
}

aq_status aq_onnx_node_attrs(const aq_onnx_rd *r, const Onnx__NodeProto *np, const char *label,
                             aq_cnn_node *n, aq_error *err)
{
    actx c = {r, label, np->op_type, err};
    int has_allowzero = 0, has_axis = 0;
    for (size_t i = 0; i < np->n_attribute; i++) {
        const attr_t *a = np->attribute[i];
        if (!a->name)
            return aq_fail(err, AQ_ERR_FORMAT, "%s: node '%s' (%s): an attribute has no name",
                           r->what, label, np->op_type);
        AQ_TRY(one_attr(&c, a, np, n));
        if (!strcmp(a->name, "allowzero") && a->i) has_allowzero = 1;
        if (!strcmp(a->name, "axis")) has_axis = 1;
    }
    if ((n->op == AQ_OP_MAXPOOL || n->op == AQ_OP_AVGPOOL) && n->a.kernel[0] == 0)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: node '%s' (%s): kernel_shape is missing", r->what,
                       label, np->op_type);
    if (n->op == AQ_OP_CONCAT && !has_axis && r->opset >= 4)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: node '%s' (Concat): the axis attribute is missing",
                       r->what, label);
    for (int i = 0; has_allowzero && i < n->a.shape_ndim; i++)
        if (n->a.shape[i] ==
            0) /* checked here when the shape is an attribute; io/onnx_read.c otherwise */
            return aq_fail(err, AQ_ERR_FORMAT,
                           "%s: node '%s' (Reshape): allowzero=1 with a 0 in the shape "
                           "is not supported",
                           r->what, label);
    return AQ_OK;
}
