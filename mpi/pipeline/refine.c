/* refine.c — re-linearised bit allocation around the solved one (refine.h). */
#include "refine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/model/sensitivity.h"
#include "../../src/text/textdata.h"
#include "collect.h"
#include "stage_solve.h"

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
        /* the payload gives no alignment: copy the per-row floats out first */
        const uint8_t *uu = u;
        float sa, za;
        for (size_t a = 0; a < o; a++) {
            memcpy(&sa, (const char *)s + a * 4, 4);
            memcpy(&za, (const char *)z + a * 4, 4);
            for (size_t k = 0; k < n; k++)
                c->w[a * n + k] = sa * ((float)uu[a * n + k] - za);
        }
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
    aq_pipe_cfg c = *x->c;
    if (c.kl_windows <= 0) c.kl_windows = 16; /* --refine with --loss layer: the default KL data */
    aq_seqs kl;
    AQ_TRY(aq_pipe_kl_seqs(&c, aq_model_config(x->m)->vocab_size, &kl, err));
    aq_status st = aq_sens_new(x->m, kl.tokens, kl.lens, kl.n, 0, &x->sens, err);
    aq_seqs_free(&kl);
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

/* This rank's share of a round: task i (i mod size == rank) re-measured into
 * mine[i] (the other slots stay 0, so a SUM reduction adds exact zeros). */
static aq_status measure(refine_ctx *x, const int *choice, int rank, int size, double *mine, aq_error *err)
{
    int no = x->c->n_options;
    memset(mine, 0, x->p->n_tasks * sizeof *mine);
    AQ_TRY(install(x, choice, err));
    aq_status st = aq_sens_set_base(x->sens, err);
    /* the linear tasks; the tensor menu's keep their measured KL (with FP linears) */
    for (size_t i = (size_t)rank; st == AQ_OK && i < x->p->n_lin_tasks; i += (size_t)size) {
        int l = (int)(i / (size_t)no);
        const aq_pipe_layer *L = &x->p->layers[l];
        aq_linear_override base = ov_of(&x->cd[(size_t)l * no + choice[l]]), ov = ov_of(&x->cd[i]);
        st = aq_sens_swap_kl(x->sens, L->block, (aq_linear)L->which, &ov, &base, &mine[i], err);
    }
    for (int l = 0; l < x->p->n_layers; l++)
        aq_model_clear_override(x->m, x->p->layers[l].block, (aq_linear)x->p->layers[l].which);
    if (st == AQ_OK) st = aq_sens_set_base(x->sens, err); /* FP again */
    return st;
}

/* Rank 0: shift each layer's row to a minimum of 0 and solve. */
static aq_status resolve(refine_ctx *x, const aq_pipe_budget *b, const double *all, aq_loss_row *rows, int *choice,
                         aq_error *err)
{
    int no = x->c->n_options;
    for (int l = 0; l < x->p->n_layers; l++) {
        double mn = INFINITY;
        for (int k = 0; k < no; k++) mn = fmin(mn, all[(size_t)l * no + k]);
        for (int k = 0; k < no; k++) rows[(size_t)l * no + k].loss = all[(size_t)l * no + k] - mn;
    }
    aq_alloc_table t;
    aq_alloc_solution sol;
    AQ_TRY(aq_pipe_alloc(x->c, x->p, b, rows, &t, &sol, err));
    aq_pipe_choice_of(x->c, x->p, &sol, choice);
    aq_alloc_solution_free(&sol);
    aq_alloc_table_free(&t);
    return AQ_OK;
}

/* One round, collective: measure (tasks spread over the ranks), reduce to
 * rank 0, solve there, broadcast the new choice. */
static aq_status round_once(MPI_Comm comm, refine_ctx *x, const aq_pipe_budget *b, aq_loss_row *rows, int *choice,
                            double *mine, double *all, aq_error *err)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    aq_status st = measure(x, choice, rank, size, mine, err);
    AQ_TRY(aq_pipe_agree(comm, st, err));
    MPI_Reduce(mine, all, (int)x->p->n_tasks, MPI_DOUBLE, MPI_SUM, 0, comm);
    if (rank == 0) st = resolve(x, b, all, rows, choice, err);
    AQ_TRY(aq_pipe_agree(comm, st, err));
    return aq_dist_bcast_choice(comm, 0, choice, (size_t)(x->p->n_layers + x->p->n_extra), err);
}

aq_status aq_pipe_refine(MPI_Comm comm, const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_pipe_budget *b,
                         const aq_loss_row *rows, int *choice, int rounds, aq_error *err)
{
    if (rounds <= 0) return AQ_OK;
    if (b->objective != AQ_ALLOC_MIN_LOSS)
        return aq_fail(err, AQ_ERR_ARG, "--refine needs a size budget (--target-bits / --target-size), not --max-loss");
    int rank;
    MPI_Comm_rank(comm, &rank);
    refine_ctx x = {.c = c, .p = p};
    aq_loss_row *rr = rank == 0 ? malloc(p->n_tasks * sizeof *rr) : NULL;
    double *mine = malloc(p->n_tasks * sizeof *mine), *all = calloc(p->n_tasks, sizeof *all);
    x.cd = calloc(p->n_tasks, sizeof *x.cd);
    aq_status st = (rr || rank) && mine && all && x.cd ? AQ_OK : aq_fail_nomem(err, "refinement table", p->n_tasks);
    if (st == AQ_OK && rank == 0 && !rows) st = aq_fail(err, AQ_ERR_INTERNAL, "refine: rank 0 has no loss rows");
    if (st == AQ_OK && rr) memcpy(rr, rows, p->n_tasks * sizeof *rr);
    for (size_t i = 0; st == AQ_OK && i < p->n_lin_tasks; i++)
        if (p->tasks[i].layer_index * c->n_options + p->tasks[i].option_index != (int)i)
            st = aq_fail(err, AQ_ERR_INTERNAL, "refine: task %zu is not in canonical order", i);
    if (st == AQ_OK) st = aq_model_load_path(c->model, &x.m, err);
    for (size_t i = 0; st == AQ_OK && i < p->n_lin_tasks; i++) st = load_cand(&x, i, err);
    if (st == AQ_OK) st = open_sens(&x, err);
    st = aq_pipe_agree(comm, st, err);
    for (int r = 0; st == AQ_OK && r < rounds; r++) {
        st = round_once(comm, &x, b, rr, choice, mine, all, err);
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
    free(mine);
    free(all);
    return st;
}
