/* validate.c — checks of a layer problem before any work: feed, shapes,
 * finiteness, and the degenerate inputs that make the normalised loss
 * undefined. Messages name the layer and what to do. */
#include <math.h>
#include <string.h>

#include "layer_state.h"

static aq_status check_finite(const float *x, size_t n, const char *name, const char *what,
                              aq_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return aq_fail(err, AQ_ERR_NUMERIC, "layer %s: %s has a non-finite value (%g) at element %zu",
                           name, what, (double)x[i], i);
    return AQ_OK;
}

aq_status aq_layer_validate(const aq_layer_problem *p, const aq_layer_opts *o, aq_error *err)
{
    const char *nm = p->name ? p->name : "layer";
    aq_layer_opts t = *o;
    char opt[32];
    aq_layer_opts_string(o, opt, sizeof opt);
    AQ_TRY(aq_layer_opts_parse(opt, &t, err));
    if (o->iters < 0 || o->outer_iters < 0 || o->polish_rounds < 0 || o->eval_every < 0 ||
        o->batch_rows < 0 || !(o->gptq_damp >= 0) || o->gptq_block < 0)
        return aq_fail(err, AQ_ERR_ARG, "layer %s: negative iteration count, batch or damping in the options", nm);
    if (o->act_fixed && o->a_bits < 16 && !(o->act_scale > 0 && isfinite(o->act_scale) && isfinite(o->act_zero)))
        return aq_fail(err, AQ_ERR_ARG, "layer %s: fixed activation quantizer needs a finite scale > 0", nm);
    if (!p->weight || p->d_out == 0 || p->d_in == 0)
        return aq_fail(err, AQ_ERR_SHAPE, "layer %s: empty weight (d_out %zu, d_in %zu)", nm, p->d_out, p->d_in);
    if (p->d_in > 65536)
        return aq_fail(err, AQ_ERR_SHAPE, "layer %s: d_in %zu too large for the Gram form (max 65536)", nm, p->d_in);
    AQ_TRY(check_finite(p->weight, p->d_out * p->d_in, nm, "weight", err));
    if (p->bias) AQ_TRY(check_finite(p->bias, p->d_out, nm, "bias", err));
    int rows = p->x != NULL, stats = p->gram_a != NULL;
    if (rows == stats)
        return aq_fail(err, AQ_ERR_ARG, "layer %s: give either input rows (x) or statistics (gram_a), %s", nm,
                       rows ? "not both" : "got neither");
    size_t D = p->d_in + 1;
    if (rows) {
        if (p->n_rows == 0)
            return aq_fail(err, AQ_ERR_ARG, "layer %s: no input rows (N = 0): AdaQuant needs calibration inputs", nm);
        AQ_TRY(check_finite(p->x, p->n_rows * p->d_in, nm, "inputs", err));
        if (p->x_in) AQ_TRY(check_finite(p->x_in, p->n_rows * p->d_in, nm, "inputs_q", err));
    } else {
        if (p->n_tokens == 0)
            return aq_fail(err, AQ_ERR_ARG, "layer %s: statistics over 0 tokens", nm);
        const double *g[3] = {p->gram_a, p->gram_b, p->gram_c};
        const char *gn[3] = {"Gram A", "Gram B", "Gram C"};
        for (int k = 0; k < 3; k++) {
            if (!g[k]) continue;
            for (size_t i = 0; i < D * D; i++)
                if (!isfinite(g[k][i]))
                    return aq_fail(err, AQ_ERR_NUMERIC, "layer %s: %s has a non-finite value at [%zu, %zu]",
                                   nm, gn[k], i / D, i % D);
        }
        for (size_t i = 0; i < D; i++)
            if (p->gram_a[i * D + i] < 0)
                return aq_fail(err, AQ_ERR_NUMERIC, "layer %s: Gram A has a negative diagonal at %zu", nm, i);
        if (o->a_bits < 16) {
            if (!p->sample_x || p->n_sample == 0)
                return aq_fail(err, AQ_ERR_ARG,
                               "layer %s: activations are quantized (a%d) but the statistics carry no sample rows",
                               nm, o->a_bits);
            AQ_TRY(check_finite(p->sample_x, p->n_sample * p->d_in, nm, "sample rows", err));
            if (p->sample_x_in)
                AQ_TRY(check_finite(p->sample_x_in, p->n_sample * p->d_in, nm, "sample rows (quantized input)", err));
        }
    }
    return AQ_OK;
}
