/* model.h — the float32 forward pass of Llama-family decoders (the transformer engine).
 *
 * Loads any aq_checkpoint (llama2.c import, HF directory single or sharded,
 * F32/F16/BF16 — converted to F32 once at load) and runs batches of token
 * sequences through: embedding, per block RMSNorm -> q/k/v (+ biases) ->
 * [Qwen3: RMSNorm of every q and k head] -> HF rotate-half RoPE (default,
 * linear, dynamic or llama3 frequencies) -> grouped-query causal attention ->
 * o (+ bias), RMSNorm -> SwiGLU MLP (down(silu(gate x) * up x), + biases),
 * final RMSNorm, tied or untied classifier. The variants come from the config
 * (checkpoint.h: model_type llama, mistral, qwen2, qwen3; head_dim may differ
 * from dim / n_heads). A sliding attention window (Mistral, Qwen with
 * use_sliding_window) is not implemented: sequences longer than the window
 * are refused (AQ_ERR_ARG naming the window), where the window would change
 * the result; shorter ones are exactly full causal attention.
 * Matrix products are single-threaded BLIS (bli_sgemm).
 *
 * A batch is n_seqs sequences PACKED back to back (no padding): tokens[] holds
 * lens[0] tokens of sequence 0, then lens[1] of sequence 1, ... Each sequence
 * starts at position 0 and attends only to itself. Row r of every activation
 * matrix is token r of the packed batch.
 *
 * Hooks for the quantization pipeline:
 *  - capture: a callback at the INPUT of every linear layer. Per block there
 *    are 4 capture points serving 7 linears (q,k,v share ATTN_IN; gate/up
 *    share MLP_IN); plus the classifier input (block = n_layers, AQ_CAP_HEAD).
 *  - overrides: per linear, a dequantised weight [d_out, d_in] (or a function
 *    producing it while the block is acquired), a bias and an
 *    input fake-quantiser (qlayer.h formula) used when the forward runs with
 *    quantized = 1. The float weights are kept, so one model object runs both
 *    the FP and the quantized network (sequential capture, FP-vs-Q evaluation).
 *
 * Memory: the F32 weights, the overrides, and one batch's activations (grown
 * on demand, kept between calls). A model object is not thread-safe (its
 * scratch is shared by calls); different objects are independent. */
#ifndef AQ_MODEL_H
#define AQ_MODEL_H

#include <stddef.h>

#include "../../common/status.h"
#include "../../io/checkpoint.h"

/* The 7 linear layers of a block, in execution order. */
typedef enum aq_linear {
    AQ_LIN_Q,
    AQ_LIN_K,
    AQ_LIN_V,
    AQ_LIN_O,
    AQ_LIN_GATE,
    AQ_LIN_UP,
    AQ_LIN_DOWN,
    AQ_LIN_COUNT,
    AQ_LIN_HEAD = AQ_LIN_COUNT /* the classifier (lm_head), block = n_layers */
} aq_linear;

/* Capture points: the distinct inputs of the linear layers of one block. */
typedef enum aq_cap_point {
    AQ_CAP_ATTN_IN, /* rmsnorm(x): input of q, k, v   (d = dim) */
    AQ_CAP_O_IN,    /* attention output: input of o   (d = n_heads * head_size) */
    AQ_CAP_MLP_IN,  /* rmsnorm(x): input of gate, up  (d = dim) */
    AQ_CAP_DOWN_IN, /* silu(gate) * up: input of down (d = hidden_dim) */
    AQ_CAP_COUNT,
    AQ_CAP_HEAD = AQ_CAP_COUNT /* final rmsnorm: classifier input, block = n_layers */
} aq_cap_point;

typedef struct aq_model aq_model;

/* What a capture callback sees: rows [n_rows, d] (row-major, valid only during
 * the call) = the input of the linears at (block, point) for the packed batch:
 * lens[0] rows of sequence 0 (positions 0..lens[0]-1), then lens[1] rows of
 * sequence 1, ... seq_ids are the caller's ids for the batch's sequences
 * (aq_forward_opts.seq_ids, else 0, 1, ...). */
