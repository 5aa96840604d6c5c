/* dist_synth.h — synthetic (layer, option) tasks for the distribution tests:
 * each task's result is a deterministic pseudo-random vector derived from its
 * key alone (testutil.h's generator seeded by FNV-1a of "layer|option|seed"), so any rank
 * computes the same bytes, and the tests can rebuild the expected file
 * serially, without the driver. Header-only: shared by test_dist_*.c. */
#ifndef AQ_DIST_SYNTH_H
#define AQ_DIST_SYNTH_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/fingerprint.h"
#include "../io/resultfile.h"
#include "../mpi/pipeline/tasks.h"
#include "testutil.h"

#define SYN_LAYERS 6
#define SYN_OPTIONS 3
#define SYN_TASKS (SYN_LAYERS * SYN_OPTIONS)

static const char *const syn_layer_names[SYN_LAYERS] = {
    "layers.0.attention.wq", "layers.0.attention.wk", "layers.0.feed_forward.w1",
    "layers.1.attention.wq", "layers.1.feed_forward.w2", "output"};
static const char *const syn_option_names[SYN_OPTIONS] = {"w8a16", "w4a8", "w3a16"};

static inline int64_t syn_d_out(int l) { return 8 + 4 * l; }
static inline int64_t syn_d_in(int l) { return 16 + 8 * (l % 3); }

/* The tasks in canonical order (layer-major), with cost and fingerprint. */
static inline void syn_tasks(aq_dist_task *t)
{
    for (int l = 0; l < SYN_LAYERS; l++)
        for (int o = 0; o < SYN_OPTIONS; o++) {
            aq_dist_task *x = &t[l * SYN_OPTIONS + o];
            x->layer = syn_layer_names[l];
            x->option = syn_option_names[o];
            x->layer_index = l;
            x->option_index = o;
            x->cost = aq_dist_task_cost(syn_d_out(l), syn_d_in(l), 256, o == 1 ? 300 : 100);
            aq_fp_builder b;
            aq_fp_init(&b);
            aq_fp_add_str(&b, "model", "synthetic-model-v1");
            aq_fp_add_str(&b, "layer", x->layer);
            aq_fp_add_str(&b, "option", x->option);
            aq_fp_add_u64(&b, "seed", 1234);
            x->fp = aq_fp_final(&b);
        }
}

/* The task's tensors and row; *vec is malloc'd (caller frees). */
static inline void syn_content(const aq_dist_task *t, float **vec, int64_t *rows, int64_t *cols, aq_loss_row *row)
{
    int l = t->layer_index;
    *rows = syn_d_out(l), *cols = syn_d_in(l);
    size_t n = (size_t)(*rows * *cols);
    float *v = malloc(n * sizeof *v);
    aq_fp_builder b;
    aq_fp_init(&b);
    aq_fp_update(&b, t->layer, strlen(t->layer));
    aq_fp_update(&b, "|", 1);
    aq_fp_update(&b, t->option, strlen(t->option));
    aq_fp_update(&b, "|1234", 5);
    uint64_t s = aq_fp_final(&b).h[0] | 1; /* the generator needs a non-zero seed */
    double ss = 0;
    for (size_t i = 0; i < n; i++) {
        v[i] = 2.0f * aq_test_frand(&s);
        ss += (double)v[i] * v[i];
    }
    int wb = t->option[1] - '0';
    *row = (aq_loss_row){.loss = ss / (double)n * (wb == 8 ? 0.01 : wb == 4 ? 0.1 : 0.3),
                         .loss_rtn = ss / (double)n,
                         .loss_gptq = 0.5 * ss / (double)n,
                         .loss_init = NAN,
                         .seconds = 0, /* deterministic on purpose */
                         .params = (int64_t)n,
                         .macs = (int64_t)n,
                         .size_bits = (int64_t)n * wb + *rows * 32,
                         .iterations = t->option_index == 1 ? 300 : 100,
                         .w_bits = wb,
                         .a_bits = t->option[3] == '8' ? 8 : 16};
    *vec = v;
}

/* The full result description of a task (vec owned by the caller). */
static inline aq_result_desc syn_desc(const aq_dist_task *t, float **vec, aq_tensor_view *views)
{
    int64_t r, c;
    aq_loss_row row;
    syn_content(t, vec, &r, &c, &row);
    views[0] = (aq_tensor_view){.name = "qweight", .dtype = AQ_F32, .ndim = 2, .shape = {r, c},
                                .data = *vec, .nbytes = (size_t)(r * c) * 4};
    views[1] = (aq_tensor_view){.name = "w_scale", .dtype = AQ_F32, .ndim = 1, .shape = {r},
                                .data = *vec, .nbytes = (size_t)r * 4};
    return (aq_result_desc){.layer = t->layer, .option = t->option, .fp = t->fp, .row = row,
                            .n_tensors = 2, .tensors = views};
}

/* The expected bytes of a task's result file, encoded serially. */
static inline unsigned char *syn_expected(const aq_dist_task *t, size_t *len)
{
    float *vec;
    aq_tensor_view views[2];
    aq_result_desc d = syn_desc(t, &vec, views);
    unsigned char *buf = NULL;
    aq_error e = {0};
    if (aq_result_encode(&d, &buf, len, &e) != AQ_OK) fprintf(stderr, "encode: %s\n", e.msg);
    free(vec);
    return buf;
}

#endif
