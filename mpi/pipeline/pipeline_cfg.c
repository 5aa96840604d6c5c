/* pipeline_cfg.c — the pipeline's settings: defaults, the option menu, the
 * fingerprints that tie results to their inputs, WORK/settings.json, and the
 * agreement of a status over the ranks. */
#include <dirent.h>
#include <inttypes.h>
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

aq_status aq_pipe_cfg_set_embed_options(aq_pipe_cfg *c, const char *list, aq_error *err)
{
    char buf[256];
    if (strlen(list) >= sizeof buf) return aq_fail(err, AQ_ERR_ARG, "--embed-options: list too long");
    strcpy(buf, list);
    int n = 0, bits;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (aq_tensor_opt_parse(tok, &bits, err) != AQ_OK) {
            aq_error_prefix(err, "--embed-options");
            return AQ_ERR_ARG;
        }
        if (n == AQ_PIPE_MAX_OPTIONS)
            return aq_fail(err, AQ_ERR_ARG, "--embed-options: more than %d options", AQ_PIPE_MAX_OPTIONS);
        for (int k = 0; k < n; k++)
            if (!strcmp(c->embed_options[k], tok))
                return aq_fail(err, AQ_ERR_ARG, "--embed-options: '%s' is listed twice", tok);
        snprintf(c->embed_options[n++], sizeof c->embed_options[0], "%s", tok);
    }
    c->n_embed_options = n;
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

/* The tokenizer file (of a model directory: its tokenizer.json / .bin) and,
 * beside a tokenizer.json, the side files that decide its BOS and EOS
 * (tokenizer_config.json: add_bos_token, bos/eos_token; config.json:
 * eos_token_id), so a resume with a changed BOS is refused too. */
static aq_status fp_tokenizer(const char *path, aq_fingerprint *out, uint64_t *size, aq_error *err)
{
    static const char *const side[] = {"tokenizer_config.json", "config.json"};
    char *file = malloc(2 * AQ_PIPE_PATH);
    if (!file) return aq_fail_nomem(err, "path", 2 * AQ_PIPE_PATH);
    char *p = file + AQ_PIPE_PATH;
    aq_status st = aq_tok_resolve(path, file, AQ_PIPE_PATH, err);
    if (st == AQ_OK) st = aq_fp_file(file, out, size, err);
    size_t len = strlen(file);
    if (st == AQ_OK && len >= 5 && strcmp(file + len - 5, ".json") == 0) {
        aq_fp_builder b;
        aq_fp_init(&b);
        aq_fp_add_fp(&b, "tokenizer", out, *size);
        char *slash = strrchr(file, '/');
        int dlen = slash ? (int)(slash - file) : 1;
        for (size_t i = 0; st == AQ_OK && i < sizeof side / sizeof side[0]; i++) {
            struct stat s;
            snprintf(p, AQ_PIPE_PATH, "%.*s/%s", dlen, slash ? file : ".", side[i]);
            if (stat(p, &s) != 0) continue;
            aq_fingerprint f;
            uint64_t sz = 0;
            st = aq_fp_file(p, &f, &sz, err);
            if (st == AQ_OK) {
                aq_fp_add_fp(&b, side[i], &f, sz);
                *size += sz;
            }
        }
        if (st == AQ_OK) *out = aq_fp_final(&b);
    }
    free(file);
    return st;
}

aq_status aq_pipe_cfg_fingerprint(aq_pipe_cfg *c, aq_error *err)
{
    struct stat s;
    if (stat(c->model, &s) != 0) return aq_fail(err, AQ_ERR_IO, "%s: model not found", c->model);
    if (S_ISDIR(s.st_mode)) AQ_TRY(fp_dir(c->model, &c->fp_model, &c->sz_model, err));
    else AQ_TRY(aq_fp_file(c->model, &c->fp_model, &c->sz_model, err));
    AQ_TRY(fp_tokenizer(c->tokenizer, &c->fp_tok, &c->sz_tok, err));
    return aq_data_fingerprint(&c->data, &c->fp_text, &c->sz_text, err);
}

