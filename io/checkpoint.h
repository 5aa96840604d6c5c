/* checkpoint.h — one interface over every model source: a safetensors file, an
 * HF directory (config.json + model.safetensors, or shards listed in
 * model.safetensors.index.json, opened lazily), or a llama2.c .bin (imported
 * to HF tensor names, see llama2c.h).
 *
 * Tensor names are HF Llama names: model.embed_tokens.weight,
 * model.layers.N.input_layernorm.weight, model.layers.N.self_attn.{q,k,v,o}_proj.weight,
 * model.layers.N.post_attention_layernorm.weight, model.layers.N.mlp.{gate,up,down}_proj.weight,
 * model.norm.weight, lm_head.weight (absent when tied).
 * RoPE convention: HF (rotate halves); llama2.c imports permute q/k rows. */
#ifndef AQ_CHECKPOINT_H
#define AQ_CHECKPOINT_H

#include "tensor.h"

typedef struct aq_llama_config {
    int dim;            /* hidden_size */
    int hidden_dim;     /* intermediate_size */
    int n_layers;       /* num_hidden_layers */
    int n_heads;        /* num_attention_heads */
    int n_kv_heads;     /* num_key_value_heads */
    int vocab_size;
    int max_seq_len;    /* max_position_embeddings */
    float norm_eps;     /* rms_norm_eps */
    float rope_theta;
    int tied_embeddings; /* tie_word_embeddings */
    /* The Llama-family variants (issue 15). A zeroed tail is the plain Llama
     * block, so configs built field by field (llama2.c import, tests) keep
     * their meaning. */
    int model_type;      /* aq_model_type: which config.json dialect (and defaults) */
    int head_dim;        /* head_dim; 0 = dim / n_heads */
    int qkv_bias;        /* q_proj, k_proj, v_proj have biases (Qwen2; Llama attention_bias) */
    int o_bias;          /* o_proj has a bias (Llama / Qwen3 attention_bias) */
    int mlp_bias;        /* gate/up/down_proj have biases (Llama mlp_bias) */
    int qk_norm;         /* Qwen3: RMSNorm of every q and k head (gain [head_dim]) before RoPE */
    int rope_type;       /* aq_rope_type (rope_scaling.rope_type, legacy key "type") */
    float rope_factor;   /* rope_scaling.factor (linear, dynamic, llama3) */
    float rope_low_freq_factor, rope_high_freq_factor; /* llama3 */
    int rope_orig_max_pos; /* llama3: rope_scaling.original_max_position_embeddings */
    int sliding_window;    /* sliding_window in tokens as the file says; 0 = null / absent */
    int use_sliding_window; /* Qwen2/3: use_sliding_window (Mistral: implied by sliding_window) */
    int max_window_layers;  /* Qwen2/3: layers >= this one use the window */
} aq_llama_config;

/* config.json model_type values understood (AQ_MT_LLAMA also covers TinyLlama,
 * SmolLM, Llama 1/2/3.x). */
typedef enum aq_model_type { AQ_MT_LLAMA, AQ_MT_MISTRAL, AQ_MT_QWEN2, AQ_MT_QWEN3, AQ_MT_COUNT } aq_model_type;
/* RoPE frequency schemes (transformers' modeling_rope_utils names). */
typedef enum aq_rope_type { AQ_ROPE_DEFAULT, AQ_ROPE_LINEAR, AQ_ROPE_DYNAMIC, AQ_ROPE_LLAMA3 } aq_rope_type;

/* The head size (head_dim, else dim / n_heads). */
int aq_llama_head_dim(const aq_llama_config *c);
/* The attention window some layer applies (tokens), 0 = every layer attends
 * to the whole prefix. */
int aq_llama_window(const aq_llama_config *c);
/* "llama", "mistral", "qwen2", "qwen3" ("?" out of range). */
const char *aq_model_type_name(int model_type);

typedef enum aq_ckpt_kind { AQ_CKPT_SAFETENSORS, AQ_CKPT_HF_DIR, AQ_CKPT_HF_SHARDED, AQ_CKPT_LLAMA2C } aq_ckpt_kind;

typedef struct aq_checkpoint aq_checkpoint;

/* Open a file or directory (kind detected from the path and contents). */
aq_status aq_ckpt_open(const char *path, aq_checkpoint **out, aq_error *err);
void aq_ckpt_close(aq_checkpoint *ck);
aq_ckpt_kind aq_ckpt_get_kind(const aq_checkpoint *ck);
const char *aq_ckpt_path(const aq_checkpoint *ck);

/* Tensor names, in a stable order (file order; shards in index order). */
size_t aq_ckpt_count(const aq_checkpoint *ck);
const char *aq_ckpt_name(const aq_checkpoint *ck, size_t i);
/* The view of a named tensor (opens its shard on first use). AQ_ERR_NOTFOUND
 * naming the tensor and checkpoint if absent. View valid until close. */
aq_status aq_ckpt_get(aq_checkpoint *ck, const char *name, const aq_tensor_view **out,
                      aq_error *err);
/* A view's data has been read (converted): give its mapped pages back
 * (aq_st_drop_pages) so reading a checkpoint tensor by tensor keeps one
 * tensor's source resident. Nothing for views not in a mapping (llama2.c). */
void aq_ckpt_drop_pages(aq_checkpoint *ck, const aq_tensor_view *v);
/* Model metadata: the Llama config (from config.json or the llama2.c header);
 * AQ_ERR_NOTFOUND if the checkpoint has none (a bare safetensors file). */
aq_status aq_ckpt_llama_config(const aq_checkpoint *ck, aq_llama_config *cfg, aq_error *err);
/* The same for the checkpoint at path: open, read the config, close. */
aq_status aq_ckpt_read_llama_config(const char *path, aq_llama_config *cfg, aq_error *err);
/* safetensors __metadata__ of the (first) file; NULL if absent. */
const char *aq_ckpt_meta_get(const aq_checkpoint *ck, const char *key);
/* All __metadata__ entries of the (first) file, sorted by key (0 for llama2.c,
 * or when the first shard cannot be opened). Strings valid until close. */
size_t aq_ckpt_meta_count(const aq_checkpoint *ck);
void aq_ckpt_meta_at(const aq_checkpoint *ck, size_t i, const char **key, const char **value);

/* Parse / write HF config.json (written atomically). */
aq_status aq_llama_config_read_json(const char *path, aq_llama_config *cfg, aq_error *err);
aq_status aq_llama_config_write_json(const char *path, const aq_llama_config *cfg, aq_error *err);

#endif
