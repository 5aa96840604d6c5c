/* refine.c — re-linearised bit allocation around the solved one (refine.h). */
#include "refine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/model/sensitivity.h"
#include "../../src/text/textdata.h"

typedef struct cand {
    float *w, *bias; /* dequantised weight [d_out, d_in], bias [d_out] */
    int a_bits;
    float a_scale, a_zero;
} cand;

typedef struct refine_ctx {
    const aq_pipe_cfg *c;
    const aq_pipe_plan *p;
    aq_model *m;
    cand *cd; /* [n_tasks], task order = layer * n_options + option */
    aq_sens *sens;
} refine_ctx;

static aq_linear_override ov_of(const cand *c)
{
    return (aq_linear_override){c->w, c->bias, c->a_bits < 16 ? c->a_bits : 0, c->a_scale, c->a_zero};
}

static aq_status need(const aq_result *r, const char *name, aq_dtype dt, size_t bytes, const void **data,
                      aq_error *err)
{
    const aq_tensor_view *v = aq_result_find(r, name);
    if (!v || v->dtype != dt || v->nbytes != bytes)
        return aq_fail(err, AQ_ERR_FORMAT, "result %s %s: tensor %s missing or of the wrong type/size", r->layer,
                       r->option, name);
    *data = v->data;
    return AQ_OK;
}

/* Task i's dequantised layer, by the qlayer formula W = s * (u - z). */
static aq_status load_cand(refine_ctx *x, size_t i, aq_error *err)
{
    const aq_dist_task *t = &x->p->tasks[i];
    const aq_pipe_layer *L = &x->p->layers[t->layer_index];
    size_t o = (size_t)L->d_out, n = (size_t)L->d_in;
    char *path;
    aq_result *r = NULL;
    AQ_TRY(aq_result_path(x->c->work, t->layer, t->option, &path, err));
    aq_status st = aq_result_read(path, &t->fp, &r, err);
    free(path);
    if (st != AQ_OK) return st;
    const void *u = NULL, *s = NULL, *z = NULL, *b = NULL, *as = NULL, *az = NULL;
    st = need(r, "codes", AQ_U8, o * n, &u, err);
    if (st == AQ_OK) st = need(r, "w_scale", AQ_F32, o * 4, &s, err);
    if (st == AQ_OK) st = need(r, "w_zero", AQ_F32, o * 4, &z, err);
    if (st == AQ_OK) st = need(r, "bias", AQ_F32, o * 4, &b, err);
    if (st == AQ_OK) st = need(r, "a_scale", AQ_F32, 4, &as, err);
    if (st == AQ_OK) st = need(r, "a_zero", AQ_F32, 4, &az, err);
    cand *c = &x->cd[i];
    if (st == AQ_OK) {
        c->w = malloc(o * n * sizeof *c->w);
        c->bias = malloc(o * sizeof *c->bias);
        if (!c->w || !c->bias) st = aq_fail_nomem(err, "refinement weights", o * n * 4);
    }
    if (st == AQ_OK) {
        const uint8_t *uu = u;
        const float *ss = s, *zz = z;
        for (size_t a = 0; a < o; a++)
            for (size_t k = 0; k < n; k++)
                c->w[a * n + k] = ss[a] * ((float)uu[a * n + k] - zz[a]);
        memcpy(c->bias, b, o * 4);
        memcpy(&c->a_scale, as, 4);
        memcpy(&c->a_zero, az, 4);
        c->a_bits = r->row.a_bits;
    }
    aq_result_free(r);
    return st;
}

static aq_status open_sens(refine_ctx *x, aq_error *err)
{
    const aq_pipe_cfg *c = x->c;
    int K = c->kl_windows > 0 ? c->kl_windows : 16, *tok = NULL;
    if (K > c->windows) K = c->windows;
    aq_tokenizer *tk;
    AQ_TRY(aq_tok_open(c->tokenizer, aq_model_config(x->m)->vocab_size, &tk, err));
    aq_docs d;
    aq_status st = aq_docs_read(c->calib_text, &d, err);
    if (st == AQ_OK) {
        st = aq_calib_windows(tk, &d, K, c->seq_len, &tok, err);
        aq_docs_free(&d);
    }
    aq_tok_close(tk);
    int *lens = st == AQ_OK ? malloc((size_t)K * sizeof *lens) : NULL;
    if (st == AQ_OK && !lens) st = aq_fail_nomem(err, "refinement windows", (size_t)K);
    for (int i = 0; st == AQ_OK && i < K; i++) lens[i] = c->seq_len;
    if (st == AQ_OK) st = aq_sens_new(x->m, tok, lens, K, 0, &x->sens, err);
    free(tok);
    free(lens);
    return st;
}

