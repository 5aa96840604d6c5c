/* hf_config.c — the Llama-family subset of a Hugging Face config.json
 * (checkpoint.h): model_type llama (Llama 1/2/3.x, TinyLlama, SmolLM),
 * mistral, qwen2 and qwen3.
 *
 * Reading accepts what transformers writes for those models; fields that HF
 * itself defaults are defaulted the same way, per model type (as the
 * transformers configuration classes do: e.g. num_key_value_heads =
 * num_attention_heads, rms_norm_eps 1e-6, rope_theta 10000, Qwen3 head_dim
 * 128, Mistral sliding_window 4096). A field value the engine does not
 * implement (another hidden_act, rope type yarn, partial rotary embeddings)
 * is an error naming the field and listing what is supported: never a silent
 * difference. Writing emits every field explicitly, so no reader has to know
 * those defaults. */
#include "checkpoint.h"

#include <jansson.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"

static const char *const mt_names[AQ_MT_COUNT] = {"llama", "mistral", "qwen2", "qwen3"};
static const char *const mt_arch[AQ_MT_COUNT] = {"LlamaForCausalLM", "MistralForCausalLM",
                                                 "Qwen2ForCausalLM", "Qwen3ForCausalLM"};
static const char *const rope_names[] = {"default", "linear", "dynamic", "llama3"};
#define SUPPORTED_MT "llama (also TinyLlama, SmolLM), mistral, qwen2, qwen3"
#define SUPPORTED_ROPE "default, linear, dynamic, llama3"

const char *aq_model_type_name(int t)
{
    return t >= 0 && t < AQ_MT_COUNT ? mt_names[t] : "?";
}

int aq_llama_head_dim(const aq_llama_config *c)
{
    return c->head_dim > 0 ? c->head_dim : (c->n_heads > 0 ? c->dim / c->n_heads : 0);
}

int aq_llama_window(const aq_llama_config *c)
{
    if (c->sliding_window <= 0) return 0;
    if (c->model_type == AQ_MT_MISTRAL) return c->sliding_window;
    if (c->model_type == AQ_MT_QWEN2 || c->model_type == AQ_MT_QWEN3)
        return c->use_sliding_window && c->max_window_layers < c->n_layers ? c->sliding_window : 0;
    return 0;
}

/* A required or defaulted positive integer field (JSON null = absent). */
static aq_status get_int(const char *path, json_t *root, const char *key, int def, int *out,
                         aq_error *err)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
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
    if (v && json_is_null(v)) v = NULL;
    double x = v ? json_number_value(v) : def;
    if (v && !json_is_number(v))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: field \"%s\" must be a number", path, key);
    if (!isfinite(x) || x <= 0 || x > 3.0e38)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: field \"%s\" must be a positive finite number",
                       path, key);
    *out = (float)x;
    return AQ_OK;
}

static aq_status get_bool(const char *path, json_t *root, const char *key, int def, int *out,
                          aq_error *err)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return AQ_OK;
    }
    if (!json_is_boolean(v))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: field \"%s\" must be true or false", path, key);
    *out = json_is_true(v);
    return AQ_OK;
}

static aq_status read_model_type(const char *path, json_t *root, aq_llama_config *c, aq_error *err)
{
    json_t *mt = json_object_get(root, "model_type");
    if (!mt) return AQ_OK; /* historical: a bare Llama config */
    if (!json_is_string(mt))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: model_type is not a string (supported: %s)", path,
                       SUPPORTED_MT);
    for (int t = 0; t < AQ_MT_COUNT; t++)
        if (!strcmp(json_string_value(mt), mt_names[t])) {
            c->model_type = t;
            return AQ_OK;
        }
    return aq_fail(err, AQ_ERR_FORMAT, "%s: model_type \"%s\" is not supported (supported: %s)",
                   path, json_string_value(mt), SUPPORTED_MT);
}

/* rope_scaling (or transformers 5's rope_parameters): the frequency scheme,
 * exactly the keys modeling_rope_utils reads for each type. */
