/* hf_config.c — the Llama subset of a Hugging Face config.json (checkpoint.h).
 *
 * Reading accepts what transformers writes for LlamaForCausalLM; fields that
 * HF itself defaults are defaulted the same way (num_key_value_heads =
 * num_attention_heads, rms_norm_eps 1e-6, rope_theta 10000,
 * tie_word_embeddings false, max_position_embeddings 2048). Writing emits
 * every field explicitly, so no reader has to know those defaults. */
#include "checkpoint.h"

#include <jansson.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"

/* A required or defaulted positive integer field. */
static aq_status get_int(const char *path, json_t *root, const char *key, int def, int *out,
                         aq_error *err)
{
    json_t *v = json_object_get(root, key);
    if (!v) {
        if (def < 0) return aq_fail(err, AQ_ERR_FORMAT, "%s: missing field \"%s\"", path, key);
        *out = def;
        return AQ_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > 0x7fffffff)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: field \"%s\" must be a positive integer", path,
                       key);
    *out = (int)json_integer_value(v);
    return AQ_OK;
}

static aq_status get_real(const char *path, json_t *root, const char *key, double def, float *out,
                          aq_error *err)
{
    json_t *v = json_object_get(root, key);
    double x = v ? json_number_value(v) : def;
    if (v && !json_is_number(v))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: field \"%s\" must be a number", path, key);
    if (!isfinite(x) || x <= 0 || x > 3.0e38)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: field \"%s\" must be a positive finite number",
                       path, key);
    *out = (float)x;
    return AQ_OK;
}

static aq_status config_from_json(const char *path, json_t *root, aq_llama_config *c, aq_error *err)
{
    if (!json_is_object(root))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: expected a JSON object", path);
    json_t *mt = json_object_get(root, "model_type");
    if (mt && (!json_is_string(mt) || strcmp(json_string_value(mt), "llama") != 0))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: model_type is %s%s%s, only \"llama\" is supported",
                       path, json_is_string(mt) ? "\"" : "",
                       json_is_string(mt) ? json_string_value(mt) : "not a string",
                       json_is_string(mt) ? "\"" : "");
    memset(c, 0, sizeof *c);
    AQ_TRY(get_int(path, root, "hidden_size", -1, &c->dim, err));
    AQ_TRY(get_int(path, root, "intermediate_size", -1, &c->hidden_dim, err));
    AQ_TRY(get_int(path, root, "num_hidden_layers", -1, &c->n_layers, err));
    AQ_TRY(get_int(path, root, "num_attention_heads", -1, &c->n_heads, err));
    AQ_TRY(get_int(path, root, "num_key_value_heads", c->n_heads, &c->n_kv_heads, err));
    AQ_TRY(get_int(path, root, "vocab_size", -1, &c->vocab_size, err));
    AQ_TRY(get_int(path, root, "max_position_embeddings", 2048, &c->max_seq_len, err));
    AQ_TRY(get_real(path, root, "rms_norm_eps", 1e-6, &c->norm_eps, err));
    AQ_TRY(get_real(path, root, "rope_theta", 10000.0, &c->rope_theta, err));
    json_t *tie = json_object_get(root, "tie_word_embeddings");
    if (tie && !json_is_boolean(tie))
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: field \"tie_word_embeddings\" must be true or false", path);
    c->tied_embeddings = tie ? json_is_true(tie) : 0;
    if (c->dim % c->n_heads != 0 || c->n_heads % c->n_kv_heads != 0)
        return aq_fail(
            err, AQ_ERR_FORMAT,
            "%s: inconsistent heads: hidden_size %d, num_attention_heads %d, "
            "num_key_value_heads %d (need hidden_size %% heads == 0 and heads %% kv_heads == 0)",
            path, c->dim, c->n_heads, c->n_kv_heads);
    return AQ_OK;
}

aq_status aq_llama_config_read_json(const char *path, aq_llama_config *cfg, aq_error *err)
{
    json_error_t je;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return aq_fail(err, AQ_ERR_NOTFOUND, "%s: cannot open config: %s", path, strerror(errno));
    json_t *root = json_loadf(fp, JSON_REJECT_DUPLICATES, &je);
    fclose(fp);
    if (!root)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: invalid JSON at line %d, column %d: %s", path,
                       je.line, je.column, je.text);
    aq_status st = config_from_json(path, root, cfg, err);
    json_decref(root);
    return st;
}

/* The shortest decimal that reads back as the same float, as a double, so
 * that 1e-5f is written "1e-05" rather than 9.9999997473787516e-06. */
static double short_real(float f)
{
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    return strtod(buf, NULL);
}

aq_status aq_llama_config_write_json(const char *path, const aq_llama_config *c, aq_error *err)
{
    json_t *root = json_pack(
        "{s:[s], s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b}", "architectures",
        "LlamaForCausalLM", "model_type", "llama", "torch_dtype", "float32", "hidden_act", "silu",
        "hidden_size", c->dim, "intermediate_size", c->hidden_dim, "num_hidden_layers", c->n_layers,
        "num_attention_heads", c->n_heads, "num_key_value_heads", c->n_kv_heads, "vocab_size",
        c->vocab_size, "max_position_embeddings", c->max_seq_len, "rms_norm_eps",
        short_real(c->norm_eps), "rope_theta", short_real(c->rope_theta), "tie_word_embeddings",
        c->tied_embeddings ? 1 : 0);
    /* Precision 9 prints the shortest form of those doubles. */
    char *text =
        root ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9))
             : NULL;
    json_decref(root);
    if (!text)
        return aq_fail(err, AQ_ERR_ARG, "%s: cannot encode the config (NaN/Inf in a field?)", path);
    size_t n = strlen(text);
    char *buf = malloc(n + 2);
    aq_status st;
    if (!buf) {
        st = aq_fail_nomem(err, "config.json", n + 2);
    } else {
        memcpy(buf, text, n);
        buf[n] = '\n';
        st = aq_atomic_write_file(path, buf, n + 1, err);
    }
    free(buf);
    free(text);
    return st;
}