static void add_stats_fields(aq_fp_builder *b, const aq_pipe_cfg *c)
{
    aq_fp_add_fp(b, "model", &c->fp_model, c->sz_model);
    aq_fp_add_fp(b, "tokenizer", &c->fp_tok, c->sz_tok);
    aq_fp_add_fp(b, "data", &c->fp_text, c->sz_text);
    aq_fp_add_i64(b, "windows", c->windows);
    aq_fp_add_i64(b, "seq_len", c->seq_len);
    aq_fp_add_i64(b, "chunk_windows", c->chunk_windows);
    /* the rows the capture keeps: none for a menu without activation quantizers
     * (aq_pipe_capture_sample_rows), so a menu that adds one recaptures */
    aq_fp_add_i64(b, "sample_rows", aq_pipe_menu_quantizes_acts(c) ? c->sample_rows : 0);
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
    if (c->sens_loss) aq_fp_add_i64(&b, "sens_loss", c->sens_loss); /* absent = the older fingerprints */
    aq_fp_add_i64(&b, "polish", c->polish);
    aq_fp_add_str(&b, "init", aq_pipe_init_name(c->init_gptq));
    aq_fp_add_str(&b, "option", option);
    aq_fp_add_u64(&b, "seed", c->seed);
    aq_fp_add_u64(&b, "result_version", AQ_RESULT_VERSION);
    aq_fp_add_str(&b, "layer", layer);
    return aq_fp_final(&b);
}

/* Fingerprint of every setting settings.json records (paths, calibration and
 * AdaQuant settings, menu, mode, seed, the inputs' fingerprints), in a fixed
 * order: recorded as "settings_fingerprint" and recomputed from the parsed
 * values on reading, so a hand-edited file is refused instead of silently
 * mixing results computed with different settings. */
static aq_fingerprint settings_fp(const aq_pipe_cfg *c)
{
    aq_fp_builder b;
    aq_fp_init(&b);
    aq_fp_add_str(&b, "model", c->model);
    aq_fp_add_str(&b, "tokenizer", c->tokenizer);
    for (int i = 0; i < c->data.n; i++) {
        aq_fp_add_i64(&b, "data_role", c->data.src[i].role);
        aq_fp_add_str(&b, "data_path", c->data.src[i].path);
    }
    aq_fp_add_str(&b, "data_format", aq_data_format_name(c->data.format));
    aq_fp_add_str(&b, "text_field", c->data.text_field);
    /* the sizes are not recorded in settings.json (the stats fingerprint has them) */
    aq_fp_add_fp(&b, "model", &c->fp_model, 0);
    aq_fp_add_fp(&b, "tokenizer", &c->fp_tok, 0);
    aq_fp_add_fp(&b, "data", &c->fp_text, 0);
    aq_fp_add_i64(&b, "windows", c->windows);
    aq_fp_add_i64(&b, "seq_len", c->seq_len);
    aq_fp_add_i64(&b, "chunk_windows", c->chunk_windows);
    aq_fp_add_i64(&b, "sample_rows", c->sample_rows);
    aq_fp_add_u64(&b, "sample_seed", c->sample_seed);
    for (int k = 0; k < c->n_options; k++) aq_fp_add_str(&b, "option", c->options[k]);
    /* only when present, so settings without a tensor menu keep their fingerprint */
    for (int k = 0; k < c->n_embed_options; k++) aq_fp_add_str(&b, "embed_option", c->embed_options[k]);
    aq_fp_add_i64(&b, "iters", c->iters);
    aq_fp_add_i64(&b, "starts", c->starts);
    aq_fp_add_i64(&b, "kl_windows", c->kl_windows);
    if (c->sens_loss) aq_fp_add_i64(&b, "sens_loss", c->sens_loss);
    aq_fp_add_i64(&b, "polish", c->polish);
    aq_fp_add_str(&b, "init", aq_pipe_init_name(c->init_gptq));
    aq_fp_add_i64(&b, "sequential", c->sequential);
    aq_fp_add_u64(&b, "seed", c->seed);
    return aq_fp_final(&b);
}

static void set_hex(json_t *o, const char *key, const aq_fingerprint *f)
{
    char hex[33];
    aq_fp_hex(f, hex);
    json_object_set_new(o, key, json_string(hex));
}

static const char *const role_names[3] = {"text", "calib", "eval"}; /* aq_data_role */

