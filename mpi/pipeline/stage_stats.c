/* stage_stats.c — write / read the per-capture-point statistics files
 * (stage_stats.h), reusing the result-file container so there is one
 * compressed, CRC-checked, fingerprinted on-disk format in the work dir. */
#include <stdlib.h>
#include <string.h>

#include "../../io/checkpoint.h"
#include "stage_stats.h"

void aq_stats_path(const char *work, const char *sub, int block, int point, char *out)
{
    snprintf(out, AQ_PIPE_PATH, "%s/%s/%d.%s.aqs", work, sub, block, aq_cap_point_name((aq_cap_point)point));
}

static void key_of(int block, int point, char *buf, size_t n)
{
    snprintf(buf, n, "stats.%d.%s", block, aq_cap_point_name((aq_cap_point)point));
}

aq_status aq_stats_write(const char *work, const char *sub, const aq_capstat *s, const aq_fingerprint *fp,
                         aq_error *err)
{
    char path[AQ_PIPE_PATH], key[96];
    aq_stats_path(work, sub, s->block, (int)s->point, path);
    key_of(s->block, (int)s->point, key, sizeof key);
    int64_t d = s->d, d1 = d + 1, ns = s->n_sample, nrows = (int64_t)s->n_rows;
    aq_tensor_view t[10] = {
        {"gram", AQ_F64, 2, {d1, d1}, s->gram, (size_t)(d1 * d1) * 8},
        {"xmin", AQ_F32, 1, {d}, s->xmin, (size_t)d * 4},
        {"xmax", AQ_F32, 1, {d}, s->xmax, (size_t)d * 4},
        {"sample", AQ_F32, 2, {ns, d}, s->sample, (size_t)(ns * d) * 4},
        {"sample_win", AQ_U32, 1, {ns}, s->sample_win, (size_t)ns * 4},
        {"sample_pos", AQ_U32, 1, {ns}, s->sample_pos, (size_t)ns * 4},
        {"n_rows", AQ_I64, 1, {1}, &nrows, 8},
        {"cross", AQ_F64, 2, {d1, d1}, s->cross, (size_t)(d1 * d1) * 8},
        {"gram_q", AQ_F64, 2, {d1, d1}, s->gram_q, (size_t)(d1 * d1) * 8},
        {"sample_q", AQ_F32, 2, {ns, d}, s->sample_q, (size_t)(ns * d) * 4},
    };
    aq_result_desc desc = {.layer = key, .option = "capture", .fp = *fp, .n_tensors = s->cross ? 10 : 7,
                           .tensors = t, .stored = 1}; /* Grams do not deflate (resultfile.h) */
    desc.row.loss = 0;
    desc.row.loss_rtn = desc.row.loss_gptq = desc.row.loss_init = 0;
    desc.row.w_bits = 32;
    desc.row.a_bits = 32;
    return aq_result_write(path, &desc, err);
}

static aq_status want(const aq_result *r, const char *path, const char *name, aq_dtype dt, int ndim,
                      const aq_tensor_view **v, aq_error *err)
{
    *v = aq_result_find(r, name);
    if (!*v || (*v)->dtype != dt || (*v)->ndim != ndim)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor '%s' missing or of the wrong type", path, name);
    return AQ_OK;
}

/* An aligned, owned copy of a tensor's data (the numeric core reads doubles
 * and floats directly); on allocation failure own[i] = s marks the error. */
static const void *aligned(aq_stats *s, int i, const aq_tensor_view *v)
{
    void *p = malloc(v->nbytes ? v->nbytes : 1);
    if (!p) {
        s->own[i] = s;
        return NULL;
    }
    memcpy(p, v->data, v->nbytes);
    s->own[i] = p;
    return p;
}

aq_status aq_stats_read(const char *work, const char *sub, int block, int point, const aq_fingerprint *fp,
                        aq_stats *out, aq_error *err)
{
    char path[AQ_PIPE_PATH], key[96];
    memset(out, 0, sizeof *out);
    aq_stats_path(work, sub, block, point, path);
    key_of(block, point, key, sizeof key);
    AQ_TRY(aq_result_read(path, fp, &out->r, err));
    aq_status st = AQ_OK;
    const aq_tensor_view *g, *s, *n;
    if (strcmp(out->r->layer, key) || strcmp(out->r->option, "capture"))
        st = aq_fail(err, AQ_ERR_FORMAT, "%s: holds '%s', expected '%s'", path, out->r->layer, key);
    if (st == AQ_OK) st = want(out->r, path, "gram", AQ_F64, 2, &g, err);
    if (st == AQ_OK) st = want(out->r, path, "sample", AQ_F32, 2, &s, err);
    if (st == AQ_OK) st = want(out->r, path, "n_rows", AQ_I64, 1, &n, err);
    if (st == AQ_OK && (g->shape[0] != g->shape[1] || s->shape[1] != g->shape[0] - 1 || n->shape[0] != 1))
        st = aq_fail(err, AQ_ERR_SHAPE, "%s: inconsistent gram/sample shapes", path);
    if (st != AQ_OK) {
        aq_stats_free(out);
        return st;
    }
    out->d = (int)s->shape[1];
    out->gram = aligned(out, 0, g);
    out->sample = aligned(out, 1, s);
    out->n_sample = (size_t)s->shape[0];
    int64_t nr;
    memcpy(&nr, n->data, 8);
    out->n_rows = (uint64_t)nr;
    const aq_tensor_view *x = aq_result_find(out->r, "cross"), *y = aq_result_find(out->r, "gram_q"),
                         *z = aq_result_find(out->r, "sample_q");
    if (x || y || z) {
        if (!x || !y || !z || x->nbytes != g->nbytes || y->nbytes != g->nbytes || z->nbytes != s->nbytes) {
            aq_stats_free(out);
            return aq_fail(err, AQ_ERR_FORMAT, "%s: incomplete sequential-mode statistics", path);
        }
        out->cross = aligned(out, 2, x);
        out->gram_q = aligned(out, 3, y);
        out->sample_q = aligned(out, 4, z);
    }
    for (int i = 0; i < 5; i++)
        if (out->own[i] == out) { /* an allocation failed */
            aq_stats_free(out);
            return aq_fail_nomem(err, "statistics", g->nbytes);
        }
    return AQ_OK;
}

void aq_stats_free(aq_stats *s)
{
    for (int i = 0; i < 5; i++)
        if (s->own[i] != s) free(s->own[i]);
    aq_result_free(s->r);
    memset(s, 0, sizeof *s);
}

int aq_stats_all_valid(const aq_pipe_cfg *c, FILE *log)
{
    aq_checkpoint *ck;
    aq_llama_config m;
    aq_error e = {0};
    if (aq_ckpt_open(c->model, &ck, &e) != AQ_OK) return 0;
    aq_status st = aq_ckpt_llama_config(ck, &m, &e);
    aq_ckpt_close(ck);
    if (st != AQ_OK) return 0;
    aq_fingerprint fp = aq_pipe_stats_fp(c);
    for (int b = 0; b < m.n_layers; b++)
        for (int p = 0; p < AQ_CAP_COUNT; p++) {
            aq_stats s;
            if (aq_stats_read(c->work, "stats", b, p, &fp, &s, &e) != AQ_OK) {
                if (log && e.code != AQ_ERR_NOTFOUND)
                    fprintf(log, "adaquant: capture: invalid statistics file, recomputing: %s\n", e.msg);
                return 0;
            }
            aq_stats_free(&s);
        }
    return 1;
}
