/* bench_stories.h — the stories260K model and S calibration windows of T
 * tokens from the shared assets, for the engine benchmarks (header-only). */
#ifndef AQ_BENCH_STORIES_H
#define AQ_BENCH_STORIES_H

#include <stdio.h>

#include "../src/model/model.h"
#include "../src/text/textdata.h"

/* shared: the shared/ folder. *m (aq_model_free) and *win (S*T ids, free)
 * are the caller's. Errors name the missing or bad asset. */
static inline aq_status aq_bench_stories(const char *shared, int S, int T, aq_model **m, int **win, aq_error *err)
{
    char mp[1024], tp[1024], xp[1024];
    snprintf(mp, sizeof mp, "%s/models/stories260K/stories260K.bin", shared);
    snprintf(tp, sizeof tp, "%s/models/stories260K/tok512.bin", shared);
    snprintf(xp, sizeof xp, "%s/data/tinystories/validation.txt", shared);
    AQ_TRY(aq_model_load_path(mp, m, err));
    aq_tokenizer *tok;
    AQ_TRY(aq_tok_open(tp, aq_model_config(*m)->vocab_size, &tok, err));
    aq_docs docs;
    aq_status st = aq_docs_read(xp, &docs, err);
    if (st == AQ_OK) st = aq_calib_windows(tok, &docs, S, T, win, err);
    aq_docs_free(&docs);
    aq_tok_close(tok);
    return st;
}

#endif