/* "data": {"sources": [{"role", "path"}...], "format", "text_field"} */
static json_t *data_json(const aq_data_spec *s)
{
    json_t *o = json_object(), *a = json_array();
    for (int i = 0; i < s->n; i++) {
        json_t *e = json_object();
        json_object_set_new(e, "role", json_string(role_names[s->src[i].role]));
        json_object_set_new(e, "path", json_string(s->src[i].path));
        json_array_append_new(a, e);
    }
    json_object_set_new(o, "sources", a);
    json_object_set_new(o, "format", json_string(aq_data_format_name(s->format)));
    json_object_set_new(o, "text_field", json_string(s->text_field));
    return o;
}

static aq_status parse_data(json_t *o, const char *path, aq_data_spec *s, aq_error *err)
{
    memset(s, 0, sizeof *s);
    json_t *a = json_object_get(o, "sources"), *e;
    const char *fmt = json_string_value(json_object_get(o, "format"));
    const char *field = json_string_value(json_object_get(o, "text_field"));
    if (!json_is_array(a) || !fmt || (s->format = aq_data_format_parse(fmt)) < 0 || !field ||
        strlen(field) >= sizeof s->text_field)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: missing or bad \"data\"", path);
    strcpy(s->text_field, field);
    size_t i;
    json_array_foreach(a, i, e)
    {
        const char *r = json_string_value(json_object_get(e, "role"));
        const char *p = json_string_value(json_object_get(e, "path"));
        int role = -1;
        for (int k = 0; r && k < 3; k++)
            if (!strcmp(r, role_names[k])) role = k;
        aq_error e2 = {0};
        if (role < 0 || !p || aq_data_spec_add(s, (aq_data_role)role, p, &e2) != AQ_OK)
            return aq_fail(err, AQ_ERR_FORMAT, "%s: bad \"data\" source %zu %s", path, i, e2.msg);
    }
    return AQ_OK;
}

