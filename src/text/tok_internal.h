/* tok_internal.h — the tokenizer handle of tokenizer.h, shared by its two
 * implementation files (tokenizer.c: opening, encode, decode; tok_stream.c:
 * streaming decode). Not for callers. */
#ifndef AQ_TOK_INTERNAL_H
#define AQ_TOK_INTERNAL_H

#include <stdatomic.h>

#include "hf_tokenizer.h"
#include "l2c_tokenizer.h"
#include "tokenizer.h"

#define AQ_TOK_MAX_STOP 8 /* EOS ids a model may list (Llama-3.1 lists 3) */

struct aq_tokenizer {
    aq_tok_kind kind;
    aq_l2ctok *l2c; /* kind AQ_TOK_LLAMA2C */
    aq_hftok *hf;   /* kind AQ_TOK_HF_JSON */
    int vocab, bos, eos, unk;
    int bos_added; /* tokenizer.json: BOS from tokenizer_config.json, added by us */
    int stop[AQ_TOK_MAX_STOP], n_stop;
    /* Counted by encode through a const handle: a separate object, so the
     * handle itself stays read-only. */
    atomic_size_t *unknown;
    char describe[512];
};

#endif
