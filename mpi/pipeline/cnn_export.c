/* cnn_export.c — a quantized CNN OUTDIR read back (cnn_out.c wrote it) and
 * exported as a QDQ ONNX model: the copied model.onnx is read and its
 * BatchNorms folded again (the same deterministic fold the run made), the
 * layers of quantization.json are matched by node name and shape against
 * the folded graph's, and layers.safetensors gives every layer's result. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../io/safetensors.h"
#include "cnn_pipe.h"

int aq_cnnp_is_outdir(const char *dir)
{
    char path[AQ_CNNP_PATH + 32];
    snprintf(path, sizeof path, "%s/quantization.json", dir);
    json_t *j = json_load_file(path, 0, NULL);
    const char *f = json_string_value(json_object_get(j, "format"));
    int yes = f && !strcmp(f, "adaquant-cnn");
    json_decref(j);
    return yes;
}

/* Layer i's five tensors into r (copies). */
static aq_status take_layer(const aq_st_file *f, const char *node, int d_out, int d_in, int w_bits, int a_bits,
                            aq_cnnq_result *r, aq_error *err)
{
    const char *sfx[5] = {"codes", "scale", "zero", "bias", "act"};
    size_t o = (size_t)d_out, want[5] = {o * (size_t)d_in, o * 4, o * 4, o * 4, 8};
    const aq_tensor_view *v[5];
    for (int k = 0; k < 5; k++) {
        char n[600];
        snprintf(n, sizeof n, "%s.%s", node, sfx[k]);
        v[k] = aq_st_find(f, n);
        if (!v[k] || v[k]->nbytes != want[k] || v[k]->dtype != (k ? AQ_F32 : AQ_U8))
            return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor '%s' is missing or has the wrong type or size",
                           aq_st_path(f), n);
    }
    memset(r, 0, sizeof *r);
    r->codes = malloc(want[0]);
    r->scale = malloc(3 * o * sizeof(float));
    if (!r->codes || !r->scale) {
        aq_cnnq_result_free(r);
        return aq_fail_nomem(err, "layer", want[0]);
    }
    r->zero = r->scale + o, r->bias = r->scale + 2 * o;
    r->d_out = d_out, r->d_in = d_in, r->w_bits = w_bits, r->a_bits = a_bits;
    memcpy(r->codes, v[0]->data, want[0]);
    memcpy(r->scale, v[1]->data, o * 4), memcpy(r->zero, v[2]->data, o * 4), memcpy(r->bias, v[3]->data, o * 4);
    float act[2];
    memcpy(act, v[4]->data, 8);
    r->a_scale = act[0], r->a_zero = act[1];
    return AQ_OK;
}

static aq_status load_layers(const char *dir, json_t *layers, aq_cnnp_loaded *l, aq_error *err)
{
    char path[AQ_CNNP_PATH + 32];
    snprintf(path, sizeof path, "%s/layers.safetensors", dir);
    aq_st_file *f;
    AQ_TRY(aq_st_open(path, &f, err));
    aq_status st = AQ_OK;
    if (json_array_size(layers) != (size_t)l->n_layers)
        st = aq_fail(err, AQ_ERR_FORMAT, "%s/quantization.json lists %zu layers, the model has %d", dir,
                     json_array_size(layers), l->n_layers);
    for (int i = 0; st == AQ_OK && i < l->n_layers; i++) {
        json_t *j = json_array_get(layers, (size_t)i);
        const char *node = json_string_value(json_object_get(j, "node"));
        const aq_cnnq_layer *L = &l->layers[i];
        int d_out = (int)json_integer_value(json_object_get(j, "d_out")),
            d_in = (int)json_integer_value(json_object_get(j, "d_in"));
        if (!node || strcmp(node, l->g.nodes[L->node].name) || d_out != L->d_out || d_in != L->d_in)
            st = aq_fail(err, AQ_ERR_FORMAT, "%s/quantization.json: layer %d is '%s' [%d, %d], the model's is '%s' [%d, %d]",
                         dir, i, node ? node : "?", d_out, d_in, l->g.nodes[L->node].name, L->d_out, L->d_in);
        if (st == AQ_OK)
            st = take_layer(f, node, d_out, d_in, (int)json_integer_value(json_object_get(j, "w_bits")),
                            (int)json_integer_value(json_object_get(j, "a_bits")), &l->res[i], err);
    }
    aq_st_close(f);
    return st;
}

aq_status aq_cnnp_load_outdir(const char *dir, aq_cnnp_loaded *l, aq_error *err)
{
    memset(l, 0, sizeof *l);
    char path[AQ_CNNP_PATH + 32];
    snprintf(path, sizeof path, "%s/quantization.json", dir);
    json_error_t je;
    json_t *q = json_load_file(path, 0, &je);
    if (!q) return aq_fail(err, AQ_ERR_FORMAT, "%s: not valid JSON (line %d: %s)", path, je.line, je.text);
    aq_status st = AQ_OK;
    const char *f = json_string_value(json_object_get(q, "format"));
    if (!f || strcmp(f, "adaquant-cnn")) st = aq_fail(err, AQ_ERR_FORMAT, "%s: not a quantized CNN (format)", path);
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    if (st == AQ_OK) st = aq_onnx_read(path, &l->g, err);
    if (st == AQ_OK) st = aq_cnnq_fold_bn(&l->g, &l->folds, &l->n_folds, err);
    if (st == AQ_OK && l->n_folds != (int)json_integer_value(json_object_get(q, "bn_folds")))
        st = aq_fail(err, AQ_ERR_FORMAT, "%s: %d BatchNorms fold here, the quantized run folded %d (another build?)", dir,
                     l->n_folds, (int)json_integer_value(json_object_get(q, "bn_folds")));
    if (st == AQ_OK) st = aq_cnnq_layers(&l->g, &l->layers, &l->n_layers, err);
    if (st == AQ_OK && !(l->res = calloc((size_t)l->n_layers + 1, sizeof *l->res)))
        st = aq_fail_nomem(err, "layers", (size_t)l->n_layers);
    if (st == AQ_OK) st = load_layers(dir, json_object_get(q, "layers"), l, err);
    json_decref(q);
    if (st != AQ_OK) aq_cnnp_loaded_free(l);
    return st;
}

