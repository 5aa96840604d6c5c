/* stage_write.c — pipeline stage 4: assemble the chosen results, evaluate FP
 * vs quantized (documents spread over the ranks), and write OUTDIR atomically
 * on rank 0: everything goes to OUTDIR.tmp.<pid>/, which is renamed to OUTDIR
 * only when complete. The layout is specified in docs/FORMAT.md. Nothing
 * written to model.safetensors or quantization.json depends on the number of
 * ranks, on timings, or on which run produced a result file. */
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../io/atomic_file.h"
#include "../../io/checkpoint.h"
#include "../../io/safetensors.h"
#include "../../src/adaquant/qlayer.h"
#include "../../src/model/tune.h"
#include "../../src/text/tokenizer.h"
#include "driver.h"
#include "memory.h"
#include "progress.h"
#include "pipeline_size.h"
#include "stage_eval.h"
#include "stage_report.h"
#include "stage_tensor.h"
#include "stage_tune.h"

static void *dup_data(const aq_tensor_view *t)
{
    void *p = malloc(t->nbytes ? t->nbytes : 1);
    if (p) memcpy(p, t->data, t->nbytes);
    return p;
}

/* Read the chosen result of every layer and view it as an aq_layer_result
 * (its four arrays are separate mallocs owned by v[l], freed by the caller —
 * not aq_layer_result_free, which frees one block). */
static aq_status load_chosen(const aq_pipe_cfg *c, const aq_pipe_plan *p, const int *choice, aq_result **res,
                             aq_layer_result *v, double *out_error, aq_error *err)
{
    for (int l = 0; l < p->n_layers; l++) {
        const aq_dist_task *t = &p->tasks[(size_t)l * c->n_options + choice[l]];
        char *path;
        AQ_TRY(aq_result_path(c->work, t->layer, t->option, &path, err));
        aq_status st = aq_result_check(path, t->layer, t->option, &t->fp, NULL, err);
        if (st == AQ_OK) st = aq_result_read(path, &t->fp, &res[l], err);
        free(path);
        AQ_TRY(st);
        const aq_result *r = res[l];
        const aq_tensor_view *codes = aq_result_find(r, "codes"), *ws = aq_result_find(r, "w_scale"),
                             *wz = aq_result_find(r, "w_zero"), *b = aq_result_find(r, "bias"),
                             *as = aq_result_find(r, "a_scale"), *az = aq_result_find(r, "a_zero");
        if (!codes || !ws || !wz || !b || !as || !az || codes->ndim != 2 || codes->shape[0] != p->layers[l].d_out ||
            codes->shape[1] != p->layers[l].d_in)
            return aq_fail(err, AQ_ERR_FORMAT, "result of %s %s: missing or misshapen tensors", t->layer, t->option);
        aq_layer_opts o;
        aq_layer_opts_default(&o);
        AQ_TRY(aq_layer_opts_parse(t->option, &o, err));
        memset(&v[l], 0, sizeof v[l]);
        v[l].d_out = (size_t)codes->shape[0];
        v[l].d_in = (size_t)codes->shape[1];
        v[l].w_bits = o.w_bits;
        v[l].a_bits = o.a_bits;
        v[l].symmetric = o.symmetric;
        v[l].group = o.group;
        v[l].ggml = o.ggml;
        v[l].gtype = o.gtype;
        size_t ng = (size_t)v[l].d_out * aq_result_groups(&v[l]);
        if (ws->nbytes != ng * 4 || wz->nbytes != ng * 4 || b->nbytes != (size_t)v[l].d_out * 4)
            return aq_fail(err, AQ_ERR_FORMAT, "result of %s %s: scales/zeros/bias of the wrong size", t->layer,
                           t->option);
        /* owned, aligned copies: payload data may be unaligned for float */
        v[l].codes = dup_data(codes);
        v[l].w_scale = dup_data(ws);
        v[l].w_zero = dup_data(wz);
        v[l].bias = dup_data(b);
        if (!v[l].codes || !v[l].w_scale || !v[l].w_zero || !v[l].bias)
            return aq_fail_nomem(err, "chosen layer", codes->nbytes);
        memcpy(&v[l].a_scale, as->data, 4);
        memcpy(&v[l].a_zero, az->data, 4);
        v[l].loss_final = r->row.loss;
        const aq_tensor_view *oe = aq_result_find(r, "out_error");
        out_error[l] = NAN;
        if (oe && oe->dtype == AQ_F64 && oe->nbytes == 8) memcpy(&out_error[l], oe->data, 8);
    }
    return AQ_OK;
}

