/* export_gguf.h — writing a loaded model (float, or with a quantized OUTDIR's
 * overrides installed) as a GGUF file that llama.cpp loads (architecture
 * `llama`): llama.cpp's tensor names, its hparams keys, the tokenizer
 * metadata, and each weight converted to a ggml type. docs/EXPORT.md. */
#ifndef AQ_EXPORT_GGUF_H
#define AQ_EXPORT_GGUF_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../common/ggml_type.h"
#include "../common/status.h"
#include "../src/model/model.h"
#include "../src/text/tokenizer.h"

typedef struct aq_export_opts {
    int type;         /* ggml type of the 2-D weights (aq_ggml_type) */
    int type_embd;    /* of token_embd.weight */
    const char *name; /* general.name */
    int quantized;    /* 1: take the installed overrides (quantized model) */
    const char *qpath;/* the quantized checkpoint (OUTDIR) the overrides came from, or
                         NULL: its layers stored in a ggml block type (q4_0 ...) are
                         written as they are stored, in that type, not re-quantized;
                         so are an embedding / classifier stored at a block type or f16 */
    int type_head_given, type_head; /* output.weight's type when given (else `type`) */
} aq_export_opts;

/* The ggml type of every tensor of one file: what writing and sizing share
 * (the order, names, shapes and metadata come from the config). */
typedef struct aq_gguf_layout {
    int embd_type;           /* token_embd.weight */
    int head_type;           /* output.weight; -1: none (tied: llama.cpp uses token_embd) */
    int *lin_type;           /* [n_layers * AQ_LIN_COUNT], block-major */
    unsigned char *lin_bias; /* [n_layers * AQ_LIN_COUNT]: 1 = blk.N.X.bias (F32) */
} aq_gguf_layout;
/* Inline: the pipeline library (pipeline_size_gguf.c) builds layouts too. */
static inline void aq_gguf_layout_free(aq_gguf_layout *lay)
{
    free(lay->lin_type);
    free(lay->lin_bias);
    memset(lay, 0, sizeof *lay);
}

static inline aq_status aq_gguf_layout_alloc(aq_gguf_layout *lay, int n_layers, aq_error *err)
{
    memset(lay, 0, sizeof *lay);
    size_t n = (size_t)(n_layers > 0 ? n_layers : 1) * AQ_LIN_COUNT;
    lay->lin_type = calloc(n, sizeof *lay->lin_type);
    lay->lin_bias = calloc(n, 1);
    if (lay->lin_type && lay->lin_bias) return AQ_OK;
    aq_gguf_layout_free(lay);
    return aq_fail(err, AQ_ERR_NOMEM, "export: layout of %d blocks", n_layers);
}

/* The file aq_export_gguf would write at that layout, without weights:
 * file = its exact bytes (header, metadata with the vocabulary, tensor infos,
 * alignment padding, data); tensor_bytes and elements summed over its tensors
 * (llama.cpp's "model size" and the denominator of its BPW). Tensor data are
 * each padded to the alignment (32), so file = the fixed part + the sum over
 * tensors of their aligned bytes. Errors: aq_export_gguf_check_config's. */
typedef struct aq_gguf_size {
    uint64_t file, tensor_bytes, elements;
} aq_gguf_size;
aq_status aq_export_gguf_size(const aq_llama_config *c, const aq_tokenizer *tok, const char *tok_file,
                              const aq_export_opts *o, const aq_gguf_layout *lay, aq_gguf_size *out,
                              aq_error *err);
/* AQ_ERR_ARG naming an architecture or variant llama.cpp's `llama` does not cover. */
aq_status aq_export_gguf_check_config(const aq_llama_config *c, const aq_export_opts *o, aq_error *err);

/* llama.cpp's name of a block linear ("attn_q" ... "ffn_down"; blk.N.<name>.weight),
 * "output" for the classifier. */
const char *aq_gguf_lin_name(aq_linear l);

/* Install the weights of a llama.cpp GGUF file (architecture `llama`, from our
 * export or from llama-quantize) into m as its quantized-mode overrides, so
 * that aq_eval_run scores the file against m's float weights (gguf_import.c,
 * docs/EXPORT.md "Scoring a GGUF"). Every tensor is dequantized to F32 with
 * ggml's arithmetic (F32, F16 and the block types Q4_0 ... Q8_0, Q2_K ... Q6_K);
 * q/k rows go back to the rotate-half order; a linear without a bias tensor
 * runs without bias, as llama.cpp runs it; no output.weight = tied to
 * token_embd. Errors name the tensor: a shape or hparam differing from m's,
 * a missing tensor, a type with no decoder, NaN/Inf. *n_loaded: tensors installed. */
aq_status aq_gguf_import(aq_model *m, const char *path, int *n_loaded, aq_error *err);
/* 1 when path is a readable file starting with the GGUF magic. */
int aq_gguf_is_file(const char *path);

/* "F32", "F16", "Q8_0", ... (case-insensitive) -> ggml type; -1 if unknown. */
int aq_export_parse_type(const char *s);

/* Write m (config, weights) and tok (the vocabulary; tok_file the file
 * aq_tok_open read) to path, atomically. Errors: AQ_ERR_ARG for an
 * architecture, variant or tokenizer kind not supported yet (named), for
 * activation quantization (GGUF has none); the writer's errors (the path). */
aq_status aq_export_gguf(aq_model *m, const aq_tokenizer *tok, const char *tok_file,
                         const aq_export_opts *o, const char *path, aq_error *err);

/* The whole export from files: the model at model_path, its tokenizer
 * (tok_path as aq_tok_open takes it), the quantized layers of OUTDIR quant
 * (NULL: none; the count loaded goes to stderr), written to path as
 * aq_export_gguf. `adaquant export` and `quantize --out-format gguf`. */
aq_status aq_export_gguf_files(const char *model_path, const char *tok_path, const char *quant,
                               const aq_export_opts *o, const char *path, aq_error *err);

/* The tokenizer.ggml.* metadata of tok (export_vocab.c). llama2.c .bin:
 * SentencePiece ("llama": tokens with spaces as U+2581, scores, token
 * types), read from tok_file; a byte-level BPE tokenizer.json: "gpt2".
 * AQ_ERR_ARG for a kind not supported yet. */
struct aq_gguf_writer;
aq_status aq_export_add_vocab(struct aq_gguf_writer *w, const aq_tokenizer *tok,
                              const char *tok_file, int vocab, aq_error *err);

/* Same for a byte-level BPE tokenizer.json (export_hfvocab.c): "gpt2". */
aq_status aq_export_add_hf_vocab(struct aq_gguf_writer *w, const aq_tokenizer *tok,
                                 const char *tok_file, int vocab, aq_error *err);

#endif
