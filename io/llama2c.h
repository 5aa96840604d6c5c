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

/* Map and validate a model .bin (sizes must match the header exactly). */
aq_status aq_l2c_open(const char *path, aq_llama2c **out, aq_error *err);
aq_status aq_l2c_open_memory(const void *buf, size_t len, const char *label, aq_llama2c **out,
                             aq_error *err);
void aq_l2c_close(aq_llama2c *m);
void aq_l2c_config(const aq_llama2c *m, aq_llama_config *cfg);
/* HF-named F32 views (q/k permuted copies owned by m; others point into the map). */
size_t aq_l2c_count(const aq_llama2c *m);
const aq_tensor_view *aq_l2c_tensor(const aq_llama2c *m, size_t i);

/* Tokenizer .bin: int32 max_token_length, then per token float32 score,
 * int32 length, bytes. vocab_size comes from the model. */
typedef struct aq_l2c_vocab {
    int n;
    int max_token_length;
    char **pieces;   /* NUL-terminated copies */
    int *lengths;
    float *scores;
} aq_l2c_vocab;
aq_status aq_l2c_vocab_read(const char *path, int vocab_size, aq_l2c_vocab *out, aq_error *err);
aq_status aq_l2c_vocab_parse(const void *buf, size_t len, int vocab_size, const char *label,
                             aq_l2c_vocab *out, aq_error *err);
void aq_l2c_vocab_free(aq_l2c_vocab *v);

#endif