static void dequant_result(const void *ctx, float *out)
{
    aq_layer_result_dequant(ctx, out);
}

/* Every layer of v as a lazy override of m (docs/MEMORY.md "write"): only the
 * codes and parameters stay, and the blocks an evaluation forward holds get
 * their float32 weights, the same floats aq_tune_install_layer installs (the
 * same function on the same v, which tuning has updated in place). Replaces
 * the tuner's float32 copies, so the evaluation holds one block's. */
static aq_status install_lazy(aq_model *m, const aq_pipe_plan *p, const aq_layer_result *v, aq_error *err)
{
    for (int l = 0; l < p->n_layers; l++) {
        aq_linear_override ov = {NULL, v[l].bias, v[l].a_bits < 16 ? v[l].a_bits : 0, v[l].a_scale, v[l].a_zero};
        AQ_TRY(aq_model_set_override_lazy(m, p->layers[l].block, (aq_linear)p->layers[l].which, &ov, dequant_result,
                                          &v[l], err));
    }
    return AQ_OK;
}

static aq_status add_fp_tensor(aq_st_writer *w, const aq_tensor_view *tv, float **keep, aq_error *err)
{
    AQ_TRY(aq_view_to_f32_alloc(tv, keep, err));
    return aq_st_writer_add(w, tv->name, AQ_F32, tv->ndim, tv->shape, *keep, err);
}

/* model.safetensors: checkpoint order; a quantized layer's weight (and its
 * bias, if the model has one) is replaced by its qlayer tensors; everything
 * else (norms, Qwen3's q/k norms, biases of layers left in float) is copied
 * as F32. */
/* The tuned gain replacing tensor `name` (the quantized-mode norm override
 * installed in tuned), or NULL: not a norm, or no tuning (tuned NULL), or a
 * gain left untuned in a lazy model's released block (then the checkpoint's
 * copy below is the same F32 conversion, the same bytes). */
static const float *tuned_norm(const aq_model *tuned, const char *name)
{
    if (!tuned) return NULL;
    int L = aq_model_config(tuned)->n_layers, b, n = 0;
    if (!strcmp(name, "model.norm.weight")) return aq_model_norm(tuned, L, 0, 1);
    char kind[40];
    if (sscanf(name, "model.layers.%d.%39[a-z_].weight%n", &b, kind, &n) != 2 || name[n] || b < 0 || b >= L)
        return NULL;
    if (!strcmp(kind, "input_layernorm")) return aq_model_norm(tuned, b, 0, 1);
    if (!strcmp(kind, "post_attention_layernorm")) return aq_model_norm(tuned, b, 1, 1);
    return NULL;
}

/* Extra e's tensor when it is stored at a tensor option (not f32), else NULL. */
static const aq_pipe_qtensor *stored_extra(const aq_pipe_plan *p, const aq_pipe_qtensor *xq, const char *name)
{
    for (int e = 0; e < p->n_extra; e++) {
        size_t k = strlen(p->extra[e].name);
        if (xq[e].w && xq[e].bits < 32 && !strncmp(name, p->extra[e].name, k) && !strcmp(name + k, ".weight"))
            return &xq[e];
    }
    return NULL;
}

