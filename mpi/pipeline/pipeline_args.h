/* pipeline_args.h — the command-line options shared by `adaquant quantize`,
 * `capture`, `calibrate` and `solve` (one spelling, one meaning everywhere).
 * Each command enables the groups it accepts; an option of another group is
 * a usage error naming the command that takes it. */
#ifndef AQ_DIST_PIPELINE_ARGS_H
#define AQ_DIST_PIPELINE_ARGS_H

#include <stdio.h>

#include "pipeline.h"
#include "progress.h"

enum {
    AQ_ARGS_MODEL = 1,    /* MODEL --tokenizer, the data (--text --calib --eval ...), --options --mode --iters ... */
    AQ_ARGS_WORK = 2,     /* --work --resume */
    AQ_ARGS_BUDGET = 4,   /* --target-bits --target-size --max-loss --keep */
    AQ_ARGS_OUT = 8,      /* --out --force --eval-docs --eval-len --no-eval */
    AQ_ARGS_SHARD = 16,   /* --shard --shards */
    AQ_ARGS_GGUF = 32     /* --out-format (quantize: the GGUF budget and menus) */
};
/* --progress is accepted by every pipeline command (whatever the mask). */

/* The embedding / classifier menu under --out-format gguf: llama.cpp's types for token_embd / output. */
#define AQ_PIPE_GGUF_EMBED_OPTIONS "f32,f16,q8_0,q5_1,q5_0,q4_1,q4_0"

typedef struct aq_pipe_args {
    aq_pipe_cfg cfg;
    aq_pipe_budget budget;
    aq_pipe_out out;
    int resume, shard, shards;
    int have_work;
    int loss;     /* --loss: 0 not given, 1 kl, 2 layer, 3 block-mse, 4 block-fisher, 5 auto */
    int kl_given; /* --kl-windows given */
    int embed_given; /* --embed-options given */
    int opts_given;  /* --options given */
    int srows_given; /* --sample-rows given */
    int progress_given;        /* --progress given */
    aq_progress_mode progress; /* its value (the command exports it: progress.h) */
    double max_rank_memory;    /* --max-rank-memory in bytes; 0 = no bound (memory.h) */
} aq_pipe_args;

/* Parse argv (argv[0] = command name) with the groups in mask. Returns 0, or
 * the exit code 2 after printing the usage problem (aq_cli_usage style). */
int aq_pipe_args_parse(const char *cmd, int mask, int argc, char **argv, aq_pipe_args *a);
/* The default tokenizer of MODEL when --tokenizer is omitted (quantize,
 * capture, eval): MODEL/tokenizer.json, else MODEL/tokenizer.bin, when MODEL is
 * a directory holding one. 0 and the path in out, or -1 (out emptied). */
int aq_default_tokenizer(const char *model, char *out, size_t n);
/* The help text of the options in mask. */
void aq_pipe_args_help(FILE *out, int mask);

#endif
