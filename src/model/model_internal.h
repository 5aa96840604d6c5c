/* model_internal.h — the aq_model struct and model.c's helpers shared by the
 * engine's files (model.c: loading and overrides; forward.c: the batch
 * forward; decode.c: KV-cache decoding; qload.c: quantized layers). The
 * lowest layer: model.c calls nothing above it; the numeric kernels are in
 * ops.h (ops.c), then forward.c, then grad.c. Not a public interface. */
#ifndef AQ_MODEL_INTERNAL_H
#define AQ_MODEL_INTERNAL_H

#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "../blas/sgemm.h"

/* A quantized-execution override; weight == NULL and dequant == NULL means
 * "none installed". A lazy override (dequant set) has its weight only while
 * its block is acquired (model.c: materialize / drop). */
typedef struct aq_ovr {
    float *weight; /* [d_out, d_in] owned */
    float *bias;   /* [d_out] owned or NULL */
    int a_bits;    /* 0 = activations not quantized */
    float a_scale, a_zero;
    void (*dequant)(const void *ctx, float *out); /* lazy: the weight's source */
    const void *ctx;
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

/* Free the kl_grad caches: here, not in grad.c, because aq_model_free frees
 * them and model.c must not depend on the gradient code above it. */
static inline void aq_grad_scratch_free(aq_grad_scratch *g)
{
    free(g->acts);
    free(g->zf);
    free(g->zq);
    free(g->bwd);
    free(g->p);
    free(g->dp);
    free(g->kl_row);
    free(g->pos);
    memset(g, 0, sizeof *g);
}

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

/* Index of a norm (block, which) into m->norm_ovr; -1 if invalid. */
int aq_model_norm_index(const aq_model *m, int block, int which);
/* Validate a packed batch (forward's errors); rows = sum(lens), longest = max. */
aq_status aq_model_check_batch(const aq_model *m, const int *tokens, const int *lens, int n_seqs,
                               size_t *rows, size_t *longest, aq_error *err);
#endif
