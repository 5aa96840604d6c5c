/* sens_loss.c — the allocation loss of a run by model size (sens_loss.h). */
#include "sens_loss.h"

#include <stdio.h>

#include "../../io/checkpoint.h"
#include "../../src/model/block_loss.h"

static aq_status read_config(const aq_pipe_cfg *c, aq_llama_config *m, aq_error *err)
{
    aq_status st = aq_ckpt_read_llama_config(c->model, m, err);
    if (st != AQ_OK) aq_error_prefix(err, "%s", c->model);
    return st;
}

static size_t kl_rows(const aq_pipe_cfg *c)
{
    int k = c->kl_windows < c->windows ? c->kl_windows : c->windows;
    return (size_t)(k > 0 ? k : 0) * (size_t)c->seq_len;
}

aq_status aq_pipe_loss_resolve(aq_pipe_cfg *c, aq_error *err)
{
    if (c->sens_loss < 0) {
        aq_llama_config m;
        AQ_TRY(read_config(c, &m, err));
        c->sens_loss = aq_block_loss_auto(&m, kl_rows(c));
    }
    if (c->sens_loss > 0 && c->n_embed_options > 0) {
        /* The tensor menu's rows are network KLs (the embedding changes every
         * block's input, the classifier none): on a table of block losses they
         * would be on another scale, and the network KL is what a block loss
         * exists to avoid. They stay F32 (the byte budget counts them as fixed). */
        fprintf(stderr, "adaquant: the embedding/classifier options (--embed-options) need the network KL loss; "
                        "with --loss %s they stay F32\n", aq_pipe_loss_name(c));
        c->n_embed_options = 0;
    }
    return AQ_OK;
}

const char *aq_pipe_loss_name(const aq_pipe_cfg *c)
{
    switch (c->sens_loss) {
    case AQ_BLOCK_LOSS_MSE: return "block-mse";
    case AQ_BLOCK_LOSS_FISHER: return "block-fisher";
    default: return c->kl_windows > 0 ? "kl" : "layer";
    }
}

void aq_pipe_loss_why(const aq_pipe_cfg *c, char *buf, size_t n)
{
    aq_llama_config m;
    aq_error e = {0};
    if (c->kl_windows <= 0) {
        snprintf(buf, n, "--loss layer (or --kl-windows 0)");
        return;
    }
    if (read_config(c, &m, &e) != AQ_OK) {
        snprintf(buf, n, "unknown (%s)", e.msg);
        return;
    }
    size_t rows = kl_rows(c);
    int dflt = aq_block_loss_auto(&m, rows);
    double cache = 16.0 * (double)rows * m.vocab_size / 1048576.0;
    snprintf(buf, n,
             "%s: the network KL's cache would be %.0f MiB (limit %zu MiB) for %zu tokens; the network KL is "
             "the default up to %zu M block parameters",
             dflt == c->sens_loss ? "the default for this model's size" : "chosen with --loss", cache,
             AQ_SENS_KL_MAX_CACHE >> 20, rows, AQ_SENS_KL_MAX_PARAMS / 1000000);
}
