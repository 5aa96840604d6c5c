/* cnn_quant_seq.c — quantize every layer of a captured CNN, in parallel mode
 * (each layer from the FP model's inputs) or sequentially (each layer from
 * the inputs the model with all earlier layers quantized gives it, as the
 * AdaQuant paper's sequential variant). */
#include <stdlib.h>
#include <string.h>

#include "cnn_quant.h"

aq_status aq_cnnq_quantize_all(const aq_cnn_graph *g, const aq_cnnq_capture *cap,
                               const aq_cnnq_seq *seq, aq_cnnq_method m, const aq_layer_opts *opts,
                               aq_cnnq_result *res, aq_error *err)
{
    int L = cap->n_layers;
    const aq_cnnq_result **rp = calloc((size_t)L + 1, sizeof *rp);
    if (!rp) return aq_fail_nomem(err, "result table", (size_t)L * sizeof *rp);
    aq_status st = AQ_OK;
    int done = 0;
    for (int i = 0; i < L && st == AQ_OK; i++) {
        float *x_in = NULL;
        if (seq && i > 0) { /* layers 0..i-1 quantized, fake-quantized inputs */
            aq_cnnq_model qm;
            st = aq_cnnq_model_build(g, cap->layers, L, rp, 1, &qm, err);
            if (st == AQ_OK) {
                st = aq_cnnq_capture_input(&qm, cap, i, seq->pixels, seq->image_size, seq->norm,
                                           seq->chunk, &x_in, err);
                aq_cnnq_model_free(&qm);
            }
        }
        if (st == AQ_OK) st = aq_cnnq_quantize_layer(g, cap, i, x_in, m, &opts[i], &res[i], err);
        free(x_in);
        if (st == AQ_OK) rp[i] = &res[i], done = i + 1;
    }
    if (st != AQ_OK)
        for (int i = 0; i < done; i++) aq_cnnq_result_free(&res[i]);
    free((void *)rp);
    return st;
}
