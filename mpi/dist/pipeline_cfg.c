/* pipeline_cfg.c — the pipeline's settings: defaults, the option menu, the
 * fingerprints that tie results to their inputs, WORK/settings.json, and the
 * agreement of a status over the ranks. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "../../io/atomic_file.h"
#include "../../src/adaquant/adaquant.h"
#include "pipeline.h"
#include "../../src/text/textdata.h"
#include "collect.h"

void aq_pipe_cfg_default(aq_pipe_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->windows = 64;
    c->seq_len = 256;
    c->chunk_windows = 8;
    c->sample_rows = 1024;
    c->iters = 200;
    c->starts = 5;
    c->kl_windows = 16;
    c->polish = 8;
    c->init_gptq = 2; /* best of gptq and rtn by network KL: docs/QUALITY.md */
    aq_pipe_cfg_set_options(c, "w8a16,w6a16,w4a16,w3a16", NULL);
}

aq_status aq_pipe_layer_opts(const aq_pipe_cfg *c, const char *option, aq_layer_opts *o, aq_error *err)
{
    aq_layer_opts_default(o);
    AQ_TRY(aq_layer_opts_parse(option, o, err));
    o->iters = c->iters;
    o->starts = c->starts;
    o->polish_rounds = c->polish;
    o->init = c->init_gptq ? AQ_INIT_GPTQ : AQ_INIT_RTN; /* best: GPTQ first, see stage_calibrate.c */
    o->seed = c->seed;
    return AQ_OK;
}

const char *aq_pipe_init_name(int init_gptq)
{
    return init_gptq == 2 ? "best" : init_gptq ? "gptq" : "rtn";
}

int aq_pipe_menu_quantizes_acts(const aq_pipe_cfg *c)
{
    for (int k = 0; k < c->n_options; k++) {
        aq_layer_opts o;
        aq_layer_opts_default(&o);
        aq_error e = {0};
        if (aq_layer_opts_parse(c->options[k], &o, &e) == AQ_OK && o.a_bits < 16) return 1;
    }
    return 0;
}

aq_status aq_pipe_cfg_set_options(aq_pipe_cfg *c, const char *list, aq_error *err)
{
    char buf[1024];
    if (strlen(list) >= sizeof buf) return aq_fail(err, AQ_ERR_ARG, "--options: list too long");
    strcpy(buf, list);
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        aq_layer_opts o;
        aq_layer_opts_default(&o);
        if (aq_layer_opts_parse(tok, &o, err) != AQ_OK) {
            aq_error_prefix(err, "--options: unknown option name '%s' (expected wKaM, K in 2,3,4,6,8, M in 4,8,16)",
                            tok);
            return AQ_ERR_ARG;
        }
        if (n == AQ_PIPE_MAX_OPTIONS)
            return aq_fail(err, AQ_ERR_ARG, "--options: more than %d options", AQ_PIPE_MAX_OPTIONS);
        aq_layer_opts_string(&o, c->options[n], sizeof c->options[n]);
        for (int k = 0; k < n; k++)
            if (!strcmp(c->options[k], c->options[n]))
                return aq_fail(err, AQ_ERR_ARG, "--options: '%s' is listed twice", tok);
        n++;
    }
    if (n == 0) return aq_fail(err, AQ_ERR_ARG, "--options: empty option list");
    c->n_options = n;
    return AQ_OK;
}