void aq_cnnp_loaded_free(aq_cnnp_loaded *l)
{
    for (int i = 0; l->res && i < l->n_layers; i++) aq_cnnq_result_free(&l->res[i]);
    free(l->res), free(l->layers);
    aq_cnnq_bnfold_free(l->folds, l->n_folds);
    aq_cnn_graph_free(&l->g);
    memset(l, 0, sizeof *l);
}

aq_status aq_cnnp_export_qdq(const char *dir, const char *path, aq_error *err)
{
    aq_cnnp_loaded l;
    AQ_TRY(aq_cnnp_load_outdir(dir, &l, err));
    const aq_cnnq_result **rp = calloc((size_t)l.n_layers + 1, sizeof *rp);
    aq_onnx_qlayer *q = calloc((size_t)l.n_layers + 1, sizeof *q);
    aq_cnnq_model m;
    int built = 0;
    aq_status st = rp && q ? AQ_OK : aq_fail_nomem(err, "QDQ layers", (size_t)l.n_layers * sizeof *q);
    for (int i = 0; st == AQ_OK && i < l.n_layers; i++) rp[i] = &l.res[i];
    if (st == AQ_OK) built = (st = aq_cnnq_model_build(&l.g, l.layers, l.n_layers, rp, 0, &m, err)) == AQ_OK;
    if (st == AQ_OK) st = aq_cnnq_qdq_layers(&m, q, err);
    if (st == AQ_OK) st = aq_onnx_write_qdq(&m.g, q, l.n_layers, path, err);
    if (built) aq_cnnq_model_free(&m);
    free(rp), free(q);
    aq_cnnp_loaded_free(&l);
    return st;
}

aq_status aq_cnnp_outdir_norm(const char *dir, aq_cnn_norm *norm, aq_error *err)
{
    char path[AQ_CNNP_PATH + 32];
    snprintf(path, sizeof path, "%s/quantization.json", dir);
    json_error_t je;
    json_t *q = json_load_file(path, 0, &je);
    if (!q) return aq_fail(err, AQ_ERR_FORMAT, "%s: not valid JSON (line %d: %s)", path, je.line, je.text);
    json_t *n = json_object_get(q, "normalize");
    aq_status st = AQ_OK;
    memset(norm, 0, sizeof *norm);
    if (json_is_string(n) && !strcmp(json_string_value(n), "none"))
        norm->raw = 1;
    else if (json_is_number(json_object_get(n, "mean")) && json_is_number(json_object_get(n, "std")))
        norm->mean = json_number_value(json_object_get(n, "mean")), norm->std = json_number_value(json_object_get(n, "std"));
    else
        st = aq_fail(err, AQ_ERR_FORMAT, "%s: 'normalize' is neither \"none\" nor {mean, std}", path);
    json_decref(q);
    return st;
}

aq_status aq_cnnp_eval_outdir(const char *dir, const uint8_t *px, size_t n, size_t image, const aq_cnn_norm *norm,
                              int batch, int32_t *pred_fp, int32_t *pred_q, size_t *classes, aq_error *err)
{
    char path[AQ_CNNP_PATH + 32];
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    aq_cnn_graph fp = {0};
    /* FP: the model as read, unfolded, as the run's evaluation */
    AQ_TRY(aq_onnx_read(path, &fp, err));
    aq_status st = aq_cnn_predict(&fp, px, n, image, norm, batch, pred_fp, NULL, classes, err);
    aq_cnn_graph_free(&fp);
    AQ_TRY(st);
    aq_cnnp_loaded l;
    AQ_TRY(aq_cnnp_load_outdir(dir, &l, err));
    const aq_cnnq_result **rp = calloc((size_t)l.n_layers + 1, sizeof *rp);
    aq_cnnq_model m;
    st = rp ? AQ_OK : aq_fail_nomem(err, "layer list", (size_t)l.n_layers * sizeof *rp);
    for (int i = 0; st == AQ_OK && i < l.n_layers; i++) rp[i] = &l.res[i];
    /* quantized: fake-quantized layer inputs, the model the run evaluated */
    if (st == AQ_OK && (st = aq_cnnq_model_build(&l.g, l.layers, l.n_layers, rp, 1, &m, err)) == AQ_OK) {
        st = aq_cnnq_predict(&m, px, n, image, norm, batch, pred_q, err);
        aq_cnnq_model_free(&m);
    }
    free(rp);
    aq_cnnp_loaded_free(&l);
    return st;
}