typedef struct aq_capture_event {
    int block;
    aq_cap_point point;
    const float *rows;
    size_t n_rows;
    int d;
    int n_seqs;
    const int *lens;     /* [n_seqs] */
    const long *seq_ids; /* [n_seqs] */
    int quantized;       /* the forward ran with overrides active */
} aq_capture_event;

/* Return non-OK (with err filled) to abort the forward. */
typedef aq_status (*aq_capture_fn)(void *ctx, const aq_capture_event *ev, aq_error *err);

typedef struct aq_forward_opts {
    int quantized;         /* 1: linears with an override use it */
    aq_capture_fn capture; /* NULL: no capture */
    void *capture_ctx;
    int stop_after_block; /* -1: run to the end. b >= 0: stop after block b (no
                             logits). NOTE: a zeroed struct stops after block 0;
                             start from aq_forward_opts_default. */
    const long *seq_ids;  /* optional ids passed to capture events */
} aq_forward_opts;

/* FP, no capture, run to the end (stop_after_block = -1). */
void aq_forward_opts_default(aq_forward_opts *o);

/* A per-linear override for quantized execution (all arrays are COPIED by
 * aq_model_set_override). a_bits 0 or >= 16 = activations not quantized. The
 * override's bias REPLACES the model's bias of that linear (NULL = no bias),
 * as a calibrated bias replaces the original one. */
typedef struct aq_linear_override {
    const float *weight; /* [d_out, d_in] dequantised */
    const float *bias;   /* [d_out] or NULL */
    int a_bits;
    float a_scale, a_zero;
} aq_linear_override;

/* Load a model from an open checkpoint (the checkpoint may be closed after).
 * Validates the config against every tensor: a mismatch is AQ_ERR_SHAPE naming
 * the tensor and both shapes; a missing tensor AQ_ERR_NOTFOUND naming it;
 * NaN/Inf weights AQ_ERR_NUMERIC. *out is owned by the caller (aq_model_free). */
aq_status aq_model_load(aq_checkpoint *ck, aq_model **out, aq_error *err);
/* Same, opening path with aq_ckpt_open (errors are prefixed with path). */
aq_status aq_model_load_path(const char *path, aq_model **out, aq_error *err);
void aq_model_free(aq_model *m);
/* Lazy loading (issue 13): the checkpoint at path stays open and mapped in its
 * stored dtype; the embedding, final norm and classifier are converted now,
 * the blocks only when acquired (aq_model_block_acquire). Every tensor's name,
 * shape and dtype are checked now as aq_model_load does; a block's NaN/Inf
 * check runs when it is converted (AQ_ERR_NUMERIC naming the tensor, from
 * acquire or the forward). Forwards give bit-identical results to an eager
 * model's (the same conversion). The whole-model forward acquires each block
 * as it reaches it and releases it after, so a forward holds one block; so
 * do the KL gradient's forward and backward (grad.h). Reading a block's weights
 * (aq_model_linear, _bias, _norm, ...) needs it acquired; the KV-cache decoder
 * needs an eager model. The environment variable AQ_MODEL_EAGER=1 makes it
 * load eagerly (tests compare the two paths' output bytes). */
aq_status aq_model_load_lazy(const char *path, aq_model **out, aq_error *err);
/* 1 for a model from aq_model_load_lazy. */
int aq_model_is_lazy(const aq_model *m);

/* Block residency (issue 13: a rank holds only the blocks it works on).
 * Before reading block b's weights (aq_model_linear, norms, ...) outside a
 * whole-model forward, a caller acquires it; when done, releases it. A model
 * loaded eagerly keeps every block resident and both are no-ops; a lazily
 * loaded model materialises the block (converted to F32 from its stored
 * dtype) on acquire and may drop it on the last release. Calls nest. */
aq_status aq_model_block_acquire(aq_model *m, int block, aq_error *err);
void aq_model_block_release(aq_model *m, int block);

/* Free the F32 classifier (when untied) and, with embed = 1, the embedding
 * (and a tied classifier with it): V x D floats each, which the streaming
 * capture never reads (it runs from its own residual stream after block 0
 * and stops at the last block; docs/MEMORY.md). A forward that needs them
 * afterwards fails with AQ_ERR_ARG. */