void aq_pipe_path(const char *work, const char *rel, char *out)
{
    int n = snprintf(out, AQ_PIPE_PATH, "%s/%s", work, rel);
    if (n < 0 || n >= AQ_PIPE_PATH) out[AQ_PIPE_PATH - 1] = '\0'; /* paths are checked shorter on input */
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A model directory: every regular file in name order, each as a nested fp. */
static aq_status fp_dir(const char *dir, aq_fingerprint *out, uint64_t *size, aq_error *err)
{
    DIR *d = opendir(dir);
    if (!d) return aq_fail(err, AQ_ERR_IO, "%s: cannot open the model directory", dir);
    char *names[256];
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 256;) {
        char p[AQ_PIPE_PATH];
        struct stat s;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.' && stat(p, &s) == 0 && S_ISREG(s.st_mode)) names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof names[0], cmp_str);
    aq_fp_builder b;
    aq_fp_init(&b);
    aq_status st = AQ_OK;
    *size = 0;
    for (size_t i = 0; i < n; i++) {
        char p[AQ_PIPE_PATH];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        aq_fingerprint f;
        uint64_t sz = 0;
        if (st == AQ_OK) st = aq_fp_file(p, &f, &sz, err);
        if (st == AQ_OK) {
            aq_fp_add_fp(&b, names[i], &f, sz);
            *size += sz;
        }
        free(names[i]);
    }
    *out = aq_fp_final(&b);
    return st;
}

aq_status aq_pipe_cfg_fingerprint(aq_pipe_cfg *c, aq_error *err)
{
    struct stat s;
    if (stat(c->model, &s) != 0) return aq_fail(err, AQ_ERR_IO, "%s: model not found", c->model);
    if (S_ISDIR(s.st_mode)) AQ_TRY(fp_dir(c->model, &c->fp_model, &c->sz_model, err));
    else AQ_TRY(aq_fp_file(c->model, &c->fp_model, &c->sz_model, err));
    AQ_TRY(aq_fp_file(c->tokenizer, &c->fp_tok, &c->sz_tok, err));
    return aq_fp_file(c->calib_text, &c->fp_text, &c->sz_text, err);
}

static void add_stats_fields(aq_fp_builder *b, const aq_pipe_cfg *c)
{
    aq_fp_add_fp(b, "model", &c->fp_model, c->sz_model);
    aq_fp_add_fp(b, "tokenizer", &c->fp_tok, c->sz_tok);
    aq_fp_add_fp(b, "calib_text", &c->fp_text, c->sz_text);
    aq_fp_add_i64(b, "windows", c->windows);
    aq_fp_add_i64(b, "seq_len", c->seq_len);
    aq_fp_add_i64(b, "chunk_windows", c->chunk_windows);
    aq_fp_add_i64(b, "sample_rows", c->sample_rows);
    aq_fp_add_u64(b, "sample_seed", c->sample_seed);
}

aq_fingerprint aq_pipe_stats_fp(const aq_pipe_cfg *c)
{
    aq_fp_builder b;
    aq_fp_init(&b);
    add_stats_fields(&b, c);
    return aq_fp_final(&b);
}

aq_fingerprint aq_pipe_task_fp(const aq_pipe_cfg *c, const char *layer, const char *option)
{
    aq_fp_builder b;
    aq_fp_init(&b);
    add_stats_fields(&b, c);
    aq_fp_add_i64(&b, "iters", c->iters);
    aq_fp_add_i64(&b, "starts", c->starts);
    aq_fp_add_i64(&b, "kl_windows", c->kl_windows);
    aq_fp_add_i64(&b, "polish", c->polish);
    aq_fp_add_str(&b, "init", aq_pipe_init_name(c->init_gptq));
    aq_fp_add_str(&b, "option", option);
    aq_fp_add_u64(&b, "seed", c->seed);
    aq_fp_add_u64(&b, "result_version", AQ_RESULT_VERSION);
    aq_fp_add_str(&b, "layer", layer);
    return aq_fp_final(&b);
}

aq_status aq_pipe_cfg_write(const aq_pipe_cfg *c, aq_error *err)
{
    json_t *o = json_object(), *opts = json_array();
    json_object_set_new(o, "format", json_string("adaquant-work-settings"));
    json_object_set_new(o, "version", json_integer(1));
    json_object_set_new(o, "model", json_string(c->model));
    json_object_set_new(o, "tokenizer", json_string(c->tokenizer));
    json_object_set_new(o, "calib_text", json_string(c->calib_text));
    json_object_set_new(o, "windows", json_integer(c->windows));
    json_object_set_new(o, "seq_len", json_integer(c->seq_len));
    json_object_set_new(o, "chunk_windows", json_integer(c->chunk_windows));
    json_object_set_new(o, "sample_rows", json_integer(c->sample_rows));
    char s[32];
    snprintf(s, sizeof s, "%llu", (unsigned long long)c->sample_seed);
    json_object_set_new(o, "sample_seed", json_string(s));
    for (int k = 0; k < c->n_options; k++) json_array_append_new(opts, json_string(c->options[k]));
    json_object_set_new(o, "options", opts);
    json_object_set_new(o, "iters", json_integer(c->iters));
    json_object_set_new(o, "starts", json_integer(c->starts));
    json_object_set_new(o, "kl_windows", json_integer(c->kl_windows));
    json_object_set_new(o, "polish", json_integer(c->polish));
    json_object_set_new(o, "init", json_string(aq_pipe_init_name(c->init_gptq)));
    json_object_set_new(o, "mode", json_string(c->sequential ? "sequential" : "parallel"));
    snprintf(s, sizeof s, "%llu", (unsigned long long)c->seed);
    json_object_set_new(o, "seed", json_string(s));
    char hex[33];
    aq_fingerprint f = aq_pipe_stats_fp(c);
    aq_fp_hex(&f, hex);
    json_object_set_new(o, "stats_fingerprint", json_string(hex));
    char path[AQ_PIPE_PATH];
    aq_pipe_path(c->work, "settings.json", path);
    char *txt = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!txt) return aq_fail_nomem(err, "settings.json", 0);
    aq_status st = aq_atomic_write_file(path, txt, strlen(txt), err);
    free(txt);
    return st;
}

static aq_status get_str(json_t *o, const char *path, const char *key, char *dst, size_t n, aq_error *err)
{
    const char *v = json_string_value(json_object_get(o, key));
    if (!v || strlen(v) >= n) return aq_fail(err, AQ_ERR_FORMAT, "%s: missing or bad string \"%s\"", path, key);
    strcpy(dst, v);
    return AQ_OK;
}

static aq_status get_int(json_t *o, const char *path, const char *key, int *dst, aq_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v)) return aq_fail(err, AQ_ERR_FORMAT, "%s: missing integer \"%s\"", path, key);
    *dst = (int)json_integer_value(v);
    return AQ_OK;
}

