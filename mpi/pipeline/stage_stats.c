/* stage_stats.c — write / read the per-capture-point statistics files
 * (stage_stats.h), reusing the result-file container so there is one
 * compressed, CRC-checked, fingerprinted on-disk format in the work dir.
 *
 * Statistics format 2: the symmetric Grams (gram, and gram_q in sequential
 * mode) are stored as their packed lower triangle, `gram_lower` /
 * `gram_q_lower` F64 [(d+1)(d+2)/2] (row i holds columns 0..i), which halves
 * the bytes written and read; the reader rebuilds the full matrix, so every
 * consumer sees the same doubles as before. Format 1 files (full `gram`
 * [d+1, d+1]) are still read. */
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

/* The lower triangle of the symmetric e x e matrix G, row by row, into a
 * malloc'd *out. The capture mirrors its Grams exactly, so only the first and
 * last rows are checked against the columns (a full check reads the upper
 * half column-wise, a cache miss per element): a Gram that was never
 * mirrored, or has its ones column in the wrong place, is refused with
 * AQ_ERR_ARG instead of losing its upper half. */
static aq_status pack_lower(const char *path, const char *name, const double *G, size_t e, double **out,
                            aq_error *err)
{
    size_t rows[2] = {0, e - 1};
    for (int r = 0; r < 2; r++)
        for (size_t i = rows[r], j = 0; j < e; j++)
            if (memcmp(&G[i * e + j], &G[j * e + i], sizeof(double)))
                return aq_fail(err, AQ_ERR_ARG, "%s: %s is not symmetric at (%zu, %zu)", path, name, i, j);
    double *p = malloc(e * (e + 1) / 2 * sizeof(double) + 1);
    if (!p) return aq_fail_nomem(err, name, e * (e + 1) / 2 * sizeof(double));
    for (size_t i = 0; i < e; i++) /* row i: columns 0..i */
        memcpy(p + i * (i + 1) / 2, G + i * e, (i + 1) * sizeof(double));
    *out = p;
    return AQ_OK;
}

aq_status aq_stats_write(const char *work, const char *sub, const aq_capstat *s, const aq_fingerprint *fp,
                         aq_error *err)
{
    char path[AQ_PIPE_PATH], key[96];
    aq_stats_path(work, sub, s->block, (int)s->point, path);
    key_of(s->block, (int)s->point, key, sizeof key);
    int64_t d = s->d, d1 = d + 1, ns = s->n_sample, nrows = (int64_t)s->n_rows, tri = d1 * (d1 + 1) / 2;
    /* a packed capture (the streaming capture's merged total) is written as
     * it is; a whole one is packed here */
    double *g = NULL, *gq = NULL;
    if (!s->packed) {
        AQ_TRY(pack_lower(path, "gram", s->gram, (size_t)d1, &g, err));
        if (s->cross) {
            aq_status st = pack_lower(path, "gram_q", s->gram_q, (size_t)d1, &gq, err);
            if (st != AQ_OK) {
                free(g);
                return st;
            }
        }
    }
    const double *gl = s->packed ? s->gram : g, *gql = s->packed ? s->gram_q : gq;
    aq_tensor_view t[10] = {
        {"gram_lower", AQ_F64, 1, {tri}, gl, (size_t)tri * 8},
        {"xmin", AQ_F32, 1, {d}, s->xmin, (size_t)d * 4},
        {"xmax", AQ_F32, 1, {d}, s->xmax, (size_t)d * 4},
        {"sample", AQ_F32, 2, {ns, d}, s->sample, (size_t)(ns * d) * 4},
        {"sample_win", AQ_U32, 1, {ns}, s->sample_win, (size_t)ns * 4},
        {"sample_pos", AQ_U32, 1, {ns}, s->sample_pos, (size_t)ns * 4},
        {"n_rows", AQ_I64, 1, {1}, &nrows, 8},
        {"cross", AQ_F64, 2, {d1, d1}, s->cross, (size_t)(d1 * d1) * 8},
        {"gram_q_lower", AQ_F64, 1, {tri}, gql, (size_t)tri * 8},
        {"sample_q", AQ_F32, 2, {ns, d}, s->sample_q, (size_t)(ns * d) * 4},
    };
    aq_result_desc desc = {.layer = key, .option = "capture", .fp = *fp, .n_tensors = s->cross ? 10 : 7,
                           .tensors = t, .stored = 1}; /* Grams do not deflate (resultfile.h) */
    desc.row.loss = 0;
    desc.row.loss_rtn = desc.row.loss_gptq = desc.row.loss_init = 0;
    desc.row.w_bits = 32;
    desc.row.a_bits = 32;
    aq_status st = aq_result_write(path, &desc, err);
    free(g);
    free(gq);
    return st;
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

/* The full e x e symmetric matrix of a packed lower triangle (format 2), or a
 * copy of a full one (format 1), into own[i]. */
static const double *full_gram(aq_stats *s, int i, const aq_tensor_view *v, size_t e)
{
    if (v->ndim == 2) return aligned(s, i, v);
    double *G = malloc(e * e * sizeof(double) + 1);
    s->own[i] = G ? (void *)G : (void *)s;
    if (!G) return NULL;
    const unsigned char *p = v->data; /* may be unaligned */
    for (size_t r = 0; r < e; r++) {
        memcpy(G + r * e, p + r * (r + 1) / 2 * sizeof(double), (r + 1) * sizeof(double));
        for (size_t c = 0; c < r; c++) G[c * e + r] = G[r * e + c];
    }
    return G;
}

/* The Gram `name` (format 2: `name`_lower packed, else format 1: `name` full)
 * of width e; NULL *v if neither is present. AQ_ERR_FORMAT on a wrong size. */
static aq_status find_gram(const aq_result *r, const char *path, const char *name, size_t e,
                           const aq_tensor_view **v, aq_error *err)
{
    char lower[32];
    snprintf(lower, sizeof lower, "%s_lower", name);
    *v = aq_result_find(r, lower);
    if (*v) {
        if ((*v)->dtype != AQ_F64 || (*v)->ndim != 1 || (*v)->nbytes != e * (e + 1) / 2 * sizeof(double))
            return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor '%s' is not the packed lower triangle of a %zu x %zu Gram",
                           path, lower, e, e);
        return AQ_OK;
    }
    *v = aq_result_find(r, name); /* statistics format 1 (before the packed Grams) */
    if (*v && ((*v)->dtype != AQ_F64 || (*v)->ndim != 2 || (size_t)(*v)->shape[0] != e || (size_t)(*v)->shape[1] != e))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor '%s' is not a %zu x %zu float64 Gram", path, name, e, e);
    return AQ_OK;
}