static aq_status install(refine_ctx *x, const int *choice, aq_error *err)
{
    for (int l = 0; l < x->p->n_layers; l++) {
        const aq_pipe_layer *L = &x->p->layers[l];
        aq_linear_override ov = ov_of(&x->cd[(size_t)l * x->c->n_options + choice[l]]);
        AQ_TRY(aq_model_set_override(x->m, L->block, (aq_linear)L->which, &ov, err));
    }
    return AQ_OK;
}

/* One round: the re-linearised loss of every task into loss[], then solve. */
static aq_status round_once(refine_ctx *x, const aq_pipe_budget *b, aq_loss_row *rows, int *choice, aq_error *err)
{
    int no = x->c->n_options;
    AQ_TRY(install(x, choice, err));
    AQ_TRY(aq_sens_set_base(x->sens, err));
    for (int l = 0; l < x->p->n_layers; l++) {
        const aq_pipe_layer *L = &x->p->layers[l];
        aq_linear_override base = ov_of(&x->cd[(size_t)l * no + choice[l]]);
        double mn = INFINITY;
        for (int k = 0; k < no; k++) {
            aq_linear_override ov = ov_of(&x->cd[(size_t)l * no + k]);
            AQ_TRY(aq_sens_swap_kl(x->sens, L->block, (aq_linear)L->which, &ov, &base, &rows[(size_t)l * no + k].loss,
                                   err));
            mn = fmin(mn, rows[(size_t)l * no + k].loss);
        }
        for (int k = 0; k < no; k++) rows[(size_t)l * no + k].loss -= mn;
    }
    for (int l = 0; l < x->p->n_layers; l++)
        aq_model_clear_override(x->m, x->p->layers[l].block, (aq_linear)x->p->layers[l].which);
    AQ_TRY(aq_sens_set_base(x->sens, err)); /* FP again */
    aq_alloc_table t;
    aq_alloc_solution sol;
    AQ_TRY(aq_pipe_alloc(x->c, x->p, b, rows, &t, &sol, err));
    for (int l = 0; l < x->p->n_layers; l++) choice[l] = (int)(sol.row[l] % (size_t)no);
    aq_alloc_solution_free(&sol);
    aq_alloc_table_free(&t);
    return AQ_OK;
}

aq_status aq_pipe_refine(const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_pipe_budget *b,
                         const aq_loss_row *rows, int *choice, int rounds, aq_error *err)
{
    if (rounds <= 0) return AQ_OK;
    if (b->objective != AQ_ALLOC_MIN_LOSS)
        return aq_fail(err, AQ_ERR_ARG, "--refine needs a size budget (--target-bits / --target-size), not --max-loss");
    refine_ctx x = {.c = c, .p = p};
    aq_loss_row *rr = malloc(p->n_tasks * sizeof *rr);
    x.cd = calloc(p->n_tasks, sizeof *x.cd);
    aq_status st = rr && x.cd ? AQ_OK : aq_fail_nomem(err, "refinement table", p->n_tasks);
    if (st == AQ_OK) memcpy(rr, rows, p->n_tasks * sizeof *rr);
    for (size_t i = 0; st == AQ_OK && i < p->n_tasks; i++)
        if (p->tasks[i].layer_index * c->n_options + p->tasks[i].option_index != (int)i)
            st = aq_fail(err, AQ_ERR_INTERNAL, "refine: task %zu is not in canonical order", i);
    if (st == AQ_OK) st = aq_model_load_path(c->model, &x.m, err);
    for (size_t i = 0; st == AQ_OK && i < p->n_tasks; i++) st = load_cand(&x, i, err);
    if (st == AQ_OK) st = open_sens(&x, err);
    for (int r = 0; st == AQ_OK && r < rounds; r++) {
        st = round_once(&x, b, rr, choice, err);
        if (st != AQ_OK) aq_error_prefix(err, "refinement round %d", r + 1);
    }
    aq_sens_free(x.sens);
    aq_model_free(x.m);
    for (size_t i = 0; x.cd && i < p->n_tasks; i++) {
        free(x.cd[i].w);
        free(x.cd[i].bias);
    }
    free(x.cd);
    free(rr);
    return st;
}
