/* export_gptq.h — a quantized OUTDIR (docs/FORMAT.md) as a GPTQ checkpoint
 * directory that AutoGPTQ / GPTQModel / transformers / vLLM load: int32
 * qweight/qzeros, fp16 scales, g_idx, checkpoint_format "gptq" (v1 zero
 * points), quantize_config.json with GPTQModel's `dynamic` per-module bits.
 * docs/EXPORT.md "GPTQ" is the exact layout. */
#ifndef AQ_EXPORT_GPTQ_H
#define AQ_EXPORT_GPTQ_H

#include "../common/status.h"

typedef struct aq_export_gptq_opts {
    int round_zeros; /* 1: round fractional zero points to integers (error reported); 0: refuse */
} aq_export_gptq_opts;

/* Write the quantized model in `outdir` as the directory `dir` (model.safetensors,
 * quantize_config.json, config.json, the tokenizer files), atomically: built in
 * dir.tmp.<pid> and renamed; any error leaves no dir and no temporary. Logs the
 * dequantization error of the fp16 scales (and rounded zeros) on stderr.
 * Errors: AQ_ERR_ARG when outdir is not a quantized model, dir exists, a layer
 * has activation quantization or (without round_zeros) a fractional zero point,
 * a zero point or scale the layout cannot hold (each named: layer, row). */
aq_status aq_export_gptq(const char *outdir, const aq_export_gptq_opts *o, const char *dir,
                         aq_error *err);

#endif