/* Validate the tensors of a file read into out->r and point out's views at
 * owned, aligned copies (the Grams in full). */
static aq_status take_stats(aq_stats *out, const char *path, const char *key, aq_error *err)
{
    const aq_tensor_view *g, *s, *n, *x, *y, *z;
    if (strcmp(out->r->layer, key) || strcmp(out->r->option, "capture"))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: holds '%s', expected '%s'", path, out->r->layer, key);
    AQ_TRY(want(out->r, path, "sample", AQ_F32, 2, &s, err));
    AQ_TRY(want(out->r, path, "n_rows", AQ_I64, 1, &n, err));
    size_t e = (size_t)s->shape[1] + 1;
    AQ_TRY(find_gram(out->r, path, "gram", e, &g, err));
    if (!g || n->shape[0] != 1)
        return aq_fail(err, AQ_ERR_SHAPE, "%s: missing gram or inconsistent gram/sample shapes", path);
    out->d = (int)s->shape[1];
    out->gram = full_gram(out, 0, g, e);
    out->sample = aligned(out, 1, s);
    out->n_sample = (size_t)s->shape[0];
    int64_t nr;
    memcpy(&nr, n->data, 8);
    out->n_rows = (uint64_t)nr;
    x = aq_result_find(out->r, "cross");
    AQ_TRY(find_gram(out->r, path, "gram_q", e, &y, err));
    z = aq_result_find(out->r, "sample_q");
    if (x || y || z) {
        if (!x || !y || !z || x->nbytes != e * e * sizeof(double) || z->nbytes != s->nbytes)
            return aq_fail(err, AQ_ERR_FORMAT, "%s: incomplete sequential-mode statistics", path);
        out->cross = aligned(out, 2, x);
        out->gram_q = full_gram(out, 3, y, e);
        out->sample_q = aligned(out, 4, z);
    }
    for (int i = 0; i < 5; i++)
        if (out->own[i] == out) /* an allocation failed */
            return aq_fail_nomem(err, "statistics", e * e * sizeof(double));
    return AQ_OK;
}

aq_status aq_stats_read(const char *work, const char *sub, int block, int point, const aq_fingerprint *fp,
                        aq_stats *out, aq_error *err)
{
    char path[AQ_PIPE_PATH], key[96];
    memset(out, 0, sizeof *out);
    aq_stats_path(work, sub, block, point, path);
    key_of(block, point, key, sizeof key);
    AQ_TRY(aq_result_read(path, fp, &out->r, err));
    aq_status st = take_stats(out, path, key, err);
    if (st != AQ_OK) aq_stats_free(out);
    return st;
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
    aq_llama_config m;
    aq_error e = {0};
    if (aq_ckpt_read_llama_config(c->model, &m, &e) != AQ_OK) return 0;
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