void aq_model_drop_vocab(aq_model *m, int embed);

const aq_llama_config *aq_model_config(const aq_model *m);

/* Run a packed batch (see top). logits: [sum(lens), vocab] caller-owned, or
 * NULL (e.g. capture only). opts may be NULL (FP, no capture). Errors:
 * AQ_ERR_ARG for a token id out of range (naming sequence, position and id),
 * a sequence longer than max_seq_len or empty; AQ_ERR_NOMEM; whatever the
 * capture callback returns. */
aq_status aq_model_forward(aq_model *m, const int *tokens, const int *lens, int n_seqs,
                           const aq_forward_opts *opts, float *logits, aq_error *err);

/* Resuming a forward in the middle (added for src/model/sensitivity.h: re-run
 * only the blocks after a changed layer). All fields optional. */
typedef struct aq_forward_resume {
    int start_block;      /* first block to run, 0..n_layers (n_layers: head only) */
    const float *x_start; /* the residual stream at the input of start_block,
                             [sum(lens), dim]; NULL = the embedding (start_block 0) */
    float *save_x;        /* NULL, or [n_layers, sum(lens), dim] receiving the residual
                             stream at the input of every block run (block b at
                             b * sum(lens) * dim; blocks < start_block untouched) */
} aq_forward_resume;

/* aq_model_forward with a resume point (r may be NULL = aq_model_forward). The
 * tokens are still needed (validation, positions). With x_start equal to the
 * residual a full forward had at that block, the logits are bit-identical to
 * the full forward's. AQ_ERR_ARG for a bad start_block / missing x_start, plus
 * aq_model_forward's errors. */
aq_status aq_model_forward_resume(aq_model *m, const int *tokens, const int *lens, int n_seqs,
                                  const aq_forward_opts *opts, const aq_forward_resume *r,
                                  float *logits, aq_error *err);

/* Linear layer geometry and its FP weight [d_out, d_in] (owned by m; weight may
 * be NULL). block = n_layers with AQ_LIN_HEAD for the classifier. AQ_ERR_ARG
 * for an invalid (block, which). */
aq_status aq_model_linear(const aq_model *m, int block, aq_linear which, const float **weight,
                          int *d_out, int *d_in, aq_error *err);
/* The FP bias [d_out] of a linear (owned by m), or NULL when it has none
 * (plain Llama; the classifier never has one) or (block, which) is invalid. */
const float *aq_model_linear_bias(const aq_model *m, int block, aq_linear which);
/* Qwen3's per-head RMSNorm gain [head size] of block's q (which 0) or k
 * (which 1) before RoPE; NULL when the model has none. Never quantized. */
const float *aq_model_qk_norm_gain(const aq_model *m, int block, int which);
/* The capture point feeding a linear (Q/K/V -> ATTN_IN, ...; HEAD -> HEAD). */
aq_cap_point aq_linear_cap_point(aq_linear which);
/* HF tensor prefix of a linear ("model.layers.3.mlp.down_proj", "lm_head")
 * into buf (size n). Short names: "q_proj", ..., "down_proj", "lm_head". */
void aq_linear_prefix(int block, aq_linear which, char *buf, size_t n);
const char *aq_linear_short_name(aq_linear which);
const char *aq_cap_point_name(aq_cap_point p);
/* Width of a capture point's rows. */
int aq_cap_point_dim(const aq_model *m, aq_cap_point p);

/* Install / remove a quantized override for one linear (see aq_linear_override).
 * AQ_ERR_ARG for a bad (block, which) or bits; AQ_ERR_NUMERIC for NaN/Inf. */
aq_status aq_model_set_override(aq_model *m, int block, aq_linear which,
                                const aq_linear_override *ov, aq_error *err);
/* A LAZY override (the write stage, docs/MEMORY.md "write"): as
 * aq_model_set_override with ov->weight NULL, the weight coming from
 * dequant(ctx, out) [d_out, d_in]. A lazy model calls it when the linear's
 * block is acquired and frees the result when the block is released, so only
 * the held blocks' overrides exist in float32 (an eager model, or a block
 * held now, calls it at once). ctx is borrowed: the caller keeps it, and what
 * dequant computes from it, unchanged until the override is cleared or
 * replaced or m is freed. A non-finite weight is AQ_ERR_NUMERIC naming the
 * linear, from this call or from the acquire. */
