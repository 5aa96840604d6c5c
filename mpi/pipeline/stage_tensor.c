/* stage_tensor.c — the tensor menu's tasks (stage_tensor.h). The embedding
 * of a tied model is also its classifier, so its loss is measured with both
 * roles changed: the KL covers the lookup and the output projection at once
 * (on stories260K the classifier role dominates, docs/PIPELINE.md). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../io/checkpoint.h"
#include "../../io/resultfile.h"
#include "../../src/adaquant/qlayer.h"
#include "../../src/quant/ggml_blocks.h"
#include "stage_tensor.h"

void aq_pipe_qtensor_free(aq_pipe_qtensor *q)
{
    free(q->w);
    free(q->codes);
    free(q->scale);
    memset(q, 0, sizeof *q);
}

/* The source tensor <name>.weight as F32 [rows, cols] (malloc'd). */
static aq_status source_weight(const aq_pipe_cfg *c, const aq_pipe_layer *X, float **w, aq_error *err)
{
    aq_checkpoint *ck;
    char name[128];
    snprintf(name, sizeof name, "%s.weight", X->name);
    AQ_TRY(aq_ckpt_open(c->model, &ck, err));
    const aq_tensor_view *v;
    aq_status st = aq_ckpt_get(ck, name, &v, err);
    if (st == AQ_OK && (v->ndim != 2 || v->shape[0] != X->d_out || v->shape[1] != X->d_in))
        st = aq_fail(err, AQ_ERR_SHAPE, "%s: tensor %s is not [%d, %d]", c->model, name, X->d_out, X->d_in);
    if (st == AQ_OK) st = aq_view_to_f32_alloc(v, w, err);
    aq_ckpt_close(ck);
    return st;
}

/* A ggml block type: llama.cpp's round-to-nearest rows (the bytes
 * llama-quantize writes for token_embd / output without an importance
 * matrix) in q->codes [rows, row bytes], q->w their dequantised values. */
static aq_status make_blocks(const char *opt, aq_pipe_qtensor *q, aq_error *err)
{
    aq_ggml_type t = (aq_ggml_type)aq_tensor_opt_gtype(opt);
    size_t rb;
    AQ_TRY(aq_ggml_row_bytes(t, q->cols, &rb, err));
    if (!(q->codes = malloc(q->rows * rb > 0 ? q->rows * rb : 1))) return aq_fail_nomem(err, "tensor blocks", q->rows * rb);
    q->row_bytes = rb;
    for (size_t r = 0; r < q->rows; r++) {
        AQ_TRY(aq_ggml_quantize_row(t, q->w + r * q->cols, q->cols, q->codes + r * rb, err));
        AQ_TRY(aq_ggml_dequantize_row(t, q->codes + r * rb, q->cols, q->w + r * q->cols, err));
    }
    return AQ_OK;
}

/* q at option `opt` from the FP matrix w (taken over). */
static aq_status make(float *w, size_t rows, size_t cols, const char *opt, aq_pipe_qtensor *q, aq_error *err)
{
    memset(q, 0, sizeof *q);
    q->rows = rows, q->cols = cols, q->w = w;
    AQ_TRY(aq_tensor_opt_parse(opt, &q->bits, err));
    if (q->bits == 16)
        for (size_t i = 0; i < rows * cols; i++) w[i] = aq_f16_to_f32(aq_f32_to_f16(w[i]));
    if (q->bits >= 16) return AQ_OK;
    if (q->bits == 0) return make_blocks(opt, q, err);
    q->codes = malloc(rows * cols > 0 ? rows * cols : 1);
    q->scale = malloc(2 * rows * sizeof *q->scale);
    if (!q->codes || !q->scale) return aq_fail_nomem(err, "quantized tensor", rows * cols);
    q->zero = q->scale + rows;
    aq_qtensor_rtn(w, rows, cols, q->bits, q->codes, q->scale, q->zero);
    aq_qtensor_dequant(q->codes, q->scale, q->zero, rows, cols, w);
    return AQ_OK;
}

aq_status aq_pipe_qtensor_install(aq_model *m, const aq_pipe_plan *p, int e, const aq_pipe_qtensor *q,
                                  aq_error *err)
{
    aq_linear_override ov = {q->w, NULL, 0, 1, 0};
    int L = aq_model_config(m)->n_layers;
    if (p->extra[e].which == AQ_LIN_HEAD) return aq_model_set_override(m, L, AQ_LIN_HEAD, &ov, err);
    AQ_TRY(aq_model_set_embed_override(m, q->w, err));
    return p->tied ? aq_model_set_override(m, L, AQ_LIN_HEAD, &ov, err) : AQ_OK;
}

