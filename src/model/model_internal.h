/* model_internal.h — the aq_model struct and helpers shared by the engine's
 * files (model.c: loading and overrides; forward.c: the batch forward;
 * decode.c: KV-cache decoding; qload.c: quantized layers). Not a public
 * interface: only src/model/ includes it. */
#ifndef AQ_MODEL_INTERNAL_H
#define AQ_MODEL_INTERNAL_H

#include "model.h"
#include "../blas/sgemm.h"

/* A quantized-execution override; weight == NULL means "none installed". */
typedef struct aq_ovr {
    float *weight; /* [d_out, d_in] owned */
    float *bias;   /* [d_out] owned or NULL */
    int a_bits;    /* 0 = activations not quantized */
    float a_scale, a_zero;
} aq_ovr;

typedef struct aq_block_w {
    float *attn_norm, *ffn_norm; /* [dim] */
    float *lin[AQ_LIN_COUNT];    /* q,k,v,o,gate,up,down weights [d_out, d_in] */
    float *bias[AQ_LIN_COUNT];   /* their biases [d_out], NULL where the config has none */
    float *q_norm, *k_norm;      /* Qwen3 per-head RMSNorm gains [head size], or NULL */
} aq_block_w;

/* Scratch for one packed batch of up to cap_rows tokens; grown on demand. */
typedef struct aq_scratch {
    size_t cap_rows, cap_seq;
    float *x, *xb, *xb2, *q, *k, *v, *att, *hb, *hb2, *xq;
    float *scores; /* [cap_seq, cap_seq] */
    int *pos;      /* [cap_rows] */
    long *ids;     /* [n_seqs] default sequence ids */
    size_t cap_ids;
    size_t bytes;
} aq_scratch;

/* Caches of aq_model_kl_grad (grad.c), grown on demand like aq_scratch: the
 * quantized forward's activations of every block (acts), the logits (zf FP,
 * zq quantized; zq becomes dKL/dz), the backward's row buffers (bwd) and the
 * per-sequence attention matrices (p, dp: [cap_seq, cap_seq] each), two
 * float64 rows of vocab for the KL (kl_row) and the rows' positions. */
typedef struct aq_grad_scratch {
    size_t cap_rows, cap_seq;
    float *acts, *zf, *zq, *bwd, *p, *dp;
    double *kl_row;
    int *pos; /* [cap_rows] positions */
    size_t bytes;
} aq_grad_scratch;

struct aq_model {
    aq_llama_config cfg;
    int hs, qd, kvd;            /* head size, n_heads*hs, n_kv_heads*hs */
    float *embed;               /* [vocab, dim] */
    float *embed_ovr;           /* [vocab, dim] quantized-mode embedding (owned) or NULL */
    float *final_norm;          /* [dim] */
    float *head;                /* [vocab, dim]; == embed when tied (not owned then) */
    aq_block_w *blocks;         /* [n_layers] */
    aq_ovr *ovr;                /* [n_layers * AQ_LIN_COUNT + 1]; last = classifier */
    float *rope_cos, *rope_sin; /* [max_seq_len, hs/2] */
    int window;                 /* aq_llama_window: sequences longer are refused (0 = none) */
    float **norm_ovr;           /* [2 * n_layers + 1] quantized-mode RMSNorm gains [dim] or
                                   NULL: block b attn at 2b, ffn at 2b+1, final at 2 n_layers */
    size_t weight_bytes;        /* resident F32 weights */
    aq_checkpoint *ck;          /* lazy loading: the open (mapped) source, owned; NULL = eager */
    int *refs;                  /* lazy: [n_layers] acquire counts (a block is resident while > 0) */
    size_t block_bytes;         /* lazy: F32 bytes of one block */
    aq_scratch s;
    aq_grad_scratch gs;
};

/* The embedding a forward looks tokens up in: the override when quantized and installed. */
static inline const float *aq_model_embed_rows(const aq_model *m, int quantized)
{
    return quantized && m->embed_ovr ? m->embed_ovr : m->embed;
}

/* Index of (block, which) into m->ovr; -1 if invalid. */
int aq_model_lin_index(const aq_model *m, int block, aq_linear which);
/* d_out / d_in of a linear kind. */
void aq_model_lin_shape(const aq_model *m, aq_linear which, int *d_out, int *d_in);
/* The FP weight of (block, which) (no checks). */
float *aq_model_lin_weight(const aq_model *m, int block, aq_linear which);

/* y[n, d_out] = x[n, d_in] W^T (single-threaded BLIS sgemm). */
void aq_sgemm_xwt(const float *x, const float *w, float *y, size_t n, int d_in, int d_out);
/* y[d_out] = W[d_out, d_in] x (one token: decoding). */
void aq_sgemv_wx(const float *w, const float *x, float *y, int d_in, int d_out);
/* row[0..n) = softmax(row[0..n)), row[n..len) = 0 (one causal attention row). */
void aq_softmax_prefix(float *row, int n, int len);
/* out = rmsnorm(x) * g over n rows of d. */
void aq_rmsnorm_rows(const float *x, const float *g, float *out, size_t n, int d, float eps);
/* HF rotate-half RoPE on n rows of n_heads heads, row r at position pos[r]. */
void aq_rope_rows(const aq_model *m, float *x, size_t n, int n_heads, const int *pos);
/* Its inverse (the transpose of the rotation): the backward pass. */
void aq_rope_rows_inv(const aq_model *m, float *x, size_t n, int n_heads, const int *pos);
/* Causal grouped-query attention of one sequence of L rows: q [L, qd] (row
 * stride qd), k, v [L, kvd] (stride kvd) -> out [L, qd]; scores [L, L] scratch. */
void aq_attend_seq(const aq_model *m, const float *q, const float *k, const float *v, float *out,
                   float *scores, int L);
/* Index of a norm (block, which) into m->norm_ovr; -1 if invalid. */
int aq_model_norm_index(const aq_model *m, int block, int which);
/* Validate a packed batch (forward's errors); rows = sum(lens), longest = max. */
aq_status aq_model_check_batch(const aq_model *m, const int *tokens, const int *lens, int n_seqs,
                               size_t *rows, size_t *longest, aq_error *err);
/* Free the kl_grad caches (grad.c). */
void aq_grad_scratch_free(aq_grad_scratch *g);
/* The Qwen3 q/k norm, in place on n rows of n_heads heads of q (which 0) or
 * k (which 1); nothing when the model has none. */
void aq_model_qk_norm(const aq_model *m, int block, int which, float *x, size_t n);
/* Apply linear (block, which) to x [n, d_in] -> y [n, d_out] (plus the
 * model's bias if it has one), with its override (weight and bias) when quantized (x is not modified: fake-quant goes to m->s.xq,
 * which must hold n * d_in floats). */
void aq_model_apply_linear(aq_model *m, int block, aq_linear which, const float *x, float *y,
                           size_t n, int quantized, float *xq_buf);

#endif
