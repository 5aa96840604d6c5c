/* fixed_chunks.h — the constants that decide output bytes, in one place
 * (issue 13 item 5).
 *
 * Float sums are not associative, so every distributed sum of the pipeline
 * is cut into chunks whose size is FIXED, independent of the number of ranks,
 * and the partial sums are added in chunk order (ordered_sum.h). The chunk
 * sizes are therefore part of what the output bytes are a function of:
 * changing one changes the bytes of every run (and must be recorded as a
 * format change in docs/WORKDIR.md). What is not here is a run setting and is
 * in the fingerprint of the statistics or results instead: the capture's
 * windows per chunk (aq_pipe_cfg.chunk_windows), the seeds, the options.
 *
 * tests/test_pipeline.py reads AQ_EVAL_CHUNK from this file to keep its
 * evaluation spread over every rank. */
#ifndef AQ_PIPELINE_FIXED_CHUNKS_H
#define AQ_PIPELINE_FIXED_CHUNKS_H

/* Global tuning: documents per gradient chunk (stage_tune.c). 1 lets up to
 * --tune-batch ranks work on one step. */
#define AQ_TUNE_CHUNK 1

/* Evaluation: documents per chunk (stage_eval.c); each rank scores a
 * contiguous run of chunks, the NLL sums are added in chunk order. */
#define AQ_EVAL_CHUNK 32

#endif
