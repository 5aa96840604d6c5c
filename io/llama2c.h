/* llama2c.h — the llama2.c formats: model .bin (legacy 7 x int32 header) and tokenizer .bin.
 *
 * Model: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (negative =
 * unshared classifier stored at the end), seq_len; then float32 token_embedding,
 * rms_att, wq, wk, wv, wo, rms_ffn, w1 (gate), w2 (down), w3 (up), rms_final,
 * 2 x seq_len*hs/2 unused floats, [wcls]. Imported under HF names with q/k rows
 * permuted from llama2.c's adjacent-pair RoPE to HF's rotate-half RoPE:
 *   hf_row[h*hs + half*hs/2 + i] = l2c_row[h*hs + 2*i + half]. */
#ifndef AQ_LLAMA2C_H
#define AQ_LLAMA2C_H

#include "checkpoint.h"

typedef struct aq_llama2c aq_llama2c;

/* Map and validate a model .bin: the file size must equal the header plus all
 * arrays exactly, dims positive, dim % n_heads == 0, n_heads % n_kv_heads == 0,
 * head size even, no NaN/Inf weight. *out owns the map (aq_l2c_close).
 * Errors: AQ_ERR_IO (open/mmap), AQ_ERR_FORMAT (header/size; the message names
 * the file, expected and actual size), AQ_ERR_NUMERIC (NaN/Inf, names tensor). */
aq_status aq_l2c_open(const char *path, aq_llama2c **out, aq_error *err);
/* Same over an in-memory image (fuzzer, tests): buf must outlive *out; label
 * names it in errors. */
aq_status aq_l2c_open_memory(const void *buf, size_t len, const char *label, aq_llama2c **out,
                             aq_error *err);
void aq_l2c_close(aq_llama2c *m); /* NULL is fine */
/* The config from the header: vocab_size = |header vocab|, max_seq_len =
 * seq_len, norm_eps 1e-5, rope_theta 10000, tied_embeddings = (vocab > 0). */
void aq_l2c_config(const aq_llama2c *m, aq_llama_config *cfg);
/* HF-named F32 views (q/k permuted copies owned by m; others point into the map),
 * valid until aq_l2c_close. Order: model.embed_tokens.weight; per layer
 * input_layernorm, self_attn.{q,k,v,o}_proj, post_attention_layernorm,
 * mlp.{gate,up,down}_proj; model.norm.weight; lm_head.weight (only if unshared).
 * Norm weights are 1-D [dim]; matrices 2-D [out, in]. */
size_t aq_l2c_count(const aq_llama2c *m);
const aq_tensor_view *aq_l2c_tensor(const aq_llama2c *m, size_t i); /* NULL if i >= count */
/* The view named `name`, or NULL if absent (no error). */
const aq_tensor_view *aq_l2c_find(const aq_llama2c *m, const char *name);
/* The path (or memory label) given at open. */
const char *aq_l2c_path(const aq_llama2c *m);

/* Tokenizer .bin: int32 max_token_length, then per token float32 score,
 * int32 length, bytes. The file does not store the count: vocab_size comes
 * from the model and the file must hold exactly that many tokens (errors say
 * "config/tokenizer vocabulary mismatch"); vocab_size 0 (no model, e.g.
 * `adaquant tokenize`) reads tokens up to the end of the file. Errors
 * (AQ_ERR_FORMAT) name the file, the token index and the byte offset:
 * truncation, negative length or length > max_token_length, non-finite score,
 * trailing bytes (count mismatch), no token at all; AQ_ERR_IO if the file
 * cannot be read; AQ_ERR_ARG if vocab_size < 0. On success *out owns its
 * arrays (aq_l2c_vocab_free); on failure *out is zeroed. */
typedef struct aq_l2c_vocab {
    int n;
    int max_token_length;
    char **pieces; /* NUL-terminated copies */
    int *lengths;
    float *scores;
} aq_l2c_vocab;
aq_status aq_l2c_vocab_read(const char *path, int vocab_size, aq_l2c_vocab *out, aq_error *err);
aq_status aq_l2c_vocab_parse(const void *buf, size_t len, int vocab_size, const char *label,
                             aq_l2c_vocab *out, aq_error *err);
void aq_l2c_vocab_free(aq_l2c_vocab *v); /* zeroes *v; NULL/zeroed is fine */

#endif