typedef void (*aq_dequant_fn)(const void *ctx, float *out);
aq_status aq_model_set_override_lazy(aq_model *m, int block, aq_linear which, const aq_linear_override *ov,
                                     aq_dequant_fn dequant, const void *ctx, aq_error *err);
void aq_model_clear_override(aq_model *m, int block, aq_linear which);
/* Number of linears with an override installed, plus 1 when a quantized-mode
 * embedding is (aq_model_set_embed_override). */
int aq_model_override_count(const aq_model *m);

/* Quantized-mode RMSNorm gains (global tuning). which 0 = input_layernorm
 * (before attention), 1 = post_attention_layernorm (before the MLP); block =
 * n_layers with which 0 = the final model.norm. g [dim] is COPIED; a forward
 * with quantized = 1 uses it instead of the model's gain (FP forwards never
 * do; the KV-cache decoder runs FP only). AQ_ERR_ARG for a bad (block, which)
 * or g NULL, AQ_ERR_NUMERIC for NaN/Inf, AQ_ERR_NOMEM. */
aq_status aq_model_set_norm_override(aq_model *m, int block, int which, const float *g,
                                     aq_error *err);
void aq_model_clear_norm_overrides(aq_model *m);
/* Quantized-mode token embedding e [vocab, dim] (COPIED; NULL removes it): a
 * forward with quantized = 1 (and the tuning gradient) looks tokens up in it
 * instead of the model's embedding; FP forwards never do. A tied classifier is
 * not changed by it: install the same matrix as the AQ_LIN_HEAD override.
 * AQ_ERR_NUMERIC for NaN/Inf, AQ_ERR_NOMEM. */
aq_status aq_model_set_embed_override(aq_model *m, const float *e, aq_error *err);
/* The gain [dim] a forward with this quantized flag uses for norm (block,
 * which) (the override when quantized and installed, else the model's; owned
 * by m, valid until the override changes); NULL for a bad (block, which). */
const float *aq_model_norm(const aq_model *m, int block, int which, int quantized);

/* Load every quantized layer found in a quantized checkpoint (a directory or
 * safetensors file written by the pipeline in the qlayer layout,
 * src/adaquant/qlayer.h: metadata "quant.P" marks layer P) as overrides, read
 * with aq_qlayer_load_ckpt (link aq_adaquant). *n_loaded receives the count;
 * no quant.* metadata is AQ_ERR_NOTFOUND; on an error the layers loaded before
 * it stay installed. Every RMSNorm gain present in the checkpoint
 * (model.layers.<i>.input_layernorm.weight, ...post_attention_layernorm.weight,
 * model.norm.weight; [dim], F32/F16/BF16, finite, else an error naming the
 * file and tensor) is installed as a norm override (aq_model_set_norm_override).
 * An embedding stored at a tensor option (metadata quant.model.embed_tokens,
 * format version 2: f16 or wK, qlayer.h aq_qtensor_load_ckpt) becomes the
 * quantized-mode embedding and, when tied, the classifier override (no bias);
 * an untied quant.lm_head at f16/wK the classifier override. Each counts in
 * *n_loaded. */
aq_status aq_model_load_quantized(aq_model *m, const char *path, int *n_loaded, aq_error *err);

/* Incremental decoding with a KV cache (generation). One sequence, one token
 * at a time; logits [vocab] of the next token. */
typedef struct aq_kv_cache aq_kv_cache;
aq_status aq_kv_cache_new(const aq_model *m, aq_kv_cache **out, aq_error *err);
void aq_kv_cache_free(aq_kv_cache *c);
/* Feed token at position pos (positions 0,1,2,... in order; pos < max_seq_len). */
aq_status aq_model_decode_step(aq_model *m, aq_kv_cache *c, int token, int pos, float *logits,
                               aq_error *err);

/* Bytes held by the model's weights (F32; a lazy model's resident ones) and
 * its current scratch. */
size_t aq_model_weight_bytes(const aq_model *m);
size_t aq_model_scratch_bytes(const aq_model *m);

#endif