aq_status aq_pipe_cfg_write(const aq_pipe_cfg *c, aq_error *err)
{
    json_t *o = json_object(), *opts = json_array();
    json_object_set_new(o, "format", json_string("adaquant-work-settings"));
    json_object_set_new(o, "version", json_integer(AQ_PIPE_SETTINGS_VERSION));
    json_object_set_new(o, "model", json_string(c->model));
    json_object_set_new(o, "tokenizer", json_string(c->tokenizer));
    json_object_set_new(o, "data", data_json(&c->data));
    json_object_set_new(o, "windows", json_integer(c->windows));
    json_object_set_new(o, "seq_len", json_integer(c->seq_len));
    json_object_set_new(o, "chunk_windows", json_integer(c->chunk_windows));
    json_object_set_new(o, "sample_rows", json_integer(c->sample_rows));
    char s[32];
    snprintf(s, sizeof s, "%llu", (unsigned long long)c->sample_seed);
    json_object_set_new(o, "sample_seed", json_string(s));
    for (int k = 0; k < c->n_options; k++) json_array_append_new(opts, json_string(c->options[k]));
    json_object_set_new(o, "options", opts);
    if (c->n_embed_options > 0) {
        json_t *eo = json_array();
        for (int k = 0; k < c->n_embed_options; k++) json_array_append_new(eo, json_string(c->embed_options[k]));
        json_object_set_new(o, "embed_options", eo);
    }
    json_object_set_new(o, "iters", json_integer(c->iters));
    json_object_set_new(o, "starts", json_integer(c->starts));
    json_object_set_new(o, "kl_windows", json_integer(c->kl_windows));
    if (c->sens_loss) json_object_set_new(o, "sens_loss", json_integer(c->sens_loss));
    json_object_set_new(o, "polish", json_integer(c->polish));
    json_object_set_new(o, "init", json_string(aq_pipe_init_name(c->init_gptq)));
    json_object_set_new(o, "mode", json_string(c->sequential ? "sequential" : "parallel"));
    snprintf(s, sizeof s, "%llu", (unsigned long long)c->seed);
    json_object_set_new(o, "seed", json_string(s));
    set_hex(o, "model_fingerprint", &c->fp_model);
    set_hex(o, "tokenizer_fingerprint", &c->fp_tok);
    set_hex(o, "data_fingerprint", &c->fp_text);
    aq_fingerprint f = aq_pipe_stats_fp(c);
    set_hex(o, "stats_fingerprint", &f);
    f = settings_fp(c);
    set_hex(o, "settings_fingerprint", &f);
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

/* The recorded fingerprints of the three inputs, in cfg field order. */
static const char *const input_keys[3] = {"model_fingerprint", "tokenizer_fingerprint", "data_fingerprint"};

/* Input i's name and path (the data: its sources, aq_data_spec_describe) for messages. */
static const aq_fingerprint *input_of(const aq_pipe_cfg *c, int i, const char **name, char *path, size_t n)
{
    if (i < 2) {
        /* a path longer than the buffer is cut (messages only) */
        const char *p = i == 0 ? c->model : c->tokenizer;
        size_t len = strnlen(p, n - 1);
        memcpy(path, p, len);
        path[len] = '\0';
    } else {
        aq_data_spec_describe(&c->data, path, n);
    }
    /* one --text file: "calibration text" as before; else the whole data */
    int one = c->data.n == 1 && c->data.src[0].role == AQ_DATA_SPLIT;
    *name = i == 0 ? "model" : i == 1 ? "tokenizer" : one ? "calibration text" : "data";
    return i == 0 ? &c->fp_model : i == 1 ? &c->fp_tok : &c->fp_text;
}

static aq_status parse_settings(json_t *o, const char *path, aq_pipe_cfg *c, aq_error *err)
{
    char s[64], list[1024] = "";
    json_t *ver = json_object_get(o, "version");
    if (!json_is_integer(ver) || json_integer_value(ver) != AQ_PIPE_SETTINGS_VERSION)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: settings version %lld, this adaquant reads version %d (written by another version: run "
                       "capture again)",
                       path, json_is_integer(ver) ? (long long)json_integer_value(ver) : -1LL,
                       AQ_PIPE_SETTINGS_VERSION);
    AQ_TRY(get_str(o, path, "model", c->model, sizeof c->model, err));
    AQ_TRY(get_str(o, path, "tokenizer", c->tokenizer, sizeof c->tokenizer, err));
    AQ_TRY(parse_data(json_object_get(o, "data"), path, &c->data, err));
    AQ_TRY(get_int(o, path, "windows", &c->windows, err));
    AQ_TRY(get_int(o, path, "seq_len", &c->seq_len, err));
    AQ_TRY(get_int(o, path, "chunk_windows", &c->chunk_windows, err));
    AQ_TRY(get_int(o, path, "sample_rows", &c->sample_rows, err));
    AQ_TRY(get_int(o, path, "iters", &c->iters, err));
    AQ_TRY(get_int(o, path, "starts", &c->starts, err));
    AQ_TRY(get_int(o, path, "kl_windows", &c->kl_windows, err));
    if (json_object_get(o, "sens_loss")) AQ_TRY(get_int(o, path, "sens_loss", &c->sens_loss, err));
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
    AQ_TRY(aq_pipe_cfg_set_options(c, list, err));
    /* optional (absent: no tensor menu, the embedding stays F32) */
    list[0] = '\0';
    json_array_foreach(json_object_get(o, "embed_options"), i, v)
    {
        const char *t = json_string_value(v);
        if (!t || strlen(list) + strlen(t) + 2 > sizeof list)
            return aq_fail(err, AQ_ERR_FORMAT, "%s: bad \"embed_options\"", path);
        if (i) strcat(list, ",");
        strcat(list, t);
    }
    c->n_embed_options = 0;
    if (list[0]) AQ_TRY(aq_pipe_cfg_set_embed_options(c, list, err));
    /* the recorded input fingerprints enter the settings fingerprint */
    aq_fingerprint *dst[3] = {&c->fp_model, &c->fp_tok, &c->fp_text};
    for (int k = 0; k < 3; k++) {
        aq_fingerprint *w = dst[k];
        AQ_TRY(get_str(o, path, input_keys[k], s, sizeof s, err));
        if (strlen(s) != 32 || sscanf(s, "%16" SCNx64 "%16" SCNx64, &w->h[0], &w->h[1]) != 2)
            return aq_fail(err, AQ_ERR_FORMAT, "%s: \"%s\" is not 32 hex digits", path, input_keys[k]);
    }
    char want[33];
    AQ_TRY(get_str(o, path, "settings_fingerprint", want, sizeof want, err));
    char hex[33];
    aq_fingerprint f = settings_fp(c);
    aq_fp_hex(&f, hex);
    if (strcmp(want, hex))
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: the settings were changed after capture (settings fingerprint %s, recorded %s); "
                       "this file is written by capture and must not be edited: run capture again",
                       path, hex, want);
    return AQ_OK;
}

