/* stage_solve.c — pipeline stage 3 (rank 0): the loss/bit table of all tasks
 * (from the driver's gathered rows, or read back from the result files by the
 * standalone `adaquant solve`), the bit-allocation program (solver/), and the
 * chosen option per layer. Missing results are reported with the shards they
 * belong to and the exact command that recomputes only those. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pipeline.h"
#include "pipeline_size.h"
#include "tasks.h"
#include "stage_solve.h"

/* Which shard of `shards` each task belongs to (LPT, aq_dist_shard_tasks). */
static aq_status shard_of_tasks(const aq_pipe_plan *p, int shards, int *shard, aq_error *err)
{
    size_t n = p->n_tasks, k;
    double *cost = malloc(n * sizeof *cost);
    size_t *idx = malloc(n * sizeof *idx);
    aq_status st = cost && idx ? AQ_OK : aq_fail_nomem(err, "shard map", n);
    for (size_t i = 0; st == AQ_OK && i < n; i++) cost[i] = p->tasks[i].cost;
    for (int s = 0; st == AQ_OK && s < shards; s++) {
        st = aq_dist_shard_tasks(cost, n, s, shards, idx, &k, err);
        for (size_t j = 0; st == AQ_OK && j < k; j++) shard[idx[j]] = s;
    }
    free(cost);
    free(idx);
    return st;
}

static int read_shards(const char *work)
{
    char path[AQ_PIPE_PATH];
    aq_pipe_path(work, "shards.json", path);
    json_t *o = json_load_file(path, 0, NULL);
    int n = o ? (int)json_integer_value(json_object_get(o, "shards")) : 0;
    json_decref(o);
    return n;
}

/* The error for missing results: count, first few tasks, shards, command. */
static aq_status missing_error(const aq_pipe_cfg *c, const aq_pipe_plan *p, const unsigned char *miss,
                               size_t n_miss, aq_error *err)
{
    char msg[AQ_ERROR_MSG_MAX] = "", *q = msg;
    size_t left = sizeof msg;
    int shards = read_shards(c->work);
    int *shard = shards > 0 ? calloc(p->n_tasks, sizeof *shard) : NULL;
    if (shard && shard_of_tasks(p, shards, shard, err) != AQ_OK) {
        free(shard);
        shard = NULL;
    }
#define PUT(...) do { int w_ = snprintf(q, left, __VA_ARGS__); if (w_ > 0 && (size_t)w_ < left) q += w_, left -= (size_t)w_; } while (0)
    PUT("%zu of %zu tasks have no valid result in %s/results (first:", n_miss, p->n_tasks, c->work);
    for (size_t i = 0, shown = 0; i < p->n_tasks && shown < 3; i++)
        if (miss[i]) PUT(" %s %s%s", p->tasks[i].layer, p->tasks[i].option, ++shown < 3 ? "," : "");
    PUT(")");
    if (shard) {
        /* Missing shards as Slurm array syntax with ranges ("2,5-9"), bounded. */
        char list[256] = "";
        size_t used = 0;
        unsigned char *seen = calloc((size_t)shards, 1);
        for (size_t i = 0; i < p->n_tasks && seen; i++)
            if (miss[i]) seen[shard[i]] = 1;
        for (int s = 0; seen && s < shards; s++) {
            if (!seen[s] || (s > 0 && seen[s - 1])) continue;
            int e = s;
            while (e + 1 < shards && seen[e + 1]) e++;
            char item[32];
            int w = e > s ? snprintf(item, sizeof item, "%s%d-%d", used ? "," : "", s, e)
                          : snprintf(item, sizeof item, "%s%d", used ? "," : "", s);
            if (w < 0 || used + (size_t)w >= sizeof list) break; /* the count below still says how many */
            memcpy(list + used, item, (size_t)w + 1);
            used += (size_t)w;
        }
        int n_seen = 0;
        for (int s = 0; seen && s < shards; s++) n_seen += seen[s];
        PUT("; missing shards %s of %d; resubmit exactly those: slurm/submit.sh --resubmit %s --shards %d --work %s "
            "(Slurm), or without Slurm:", list, shards, list, shards, c->work);
        for (int s = 0, k = 0; seen && s < shards; s++)
            if (seen[s] && k < 3) PUT("%s adaquant calibrate --work %s --shard %d --shards %d", k++ ? ";" : "", c->work, s, shards);
        if (n_seen > 3) PUT("; ... (%d shards in all)", n_seen);
        free(seen);
    } else {
        PUT("; run: adaquant calibrate --work %s --shard 0 --shards 1", c->work);
    }
#undef PUT
    free(shard);
    return aq_fail(err, AQ_ERR_NOTFOUND, "%s", msg);
}