static aq_status read_rope(const char *path, json_t *root, aq_llama_config *c, aq_error *err)
{
    const char *key = "rope_scaling";
    json_t *rs = json_object_get(root, key);
    if (!rs || json_is_null(rs)) {
        key = "rope_parameters";
        rs = json_object_get(root, key);
        if (!rs || json_is_null(rs)) return AQ_OK;
    }
    if (!json_is_object(rs))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: field \"%s\" must be an object or null", path, key);
    if (json_object_get(rs, "rope_theta"))
        AQ_TRY(get_real(path, rs, "rope_theta", 10000.0, &c->rope_theta, err));
    json_t *ty = json_object_get(rs, "rope_type"); /* legacy configs say "type" */
    if (!ty) ty = json_object_get(rs, "type");
    const char *t = json_is_string(ty) ? json_string_value(ty) : NULL;
    if (!t)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: %s has no string \"rope_type\" (supported: %s)",
                       path, key, SUPPORTED_ROPE);
    int rt = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(t, rope_names[i])) rt = i;
    if (rt < 0)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: %s rope_type \"%s\" is not supported (supported: %s)", path, key, t,
                       SUPPORTED_ROPE);
    c->rope_type = rt;
    if (rt == AQ_ROPE_DEFAULT) return AQ_OK;
    char sub[64];
    snprintf(sub, sizeof sub, "%s.factor", key);
    json_t *f = json_object_get(rs, "factor");
    if (!f) return aq_fail(err, AQ_ERR_FORMAT, "%s: missing field \"%s\" (rope type %s)", path, sub, t);
    AQ_TRY(get_real(path, rs, "factor", 1.0, &c->rope_factor, err));
    if (rt != AQ_ROPE_LLAMA3) return AQ_OK;
    static const char *const need[] = {"low_freq_factor", "high_freq_factor",
                                       "original_max_position_embeddings"};
    for (int i = 0; i < 3; i++)
        if (!json_object_get(rs, need[i]))
            return aq_fail(err, AQ_ERR_FORMAT, "%s: missing field \"%s.%s\" (rope type llama3)",
                           path, key, need[i]);
    AQ_TRY(get_real(path, rs, "low_freq_factor", 1.0, &c->rope_low_freq_factor, err));
    AQ_TRY(get_real(path, rs, "high_freq_factor", 4.0, &c->rope_high_freq_factor, err));
    AQ_TRY(get_int(path, rs, "original_max_position_embeddings", -1, &c->rope_orig_max_pos, err));
    if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: rope_scaling high_freq_factor %g must exceed low_freq_factor %g", path,
                       (double)c->rope_high_freq_factor, (double)c->rope_low_freq_factor);
    return AQ_OK;
}

/* Fields whose other values change the computation: refuse them by name. */
static aq_status check_unsupported(const char *path, json_t *root, aq_error *err)
{
    json_t *act = json_object_get(root, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu") != 0))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: hidden_act %s%s%s is not supported (supported: silu)",
                       path, json_is_string(act) ? "\"" : "",
                       json_is_string(act) ? json_string_value(act) : "(not a string)",
                       json_is_string(act) ? "\"" : "");
    json_t *prf = json_object_get(root, "partial_rotary_factor");
    if (prf && !(json_is_number(prf) && json_number_value(prf) == 1.0))
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: partial_rotary_factor other than 1 is not supported (RoPE over the "
                       "whole head only)",
                       path);
    return AQ_OK;
}

/* The per-model-type fields: biases, q/k norm, sliding window. */
static aq_status read_variant(const char *path, json_t *root, aq_llama_config *c, aq_error *err)
{
    int ab = 0;
    switch (c->model_type) {
    case AQ_MT_LLAMA:
        AQ_TRY(get_bool(path, root, "attention_bias", 0, &ab, err));
        AQ_TRY(get_bool(path, root, "mlp_bias", 0, &c->mlp_bias, err));
        c->qkv_bias = c->o_bias = ab;
        return AQ_OK;
    case AQ_MT_MISTRAL: /* MistralConfig: sliding_window 4096, may be null */
    {
        json_t *sw = json_object_get(root, "sliding_window");
        if (sw && json_is_null(sw)) return AQ_OK;
        return get_int(path, root, "sliding_window", 4096, &c->sliding_window, err);
    }
    default: /* qwen2 (q/k/v biases, always) and qwen3 (attention_bias, q/k norm) */
        if (c->model_type == AQ_MT_QWEN2) {
            c->qkv_bias = 1;
        } else {
            AQ_TRY(get_bool(path, root, "attention_bias", 0, &ab, err));
            c->qkv_bias = c->o_bias = ab;
            c->qk_norm = 1;
        }
        AQ_TRY(get_bool(path, root, "use_sliding_window", 0, &c->use_sliding_window, err));
        json_t *sw = json_object_get(root, "sliding_window");
        if (!(sw && json_is_null(sw)))
            AQ_TRY(get_int(path, root, "sliding_window", 4096, &c->sliding_window, err));
        json_t *mw = json_object_get(root, "max_window_layers");
        if (mw && !(json_is_integer(mw) && json_integer_value(mw) >= 0 &&
                    json_integer_value(mw) <= 0x7fffffff))
            return aq_fail(err, AQ_ERR_FORMAT,
                           "%s: field \"max_window_layers\" must be a non-negative integer", path);
        c->max_window_layers = mw ? (int)json_integer_value(mw) : 28;
        return AQ_OK;
    }
}