aq_status aq_pipe_cfg_read(const char *work, aq_pipe_cfg *c, aq_error *err)
{
    char path[AQ_PIPE_PATH];
    aq_pipe_cfg_default(c);
    if (strlen(work) >= sizeof c->work) return aq_fail(err, AQ_ERR_ARG, "--work %.64s...: path too long", work);
    aq_pipe_path(work, "settings.json", path);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return aq_fail(err, AQ_ERR_NOTFOUND, "%s: not found (run `adaquant capture ... --work %s` first)", path,
                       work);
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    if (!o)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: not valid JSON (line %d: %s): the file is damaged; run capture again",
                       path, je.line, je.text);
    aq_status st = parse_settings(o, path, c, err);
    char want_stats[33] = "";
    const char *ws = json_string_value(json_object_get(o, "stats_fingerprint"));
    if (st == AQ_OK && (!ws || strlen(ws) != 32))
        st = aq_fail(err, AQ_ERR_FORMAT, "%s: missing or bad \"stats_fingerprint\"", path);
    if (st == AQ_OK) strcpy(want_stats, ws);
    json_decref(o);
    AQ_TRY(st);
    strcpy(c->work, work);
    /* the inputs must still be the ones the statistics were captured from:
     * name the one that changed */
    const aq_fingerprint rec[3] = {c->fp_model, c->fp_tok, c->fp_text}; /* as recorded (input_of order) */
    AQ_TRY(aq_pipe_cfg_fingerprint(c, err));
    for (int k = 0; k < 3; k++) {
        const char *name;
        char p[AQ_PIPE_PATH];
        const aq_fingerprint *f = input_of(c, k, &name, p, sizeof p);
        if (!aq_fp_equal(f, &rec[k])) {
            char now[33], then[33];
            aq_fp_hex(f, now);
            aq_fp_hex(&rec[k], then);
            return aq_fail(err, AQ_ERR_ARG,
                           "%s: the %s changed since capture (fingerprint %s, recorded in %s: %s): its statistics "
                           "and results are stale; run capture again",
                           p, name, now, path, then);
        }
    }
    char hex[33];
    aq_fingerprint f = aq_pipe_stats_fp(c);
    aq_fp_hex(&f, hex);
    if (strcmp(want_stats, hex))
        return aq_fail(err, AQ_ERR_ARG,
                       "%s: the model, tokenizer or data changed since capture "
                       "(statistics fingerprint %s, recorded %s): run capture again",
                       path, hex, want_stats);
    return AQ_OK;
}

void aq_pipe_cfg_report_changed_inputs(const aq_pipe_cfg *c, FILE *log)
{
    char path[AQ_PIPE_PATH];
    aq_pipe_path(c->work, "settings.json", path);
    json_t *o = json_load_file(path, 0, NULL);
    if (!o) return; /* nothing captured yet, or damaged: capture rewrites it */
    for (int k = 0; k < 3; k++) {
        const char *name, *rec = json_string_value(json_object_get(o, input_keys[k]));
        char p[AQ_PIPE_PATH];
        const aq_fingerprint *f = input_of(c, k, &name, p, sizeof p);
        char now[33];
        aq_fp_hex(f, now);
        if (rec && strcmp(rec, now))
            fprintf(log,
                    "adaquant: capture: --resume: the %s %s changed since %s was captured (fingerprint %s, recorded "
                    "%s): its statistics and results are recomputed\n",
                    name, p, c->work, now, rec);
    }
    json_decref(o);
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
    aq_status st = aq_docs_load(&c->data, &d, err);
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