static aq_status parse_settings(json_t *o, const char *path, aq_pipe_cfg *c, aq_error *err)
{
    char s[64], list[1024] = "";
    AQ_TRY(get_str(o, path, "model", c->model, sizeof c->model, err));
    AQ_TRY(get_str(o, path, "tokenizer", c->tokenizer, sizeof c->tokenizer, err));
    AQ_TRY(get_str(o, path, "calib_text", c->calib_text, sizeof c->calib_text, err));
    AQ_TRY(get_int(o, path, "windows", &c->windows, err));
    AQ_TRY(get_int(o, path, "seq_len", &c->seq_len, err));
    AQ_TRY(get_int(o, path, "chunk_windows", &c->chunk_windows, err));
    AQ_TRY(get_int(o, path, "sample_rows", &c->sample_rows, err));
    AQ_TRY(get_int(o, path, "iters", &c->iters, err));
    AQ_TRY(get_int(o, path, "starts", &c->starts, err));
    AQ_TRY(get_int(o, path, "kl_windows", &c->kl_windows, err));
    AQ_TRY(get_int(o, path, "polish", &c->polish, err));
    AQ_TRY(get_str(o, path, "sample_seed", s, sizeof s, err));
    c->sample_seed = strtoull(s, NULL, 10);
    AQ_TRY(get_str(o, path, "seed", s, sizeof s, err));
    c->seed = strtoull(s, NULL, 10);
    AQ_TRY(get_str(o, path, "init", s, sizeof s, err));
    c->init_gptq = !strcmp(s, "best") ? 2 : strcmp(s, "rtn") != 0;
    AQ_TRY(get_str(o, path, "mode", s, sizeof s, err));
    c->sequential = !strcmp(s, "sequential");
    json_t *a = json_object_get(o, "options");
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        const char *t = json_string_value(v);
        if (!t || strlen(list) + strlen(t) + 2 > sizeof list)
            return aq_fail(err, AQ_ERR_FORMAT, "%s: bad \"options\"", path);
        if (i) strcat(list, ",");
        strcat(list, t);
    }
    return aq_pipe_cfg_set_options(c, list, err);
}

aq_status aq_pipe_cfg_read(const char *work, aq_pipe_cfg *c, aq_error *err)
{
    char path[AQ_PIPE_PATH];
    aq_pipe_cfg_default(c);
    aq_pipe_path(work, "settings.json", path);
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    if (!o)
        return aq_fail(err, AQ_ERR_NOTFOUND, "%s: %s (run `adaquant capture ... --work %s` first)", path, je.text,
                       work);
    aq_status st = parse_settings(o, path, c, err);
    json_decref(o);
    if (strlen(work) >= sizeof c->work) return aq_fail(err, AQ_ERR_ARG, "work path too long");
    strcpy(c->work, work);
    if (st == AQ_OK) st = aq_pipe_cfg_fingerprint(c, err);
    if (st == AQ_OK) {
        /* the inputs must still be the ones the statistics were captured from */
        const char *want = json_string_value(json_object_get(o = json_load_file(path, 0, &je), "stats_fingerprint"));
        char hex[33];
        aq_fingerprint f = aq_pipe_stats_fp(c);
        aq_fp_hex(&f, hex);
        if (!want || strcmp(want, hex))
            st = aq_fail(err, AQ_ERR_ARG,
                         "%s: the model, tokenizer or calibration text changed since capture "
                         "(fingerprint %s, recorded %s): run capture again",
                         path, hex, want ? want : "none");
        json_decref(o);
    }
    return st;
}

aq_status aq_pipe_agree(MPI_Comm comm, aq_status st, aq_error *err)
{
    return aq_dist_agree(comm, st, err);
}

aq_status aq_pipe_kl_seqs(const aq_pipe_cfg *c, int vocab, aq_seqs *out, aq_error *err)
{
    memset(out, 0, sizeof *out);
    int K = c->kl_windows < c->windows ? c->kl_windows : c->windows;
    if (K < 1) return aq_fail(err, AQ_ERR_ARG, "KL loss: %d windows", K);
    aq_tokenizer *tok;
    AQ_TRY(aq_tok_open(c->tokenizer, vocab, &tok, err));
    aq_docs d;
    aq_status st = aq_docs_read(c->calib_text, &d, err);
    if (st == AQ_OK) {
        st = aq_calib_windows(tok, &d, K, c->seq_len, &out->tokens, err);
        aq_docs_free(&d);
    }
    aq_tok_close(tok);
    AQ_TRY(st);
    if (!(out->lens = malloc((size_t)K * sizeof *out->lens))) {
        aq_seqs_free(out);
        return aq_fail_nomem(err, "KL windows", (size_t)K * sizeof(int));
    }
    for (int i = 0; i < K; i++) out->lens[i] = c->seq_len;
    out->n = K;
    out->n_tokens = (size_t)K * (size_t)c->seq_len;
    out->n_predicted = out->n_tokens - (size_t)K;
    return AQ_OK;
}
