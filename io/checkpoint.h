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
} aq_llama_config;

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
/* Model metadata: the Llama config (from config.json or the llama2.c header);
 * AQ_ERR_NOTFOUND if the checkpoint has none (a bare safetensors file). */
aq_status aq_ckpt_llama_config(const aq_checkpoint *ck, aq_llama_config *cfg, aq_error *err);
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