static aq_status write_model(const char *path, const aq_pipe_cfg *c, const aq_pipe_plan *p, const int *choice,
                             const aq_layer_result *v, const aq_pipe_qtensor *xq, const aq_model *tuned,
                             aq_error *err)
{
    aq_checkpoint *ck;
    AQ_TRY(aq_ckpt_open(c->model, &ck, err));
    size_t n = aq_ckpt_count(ck);
    aq_st_writer *w = NULL;
    float **bufs = calloc(n, sizeof *bufs);
    aq_qlayer_keep **keep = calloc((size_t)p->n_layers + 2, sizeof *keep); /* + the tensor menu's */
    aq_status st = bufs && keep ? aq_st_writer_new(&w, err) : aq_fail_nomem(err, "writer", n);
    for (size_t i = 0; i < n && st == AQ_OK; i++) {
        const char *name = aq_ckpt_name(ck, i);
        int q = -1, is_bias = 0;
        for (int l = 0; l < p->n_layers && q < 0; l++) {
            size_t k = strlen(p->layers[l].name);
            if (strncmp(name, p->layers[l].name, k) != 0) continue;
            if (!strcmp(name + k, ".weight")) q = l;
            if (!strcmp(name + k, ".bias")) q = l, is_bias = 1;
        }
        /* a quantized layer's original bias (Qwen2, attention_bias, mlp_bias)
         * is replaced by its calibrated P.bias, which aq_qlayer_add writes */
        if (q >= 0 && is_bias) continue;
        if (q >= 0) {
            st = aq_qlayer_add(w, p->layers[q].name, &v[q], &keep[q], err);
            continue;
        }
        const aq_pipe_qtensor *x = stored_extra(p, xq, name);
        if (x) {
            int e = (int)(x - xq);
            char opt[8];
            snprintf(opt, sizeof opt, "%s", c->embed_options[choice[p->n_layers + e]]);
            st = aq_qtensor_add(w, p->extra[e].name, opt, x->rows, x->cols, x->w, x->codes, x->scale, x->zero,
                                &keep[p->n_layers + e], err);
            continue;
        }
        const aq_tensor_view *tv;
        st = aq_ckpt_get(ck, name, &tv, err);
        const float *g = st == AQ_OK ? tuned_norm(tuned, name) : NULL;
        if (g && (tv->ndim != 1 || tv->shape[0] != aq_model_config(tuned)->dim))
            st = aq_fail(err, AQ_ERR_SHAPE, "%s: a norm gain of %d values was expected", name,
                         aq_model_config(tuned)->dim);
        else if (g)
            st = aq_st_writer_add(w, name, AQ_F32, 1, tv->shape, g, err);
        else if (st == AQ_OK)
            st = add_fp_tensor(w, tv, &bufs[i], err);
    }
    char opts[512] = "";
    for (int k = 0; k < c->n_options; k++) snprintf(opts + strlen(opts), sizeof opts - strlen(opts), "%s%s", k ? "," : "", c->options[k]);
    if (st == AQ_OK) st = aq_st_writer_meta(w, "format", "adaquant-quantized", err);
    /* version 2: the embedding / classifier stored at a tensor option (FORMAT.md) */
    if (st == AQ_OK) st = aq_st_writer_meta(w, "format_version", aq_pipe_format_version(c, p, choice) == 2 ? "2" : "1", err);
    if (st == AQ_OK) st = aq_st_writer_meta(w, "options", opts, err);
    if (st == AQ_OK) st = aq_st_writer_write(w, path, err);
    aq_st_writer_free(w);
    for (size_t i = 0; bufs && i < n; i++) free(bufs[i]);
    for (int l = 0; keep && l < p->n_layers + 2; l++) aq_qlayer_keep_free(keep[l]);
    free(bufs);
    free(keep);
    aq_ckpt_close(ck);
    return st;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[AQ_PIPE_PATH];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static aq_status sync_dir(const char *dir, aq_error *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0 || fsync(fd) != 0) {
        if (fd >= 0) close(fd);
        return aq_fail(err, AQ_ERR_IO, "%s: cannot fsync the directory", dir);
    }
    close(fd);
    return AQ_OK;
}

/* OUTDIR is a complete model directory: the tokenizer goes with it, as
 * tokenizer.json (with tokenizer_config.json and special_tokens_map.json from
 * beside it, which carry BOS/EOS) or tokenizer.bin (llama2.c), so `eval`,
 * `generate` and other runtimes find it by default; generation_config.json
 * comes from a model directory. The list is pipeline_size.c's, which counts
 * these files in the size of the model files. */
static aq_status copy_tokenizer(const aq_pipe_cfg *c, const char *tmp, aq_error *err)
{
    aq_pipe_side sf;
    AQ_TRY(aq_pipe_side_files(c, &sf, err));
    for (int i = 0; i < sf.n; i++) {
        char dst[AQ_PIPE_PATH + 64];
        snprintf(dst, sizeof dst, "%s/%s", tmp, sf.name[i]);
        AQ_TRY(aq_atomic_copy_file(sf.src[i], dst, err));
    }
    return AQ_OK;
}