void aq_pipe_qtensor_uninstall(aq_model *m, const aq_pipe_plan *p, int e)
{
    int L = aq_model_config(m)->n_layers;
    if (p->extra[e].which != AQ_LIN_HEAD) aq_model_set_embed_override(m, NULL, NULL);
    if (p->extra[e].which == AQ_LIN_HEAD || p->tied) aq_model_clear_override(m, L, AQ_LIN_HEAD);
}

static aq_status write_result(const char *path, const aq_dist_task *task, const aq_pipe_qtensor *q, double loss,
                              double rel, aq_error *err)
{
    int64_t r = (int64_t)q->rows, k = (int64_t)q->cols;
    aq_tensor_view t[4];
    size_t n = 0;
    if (q->bits == 16) t[n++] = (aq_tensor_view){"weight", AQ_F32, 2, {r, k}, q->w, (size_t)(r * k) * 4};
    if (q->bits == 0)
        t[n++] = (aq_tensor_view){"qblocks", AQ_U8, 2, {r, (int64_t)q->row_bytes}, q->codes, (size_t)r * q->row_bytes};
    if (q->bits > 0 && q->bits < 16) {
        t[n++] = (aq_tensor_view){"codes", AQ_U8, 2, {r, k}, q->codes, (size_t)(r * k)};
        t[n++] = (aq_tensor_view){"w_scale", AQ_F32, 1, {r}, q->scale, (size_t)r * 4};
        t[n++] = (aq_tensor_view){"w_zero", AQ_F32, 1, {r}, q->zero, (size_t)r * 4};
    }
    t[n++] = (aq_tensor_view){"out_error", AQ_F64, 1, {1}, &rel, 8};
    aq_result_desc d = {.layer = task->layer, .option = task->option, .fp = task->fp, .n_tensors = n, .tensors = t};
    /* a block type's w_bits: the same option's as a linear's (the table holds
     * one meaning per option name; under a budget in bytes its bytes are exact) */
    aq_layer_opts lo;
    aq_layer_opts_default(&lo);
    int wb = q->bits;
    if (!wb) wb = aq_layer_opts_parse(task->option, &lo, NULL) == AQ_OK ? lo.w_bits : 8;
    d.row = (aq_loss_row){.loss = loss, .params = r * k, .macs = r * k, .w_bits = wb, .a_bits = 16,
                          .size_bits = q->bits ? r * k * q->bits + (q->bits < 16 ? 64 * r : 0)
                                               : 8 * r * (int64_t)q->row_bytes};
    return aq_result_write(path, &d, err);
}

aq_status aq_pipe_tensor_task(const aq_pipe_cfg *c, const aq_pipe_plan *p, aq_model *m, aq_sens *sens,
                              const aq_dist_task *task, const char *path, aq_error *err)
{
    int e = task->layer_index - p->n_layers;
    const aq_pipe_layer *X = &p->extra[e];
    float *w, *fp = NULL;
    aq_pipe_qtensor q;
    memset(&q, 0, sizeof q);
    AQ_TRY(source_weight(c, X, &w, err));
    size_t n = (size_t)X->d_out * (size_t)X->d_in;
    aq_status st = (fp = malloc(n * sizeof *fp)) ? AQ_OK : aq_fail_nomem(err, "tensor", n * 4);
    if (st == AQ_OK) memcpy(fp, w, n * sizeof *fp);
    if (st == AQ_OK) st = make(w, (size_t)X->d_out, (size_t)X->d_in, task->option, &q, err);
    else free(w);
    double num = 0, den = 0, kl = 0;
    for (size_t i = 0; st == AQ_OK && i < n; i++)
        num += ((double)q.w[i] - fp[i]) * ((double)q.w[i] - fp[i]), den += (double)fp[i] * fp[i];
    double rel = den > 0 ? num / den : 0;
    if (st == AQ_OK && sens && q.bits < 32) {
        st = aq_pipe_qtensor_install(m, p, e, &q, err);
        if (st == AQ_OK) st = aq_sens_installed_kl(sens, &kl, err);
        aq_pipe_qtensor_uninstall(m, p, e);
    }
    if (st == AQ_OK) st = write_result(path, task, &q, sens ? kl : rel, rel, err);
    aq_pipe_qtensor_free(&q);
    free(fp);
    return st;
}

