/* pipeline_size.h — the bytes of the output's model files, computed before
 * they exist (docs/FORMAT.md "The model files and their size").
 *
 * "The model files" of OUTDIR are what a runtime needs to run the model, the
 * counterpart of llama.cpp's one GGUF file (tensors, hyper-parameters and
 * vocabulary): model.safetensors (8-byte length, JSON header, padding, data),
 * config.json, and the tokenizer files copied beside them (tokenizer.bin, or
 * tokenizer.json with tokenizer_config.json / special_tokens_map.json when
 * present beside it) and generation_config.json when the model directory has
 * one. The run's reports, quantization.json and plots are not part of it.
 *
 * A budget in bytes is split in two: each (layer, option) task pays the bytes
 * of its tensors (data and header entries, its metadata entry), and the rest is
 * fixed. The header's data_offsets depend on every choice before a tensor, so
 * the table counts every offset at the width of the largest possible one and
 * the padding at 7 bytes: the MIP's total is an upper bound, and
 * aq_pipe_size_exact gives the exact bytes of a choice (the header laid out
 * exactly as io/safetensors_writer.c lays it out). */
#ifndef AQ_DIST_PIPELINE_SIZE_H
#define AQ_DIST_PIPELINE_SIZE_H

#include <stdint.h>

#include "../export_gguf.h"
#include "pipeline.h"

typedef struct aq_pipe_size {
    int64_t fixed;         /* bytes no task pays (upper-bound header accounting) */
    int64_t side;          /* config.json + tokenizer side files */
    int64_t *task_bytes;   /* [p->n_tasks]: bytes of each (layer, option) */
    int64_t total_weights; /* elements of every tensor of the source model (BPW denominator) */
} aq_pipe_size;

/* Sizes of every task of p and the fixed part; with_extra 0 counts the
 * tensors of the tensor menu as F32 in the fixed part (a budget that does not
 * allocate them). Free with aq_pipe_size_free. */
aq_status aq_pipe_size_build(const aq_pipe_cfg *c, const aq_pipe_plan *p, int with_extra, aq_pipe_size *s,
                             aq_error *err);
void aq_pipe_size_free(aq_pipe_size *s);

/* The budget's bytes (a "bpw" budget times the model's weights / 8). */
int64_t aq_pipe_budget_byte_value(const aq_pipe_budget *b, const aq_pipe_size *sz);

/* Exact bytes of the model files for choice[n_layers + n_extra] (option index
 * per layer; an extra at -1 or "f32" stays the plain F32 tensor); *safetensors
 * (may be NULL) receives model.safetensors' part. */
aq_status aq_pipe_size_exact(const aq_pipe_cfg *c, const aq_pipe_plan *p, const int *choice, int64_t *bytes,
                             int64_t *safetensors, aq_error *err);

/* A group option ("w4g32", "q4_0": src/adaquant/adaquant.h) is absent for a
 * layer whose rows are not a multiple of its group, as llama.cpp falls back
 * (stories260K's down_proj rows are 172 long): its task is not run and its
 * row is not in the allocation table. */
int aq_pipe_option_absent(const char *option, int64_t d_in);
int aq_pipe_task_absent(const aq_pipe_plan *p, size_t task);

/* The side files copied into OUTDIR: source path and name in OUTDIR, n <= 5. */
typedef struct aq_pipe_side {
    int n;
    char src[5][AQ_PIPE_PATH];
    char name[5][32];
} aq_pipe_side;
aq_status aq_pipe_side_files(const aq_pipe_cfg *c, aq_pipe_side *s, aq_error *err);

/* --out-format gguf (c->gguf): the same functions measure OUTDIR/model.gguf
 * instead (pipeline_size_gguf.c): aq_pipe_size_build's fixed part is the
 * file at the first option of every layer less those tasks' bytes (exact:
 * each tensor's data is padded to 32 bytes), side 0, total_weights the
 * elements of the GGUF's tensors (llama.cpp's BPW denominator); an absent
 * option's task_bytes is INT64_MAX / 4; aq_pipe_size_exact gives the file's
 * bytes (*safetensors 0). The exporter lives in the CLI (mpi/export_gguf.c,
 * above this library): the CLI installs it in aq_pipe_gguf_hooks. */
typedef struct aq_pipe_gguf_io {
    aq_status (*size)(const aq_llama_config *c, const aq_tokenizer *tok, const char *tok_file,
                      const aq_export_opts *o, const aq_gguf_layout *lay, aq_gguf_size *out, aq_error *err);
    aq_status (*write)(const char *model_path, const char *tok_path, const char *quant, const aq_export_opts *o,
                       const char *path, aq_error *err);
} aq_pipe_gguf_io;
extern aq_pipe_gguf_io aq_pipe_gguf_hooks;
/* Menus GGUF cannot store (wKgG, activation quantization, a per-row wK
 * embedding option) refused, each named; how names what to do instead (the
 * command's wording). quantize checks its own menus, solve the work's. */
aq_status aq_pipe_gguf_menu_check(const aq_pipe_cfg *c, const char *how, aq_error *err);
/* The export options of quantize's model.gguf (qpath: the quantized OUTDIR). */
void aq_pipe_gguf_opts(aq_export_opts *o, const char *qpath);
/* The GGUF of choice: exact file bytes, tensor bytes and elements. */
aq_status aq_pipe_gguf_size_of(const aq_pipe_cfg *c, const aq_pipe_plan *p, const int *choice, aq_gguf_size *out,
                               aq_error *err);
aq_status aq_pipe_gguf_size_build(const aq_pipe_cfg *c, const aq_pipe_plan *p, int with_extra, aq_pipe_size *s,
                                  aq_error *err);

/* The format_version model.safetensors records for a choice: 1, or 2 when a
 * tensor of the tensor menu is stored at f16 or wK. */
int aq_pipe_format_version(const aq_pipe_cfg *c, const aq_pipe_plan *p, const int *choice);

#endif