/* --out-format gguf: tmp/model.gguf exported from the files just written
 * (block layers and a block-type embedding byte for byte, per-row layers F16;
 * the budget measured this file: pipeline_size_gguf.c). */
static aq_status write_gguf(const aq_pipe_cfg *c, const char *tmp, aq_error *err)
{
    char path[AQ_PIPE_PATH + 64];
    snprintf(path, sizeof path, "%s/model.gguf", tmp);
    aq_export_opts o;
    aq_pipe_gguf_opts(&o, tmp);
    if (!aq_pipe_gguf_hooks.write) return aq_fail(err, AQ_ERR_ARG, "--out-format gguf: this program has no GGUF exporter");
    return aq_pipe_gguf_hooks.write(c->model, c->tokenizer, tmp, &o, path, err);
}

/* Rank 0: every file into OUTDIR.tmp.<pid>, then the rename. */
static aq_status write_outdir(const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_pipe_budget *b,
                              const aq_loss_row *rows, const int *choice, const aq_layer_result *v,
                              const aq_pipe_qtensor *xq,
                              const double *out_error, const aq_pipe_out *o, const aq_pipe_eval_result *ev,
                              const aq_pipe_tuned *tn, const aq_model *m, aq_pipe_timing *t, aq_error *err)
{
    char tmp[AQ_PIPE_PATH + 32], path[AQ_PIPE_PATH + 64], old[AQ_PIPE_PATH + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", o->outdir, (long)getpid());
    remove_tree(tmp);
    if (mkdir(tmp, 0777) != 0) return aq_fail(err, AQ_ERR_IO, "%s: cannot create the output directory", tmp);
    double t0 = aq_progress_now();
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    /* test hook (AQ_FAIL_AT=write:K): units 0..3 are the points between the files */
    aq_status st = aq_dist_failpoint("write", 0, 0, "file 0, before model.safetensors", err);
    if (st == AQ_OK) st = write_model(path, c, p, choice, v, xq, tn->steps > 0 ? m : NULL, err);
    aq_llama_config mc;
    if (st == AQ_OK) st = aq_ckpt_read_llama_config(c->model, &mc, err);
    snprintf(path, sizeof path, "%s/config.json", tmp);
    if (st == AQ_OK) st = aq_dist_failpoint("write", 1, 0, "file 1, before config.json", err);
    if (st == AQ_OK) st = aq_llama_config_write_json(path, &mc, err);
    if (st == AQ_OK) st = copy_tokenizer(c, tmp, err);
    if (st == AQ_OK && c->gguf) st = write_gguf(c, tmp, err);
    t->write += aq_progress_now() - t0;
    if (st == AQ_OK) st = aq_dist_failpoint("write", 2, 0, "file 2, before the reports", err);
    if (st == AQ_OK) st = aq_pipe_report_write(tmp, c, p, b, rows, choice, out_error, ev, &o->tune, tn, t, err);
    if (st == AQ_OK) st = sync_dir(tmp, err);
    if (st == AQ_OK) st = aq_dist_failpoint("write", 3, 0, "file 3, all written, before the rename", err);
    if (st == AQ_OK) {
        struct stat s;
        snprintf(old, sizeof old, "%s.old.%ld", o->outdir, (long)getpid());
        int had = stat(o->outdir, &s) == 0;
        if (had && rename(o->outdir, old) != 0)
            st = aq_fail(err, AQ_ERR_IO, "%s: cannot move the existing output aside", o->outdir);
        if (st == AQ_OK && rename(tmp, o->outdir) != 0)
            st = aq_fail(err, AQ_ERR_IO, "%s: cannot rename %s into place", o->outdir, tmp);
        if (st == AQ_OK && had) remove_tree(old);
    }
    if (st != AQ_OK) remove_tree(tmp);
    return st;
}

/* The model, and from one read of the text the evaluation documents (unless
 * --no-eval) and the tuning documents (when tuning). */
static aq_status load_inputs(const aq_pipe_cfg *c, const aq_pipe_out *o, aq_model **m, aq_seqs *seqs,
                             aq_seqs *pool, aq_error *err)
{
    /* lazily (docs/MEMORY.md): tuning and evaluation acquire the blocks they
     * run; the installed overrides and norm gains live beside the blocks */
    AQ_TRY(aq_model_load_lazy(c->model, m, err));
    aq_tokenizer *tok;
    AQ_TRY(aq_tok_open(c->tokenizer, aq_model_config(*m)->vocab_size, &tok, err));
    aq_docs d;
    aq_status st = aq_docs_load(&c->data, &d, err);
    if (st == AQ_OK && !o->no_eval)
        st = aq_eval_seqs(tok, &d, o->eval_len, (size_t)(o->eval_docs > 0 ? o->eval_docs : 0), seqs, err);
    if (st == AQ_OK && o->tune.steps > 0) st = aq_pipe_tune_pool(&o->tune, tok, &d, *m, pool, err);
    aq_docs_free(&d);
    aq_tok_close(tok);
    return st;
}

aq_status aq_pipe_write(MPI_Comm comm, const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_pipe_budget *b,
                        const aq_loss_row *rows, const int *choice, const aq_pipe_out *o, aq_pipe_timing *t,
                        aq_error *err)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    aq_result **res = calloc((size_t)p->n_layers, sizeof *res);
    aq_layer_result *v = calloc((size_t)p->n_layers, sizeof *v);
    double *out_error = calloc((size_t)p->n_layers, sizeof *out_error);
    aq_model *m = NULL;
    aq_seqs seqs, pool;
    memset(&seqs, 0, sizeof seqs);
    memset(&pool, 0, sizeof pool);
    aq_pipe_eval_result ev;
    memset(&ev, 0, sizeof ev);
    ev.ppl_fp = ev.ppl_q = ev.kl_mean = ev.top1_agree = -1; /* not evaluated */
    aq_pipe_tuned tn;
    memset(&tn, 0, sizeof tn);
    aq_status st = res && v && out_error ? AQ_OK : aq_fail_nomem(err, "layer list", (size_t)p->n_layers);
    aq_pipe_qtensor xq[2];
    memset(xq, 0, sizeof xq);
    if (st == AQ_OK) st = load_chosen(c, p, choice, res, v, out_error, err);
    for (int e = 0; st == AQ_OK && e < p->n_extra; e++)
        if (choice[p->n_layers + e] >= 0) st = aq_pipe_qtensor_read(c, p, e, choice[p->n_layers + e], &xq[e], err);
    int need_model = !o->no_eval || o->tune.steps > 0;
    if (st == AQ_OK && need_model) st = load_inputs(c, o, &m, &seqs, &pool, err);
    /* the tensor menu's choices stay fixed while tuning runs around them */
    for (int e = 0; st == AQ_OK && need_model && e < p->n_extra; e++)
        if (xq[e].w && xq[e].bits < 32) st = aq_pipe_qtensor_install(m, p, e, &xq[e], err);
    st = aq_pipe_agree(comm, st, err);
    double t0 = aq_progress_now();
    /* tuning installs float32 copies of every layer; the evaluation and the
     * write use lazy overrides of the (tuned) codes instead */
    if (st == AQ_OK && need_model) st = aq_pipe_tune(comm, p, &o->tune, &pool, m, v, &tn, err);
    if (st == AQ_OK && need_model) st = install_lazy(m, p, v, err);
    st = aq_pipe_agree(comm, st, err);
    t->tune += aq_progress_now() - t0;
    t0 = aq_progress_now();
    if (st == AQ_OK && !o->no_eval) {
        if (rank == 0) fprintf(stderr, "adaquant: evaluating FP vs quantized on %d documents\n", seqs.n);
        st = aq_pipe_eval(comm, m, &seqs, &ev, err);
    }
    t->eval += aq_progress_now() - t0;
    aq_mem_gather(comm, c, o, t); /* every rank's peak RSS for the report (issue 13) */
    if (st == AQ_OK && rank == 0) st = write_outdir(c, p, b, rows, choice, v, xq, out_error, o, &ev, &tn, m, t, err);
    st = aq_pipe_agree(comm, st, err);
    for (int l = 0; res && l < p->n_layers; l++) aq_result_free(res[l]);
    for (int l = 0; v && l < p->n_layers; l++) {
        free(v[l].codes);
        free(v[l].w_scale);
        free(v[l].w_zero);
        free(v[l].bias);
    }
    for (int e = 0; e < 2; e++) aq_pipe_qtensor_free(&xq[e]);
    free(res);
    free(v);
    free(out_error);
    aq_seqs_free(&seqs);
    aq_seqs_free(&pool);
    aq_model_free(m);
    return st;
}