/* A block-type result: its rows' bytes kept (the writer stores them) and dequantised into q->w. */
static aq_status read_blocks(const char *opt, const aq_tensor_view *bv, aq_pipe_qtensor *q, size_t rb, aq_error *err)
{
    if (!(q->codes = malloc(q->rows * rb > 0 ? q->rows * rb : 1))) return aq_fail_nomem(err, "tensor blocks", q->rows * rb);
    memcpy(q->codes, bv->data, q->rows * rb);
    q->row_bytes = rb;
    for (size_t r = 0; r < q->rows; r++)
        AQ_TRY(aq_ggml_dequantize_row((aq_ggml_type)aq_tensor_opt_gtype(opt), q->codes + r * rb, q->cols,
                                      q->w + r * q->cols, err));
    return AQ_OK;
}

aq_status aq_pipe_qtensor_read(const aq_pipe_cfg *c, const aq_pipe_plan *p, int e, int k, aq_pipe_qtensor *q,
                               aq_error *err)
{
    const aq_dist_task *t = &p->tasks[p->n_lin_tasks + (size_t)e * (size_t)c->n_embed_options + (size_t)k];
    const aq_pipe_layer *X = &p->extra[e];
    memset(q, 0, sizeof *q);
    char *path;
    aq_result *r = NULL;
    AQ_TRY(aq_result_path(c->work, t->layer, t->option, &path, err));
    aq_status st = aq_result_check(path, t->layer, t->option, &t->fp, NULL, err);
    if (st == AQ_OK) st = aq_result_read(path, &t->fp, &r, err);
    free(path);
    AQ_TRY(st);
    size_t rows = (size_t)X->d_out, cols = (size_t)X->d_in;
    q->rows = rows, q->cols = cols;
    st = aq_tensor_opt_parse(t->option, &q->bits, err);
    const aq_tensor_view *wv = aq_result_find(r, "weight"), *cv = aq_result_find(r, "codes"),
                         *sv = aq_result_find(r, "w_scale"), *zv = aq_result_find(r, "w_zero");
    const aq_tensor_view *bv = aq_result_find(r, "qblocks");
    size_t rb = 0;
    if (st == AQ_OK && q->bits == 0)
        st = aq_ggml_row_bytes((aq_ggml_type)aq_tensor_opt_gtype(t->option), cols, &rb, err);
    int ok = q->bits == 32 || (q->bits == 16 && wv && wv->nbytes == rows * cols * 4) ||
             (q->bits == 0 && bv && bv->nbytes == rows * rb) ||
             (q->bits < 16 && cv && sv && zv && cv->nbytes == rows * cols && sv->nbytes == rows * 4 &&
              zv->nbytes == rows * 4);
    if (st == AQ_OK && !ok) st = aq_fail(err, AQ_ERR_FORMAT, "result of %s %s: missing or misshapen tensors", t->layer, t->option);
    if (st == AQ_OK && q->bits == 32) st = source_weight(c, X, &q->w, err);
    if (st == AQ_OK && q->bits < 32 && !(q->w = malloc(rows * cols * sizeof *q->w)))
        st = aq_fail_nomem(err, "tensor", rows * cols * 4);
    if (st == AQ_OK && q->bits == 16) memcpy(q->w, wv->data, rows * cols * 4);
    if (st == AQ_OK && q->bits == 0) st = read_blocks(t->option, bv, q, rb, err);
    if (st == AQ_OK && q->bits > 0 && q->bits < 16) {
        q->codes = malloc(rows * cols > 0 ? rows * cols : 1);
        q->scale = malloc(2 * rows * sizeof *q->scale);
        if (!q->codes || !q->scale) st = aq_fail_nomem(err, "tensor", rows * cols);
    }
    if (st == AQ_OK && q->bits > 0 && q->bits < 16) {
        q->zero = q->scale + rows;
        memcpy(q->codes, cv->data, rows * cols);
        memcpy(q->scale, sv->data, rows * 4);
        memcpy(q->zero, zv->data, rows * 4);
        aq_qtensor_dequant(q->codes, q->scale, q->zero, rows, cols, q->w);
    }
    aq_result_free(r);
    if (st != AQ_OK) aq_pipe_qtensor_free(q);
    return st;
}