static aq_status read_rows(const aq_pipe_cfg *c, const aq_pipe_plan *p, aq_loss_row *rows, aq_error *err)
{
    unsigned char *miss = calloc(p->n_tasks, 1);
    if (!miss) return aq_fail_nomem(err, "missing list", p->n_tasks);
    size_t n_miss = 0;
    aq_status st = AQ_OK;
    for (size_t i = 0; i < p->n_tasks && st == AQ_OK; i++) {
        char *path;
        aq_error e = {0};
        st = aq_result_path(c->work, p->tasks[i].layer, p->tasks[i].option, &path, err);
        if (st != AQ_OK) break;
        if (aq_result_check(path, p->tasks[i].layer, p->tasks[i].option, &p->tasks[i].fp, &rows[i], &e) != AQ_OK) {
            if (e.code != AQ_ERR_NOTFOUND) fprintf(stderr, "adaquant: solve: invalid result: %s\n", e.msg);
            miss[i] = 1;
            n_miss++;
        }
        free(path);
    }
    if (st == AQ_OK && n_miss) st = missing_error(c, p, miss, n_miss, err);
    free(miss);
    return st;
}

/* The allocation table: the linear tasks (size = params x w_bits, the
 * --target-bits measure) or, under a budget in bytes, every task with its
 * bytes in the model files (pipeline_size.h), the tensor menu included. */
static aq_status build_table(const aq_pipe_plan *p, const aq_loss_row *rows, const aq_pipe_size *sz,
                             aq_alloc_table *t, aq_error *err)
{
    aq_alloc_table_init(t);
    size_t n = sz ? p->n_tasks : p->n_lin_tasks;
    for (size_t i = 0; i < n; i++) {
        const aq_loss_row *r = &rows[i];
        if (aq_pipe_task_absent(p, i)) continue; /* pipeline_size.h */
        AQ_TRY(aq_alloc_table_add(t, p->tasks[i].layer, p->tasks[i].option, r->params, r->w_bits, r->a_bits,
                                  r->macs, r->loss, sz ? 8 * sz->task_bytes[i] : 0, 0, err));
    }
    return AQ_OK;
}

aq_status aq_pipe_alloc(const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_pipe_budget *b,
                        const aq_loss_row *rows, aq_alloc_table *t, aq_alloc_solution *sol, aq_error *err)
{
    aq_alloc_rule keep[AQ_PIPE_MAX_KEEP];
    aq_alloc_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.objective = b->objective;
    spec.size_unit = b->objective == AQ_ALLOC_MIN_LOSS ? b->size_unit : AQ_SIZE_NONE;
    spec.size_budget = b->size_value;
    spec.max_loss = b->max_loss;
    for (size_t k = 0; k < b->n_keep; k++) keep[k] = (aq_alloc_rule){b->keep_regex[k], b->keep_opt[k]};
    spec.keep = keep;
    spec.n_keep = b->n_keep;
    memset(sol, 0, sizeof *sol);
    aq_pipe_size sz;
    int bytes = aq_pipe_budget_bytes(b);
    if (bytes) {
        AQ_TRY(aq_pipe_size_build(c, p, 1, &sz, err));
        spec.size_budget = (double)aq_pipe_budget_byte_value(b, &sz);
        spec.size_fixed_bits = 8 * sz.fixed;
    }
    aq_status st = build_table(p, rows, bytes ? &sz : NULL, t, err);
    if (st == AQ_OK) st = aq_alloc_solve(t, &spec, sol, err);
    if (st != AQ_OK) aq_alloc_table_free(t);
    if (bytes) aq_pipe_size_free(&sz);
    return st;
}

/* choice[l] from the solution: rows are in task order (linears, then the
 * tensor menu); an extra outside the table stays -1 (F32). */
void aq_pipe_choice_of(const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_alloc_solution *sol, int *choice)
{
    /* table row -> task: absent group options have no row (build_table) */
    size_t n_abs = 0;
    for (size_t i = 0; i < p->n_lin_tasks; i++) n_abs += (size_t)aq_pipe_task_absent(p, i);
    for (int l = 0; l < p->n_layers; l++) {
        size_t k = 0, i = 0;
        for (; i < p->n_lin_tasks; i++)
            if (!aq_pipe_task_absent(p, i) && k++ == sol->row[l]) break;
        choice[l] = (int)(i % (size_t)c->n_options);
    }
    for (int e = 0; e < p->n_extra; e++) {
        choice[p->n_layers + e] = -1;
        if ((size_t)(p->n_layers + e) < sol->n_layers)
            choice[p->n_layers + e] =
                (int)((sol->row[p->n_layers + e] + n_abs - p->n_lin_tasks) % (size_t)c->n_embed_options);
    }
}

aq_status aq_pipe_solve(const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_pipe_budget *b,
                        const aq_loss_row *rows, aq_loss_row **rows_out, int *choice, aq_error *err)
{
    aq_loss_row *own = NULL;
    if (!rows) {
        own = calloc(p->n_tasks, sizeof *own);
        if (!own) return aq_fail_nomem(err, "loss table", p->n_tasks);
        aq_status st = read_rows(c, p, own, err);
        if (st != AQ_OK) {
            free(own);
            return st;
        }
        rows = own;
    }
    aq_alloc_table t;
    aq_alloc_solution sol;
    aq_status st = aq_pipe_alloc(c, p, b, rows, &t, &sol, err);
    if (st == AQ_OK) {
        aq_pipe_choice_of(c, p, &sol, choice);
        aq_alloc_solution_free(&sol);
        aq_alloc_table_free(&t);
    }
    if (st == AQ_OK && rows_out && own) {
        *rows_out = own;
        own = NULL;
    }
    free(own);
    return st;
}
