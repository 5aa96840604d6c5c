/* eval.c — classification with the CNN engine: pixel normalisation, batched
 * prediction of u8 images (chunk by chunk, so memory does not grow with the
 * number of images) and the counts behind top-1 and agreement. */
#include <stdlib.h>
#include <string.h>

#include "cnn_internal.h"

aq_status aq_cnn_norm_parse(const char *s, aq_cnn_norm *n, aq_error *err)
{
    memset(n, 0, sizeof *n);
    if (!strcmp(s, "none")) {
        n->raw = 1;
        return AQ_OK;
    }
    char *end;
    n->mean = strtod(s, &end);
    if (end == s || *end != ',') goto bad;
    const char *t = end + 1;
    n->std = strtod(t, &end);
    if (end == t || *end || !(n->std > 0) || n->mean != n->mean) goto bad;
    return AQ_OK;
bad:
    return aq_fail(err, AQ_ERR_ARG, "normalisation '%s': expected MEAN,STD (STD > 0) or none", s);
}

static void normalise(const uint8_t *px, size_t n, const aq_cnn_norm *nm, float *x)
{
    for (size_t i = 0; i < n; i++)
        x[i] = nm->raw ? (float)px[i] : (float)(((double)px[i] / 255.0 - nm->mean) / nm->std);
}

/* One chunk of `b` images through plan p (planned for b). */
static aq_status run_chunk(const aq_cnn_plan *p, aq_cnn_pool *pool, const uint8_t *px,
                           size_t image_size, const aq_cnn_norm *nm, float *x, float *y,
                           size_t classes, int32_t *pred, float *logits, aq_error *err)
{
    size_t b = (size_t)p->batch;
    normalise(px, b * image_size, nm, x);
    AQ_TRY(aq_cnn_forward(p, pool, x, y, NULL, NULL, err));
    for (size_t i = 0; i < b; i++) {
        const float *yi = y + i * classes;
        size_t best = 0;
        for (size_t c = 1; c < classes; c++)
            if (yi[c] > yi[best]) best = c;
        pred[i] = (int32_t)best;
    }
    if (logits) memcpy(logits, y, b * classes * sizeof(float));
    return AQ_OK;
}

/* The per-image input and output sizes of a plan (and their checks). */
static aq_status plan_sizes(const aq_cnn_plan *p, size_t image_size, size_t *classes, aq_error *err)
{
    const aq_cnn_graph *g = p->g;
    size_t in = aq_cnn_numel(&p->shape[g->input]) / (size_t)p->batch;
    size_t out = aq_cnn_numel(&p->shape[g->output]);
    const char *path = g->path ? g->path : "model";
    if (in != image_size)
        return aq_fail(err, AQ_ERR_SHAPE,
                       "%s: the model takes %zu values per image, the images have %zu pixels", path,
                       in, image_size);
    if (!p->batched[g->output] || out % (size_t)p->batch)
        return aq_fail(err, AQ_ERR_SHAPE, "%s: the output '%s' does not keep the batch axis", path,
                       g->values[g->output].name ? g->values[g->output].name : "?");
    *classes = out / (size_t)p->batch;
    return AQ_OK;
}

aq_status aq_cnn_predict(const aq_cnn_graph *g, const uint8_t *pixels, size_t n, size_t image_size,
                         const aq_cnn_norm *norm, int chunk, int32_t *pred, float *logits,
                         size_t *classes, aq_error *err)
{
    if (chunk < 1) return aq_fail(err, AQ_ERR_ARG, "CNN eval: chunk size %d must be >= 1", chunk);
    if (n == 0) return aq_fail(err, AQ_ERR_ARG, "CNN eval: no images");
    size_t b = n < (size_t)chunk ? n : (size_t)chunk, cls = 0;
    aq_cnn_plan p = {0};
    aq_cnn_pool pool = {0}; /* activations reused from chunk to chunk */
    float *x = NULL, *y = NULL;
    aq_status st;
    AQ_TRY_GOTO(st, aq_cnn_plan_init(g, (int)b, &p, err), done);
    AQ_TRY_GOTO(st, plan_sizes(&p, image_size, &cls, err), done);
    x = malloc(b * image_size * sizeof(float));
    y = malloc(b * cls * sizeof(float));
    if (!x || !y) {
        st = aq_fail_nomem(err, "CNN eval batch", b * (image_size + cls) * sizeof(float));
        goto done;
    }
    for (size_t i = 0; i < n; i += (size_t)p.batch) {
        if (n - i < (size_t)p.batch) { /* the last, shorter chunk gets its own plan */
            aq_cnn_plan_free(&p);
            AQ_TRY_GOTO(st, aq_cnn_plan_init(g, (int)(n - i), &p, err), done);
        }
        AQ_TRY_GOTO(st,
                    run_chunk(&p, &pool, pixels + i * image_size, image_size, norm, x, y, cls,
                              pred + i, logits ? logits + i * cls : NULL, err),
                    done);
    }
    if (classes) *classes = cls;
done:
    aq_cnn_pool_free(&pool);
    aq_cnn_plan_free(&p);
    free(x);
    free(y);
    return st;
}

size_t aq_cnn_count_equal(const int32_t *a, const int32_t *b, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += a[i] == b[i];
    return c;
}