static aq_status config_from_json(const char *path, json_t *root, aq_llama_config *c, aq_error *err)
{
    if (!json_is_object(root))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: expected a JSON object", path);
    memset(c, 0, sizeof *c);
    AQ_TRY(read_model_type(path, root, c, err));
    AQ_TRY(check_unsupported(path, root, err));
    int qwen = c->model_type == AQ_MT_QWEN2 || c->model_type == AQ_MT_QWEN3;
    int max_pos = c->model_type == AQ_MT_MISTRAL ? 4096 * 32 : qwen ? 32768 : 2048;
    AQ_TRY(get_int(path, root, "hidden_size", -1, &c->dim, err));
    AQ_TRY(get_int(path, root, "intermediate_size", -1, &c->hidden_dim, err));
    AQ_TRY(get_int(path, root, "num_hidden_layers", -1, &c->n_layers, err));
    AQ_TRY(get_int(path, root, "num_attention_heads", -1, &c->n_heads, err));
    AQ_TRY(get_int(path, root, "num_key_value_heads", c->n_heads, &c->n_kv_heads, err));
    AQ_TRY(get_int(path, root, "vocab_size", -1, &c->vocab_size, err));
    AQ_TRY(get_int(path, root, "max_position_embeddings", max_pos, &c->max_seq_len, err));
    AQ_TRY(get_real(path, root, "rms_norm_eps", 1e-6, &c->norm_eps, err));
    AQ_TRY(get_real(path, root, "rope_theta", 10000.0, &c->rope_theta, err));
    AQ_TRY(get_bool(path, root, "tie_word_embeddings", 0, &c->tied_embeddings, err));
    /* Qwen3Config defaults head_dim to 128; the others to hidden / heads (0) */
    AQ_TRY(get_int(path, root, "head_dim", c->model_type == AQ_MT_QWEN3 ? 128 : 0, &c->head_dim,
                   err));
    AQ_TRY(read_rope(path, root, c, err));
    AQ_TRY(read_variant(path, root, c, err));
    if ((!c->head_dim && c->dim % c->n_heads != 0) || c->n_heads % c->n_kv_heads != 0)
        return aq_fail(
            err, AQ_ERR_FORMAT,
            "%s: inconsistent heads: hidden_size %d, num_attention_heads %d, "
            "num_key_value_heads %d (need hidden_size %% heads == 0 when there is no head_dim, "
            "and heads %% kv_heads == 0)",
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

static void set_real(json_t *o, const char *k, float v)
{
    json_object_set_new(o, k, json_real(short_real(v)));
}

/* The model-type-specific fields, in the spelling of that type's config. */
static void write_variant(json_t *root, const aq_llama_config *c)
{
    if (c->head_dim > 0) json_object_set_new(root, "head_dim", json_integer(c->head_dim));
    if (c->rope_type != AQ_ROPE_DEFAULT && c->rope_type >= 0 && c->rope_type <= AQ_ROPE_LLAMA3) {
        json_t *rs = json_object();
        json_object_set_new(rs, "rope_type", json_string(rope_names[c->rope_type]));
        set_real(rs, "factor", c->rope_factor);
        if (c->rope_type == AQ_ROPE_LLAMA3) {
            set_real(rs, "low_freq_factor", c->rope_low_freq_factor);
            set_real(rs, "high_freq_factor", c->rope_high_freq_factor);
            json_object_set_new(rs, "original_max_position_embeddings",
                                json_integer(c->rope_orig_max_pos));
        }
        json_object_set_new(root, "rope_scaling", rs);
    } else {
        json_object_set_new(root, "rope_scaling", json_null());
    }
    json_t *sw = c->sliding_window > 0 ? json_integer(c->sliding_window) : json_null();
    switch (c->model_type) {
    case AQ_MT_MISTRAL: json_object_set_new(root, "sliding_window", sw); break;
    case AQ_MT_QWEN2:
    case AQ_MT_QWEN3:
        if (c->model_type == AQ_MT_QWEN3)
            json_object_set_new(root, "attention_bias", json_boolean(c->o_bias));
        json_object_set_new(root, "use_sliding_window", json_boolean(c->use_sliding_window));
        json_object_set_new(root, "sliding_window", sw);
        json_object_set_new(root, "max_window_layers", json_integer(c->max_window_layers));
        break;
    default:
        json_decref(sw);
        json_object_set_new(root, "attention_bias", json_boolean(c->qkv_bias || c->o_bias));
        json_object_set_new(root, "mlp_bias", json_boolean(c->mlp_bias));
        break;
    }
}

aq_status aq_llama_config_write_json(const char *path, const aq_llama_config *c, aq_error *err)
{
    int mt = c->model_type >= 0 && c->model_type < AQ_MT_COUNT ? c->model_type : AQ_MT_LLAMA;
    json_t *root = json_pack(
        "{s:[s], s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b}", "architectures",
        mt_arch[mt], "model_type", mt_names[mt], "torch_dtype", "float32", "hidden_act", "silu",
        "hidden_size", c->dim, "intermediate_size", c->hidden_dim, "num_hidden_layers", c->n_layers,
        "num_attention_heads", c->n_heads, "num_key_value_heads", c->n_kv_heads, "vocab_size",
        c->vocab_size, "max_position_embeddings", c->max_seq_len, "rms_norm_eps",
        short_real(c->norm_eps), "rope_theta", short_real(c->rope_theta), "tie_word_embeddings",
        c->tied_embeddings ? 1 : 0);
    if (root) write_variant(root, c);
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
