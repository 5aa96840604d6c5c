/* runc_encode.h — llama2.c run.c's encode(), ported literally (quadratic
 * merge loop), as the independent reference for the tokenizer test and the
 * tokenizer fuzzer. Header-only so the fuzz harnesses (which link only the
 * instrumented io/) can use it too.
 *
 * pieces[id] / scores[id] are the vocabulary; lookup(ctx, s) returns the id of
 * piece s or -1. tokens needs room for strlen(text) + 3 ids. Returns the
 * count. Pieces and merged pairs must fit 63 bytes (llama2.c vocabularies). */
#ifndef AQ_TEST_RUNC_ENCODE_H
#define AQ_TEST_RUNC_ENCODE_H

#include <stdio.h>
#include <string.h>

typedef int (*aq_runc_lookup_fn)(const void *ctx, const char *s);

static inline int aq_runc_encode(const char *const *pieces, const float *scores, aq_runc_lookup_fn lookup,
                                 const void *ctx, const char *text, int bos, int eos, int *tokens)
{
    char buf[64];
    size_t str_len = 0;
    int n = 0;
    if (bos) tokens[n++] = 1;
    if (text[0] != '\0') tokens[n++] = lookup(ctx, " ");
    for (const char *c = text; *c != '\0'; c++) {
        if ((*c & 0xC0) != 0x80) str_len = 0;
        buf[str_len++] = *c;
        buf[str_len] = '\0';
        if ((*(c + 1) & 0xC0) == 0x80 && str_len < 4) continue;
        int id = lookup(ctx, buf);
        if (id != -1) {
            tokens[n++] = id;
        } else {
            for (size_t i = 0; i < str_len; i++)
                tokens[n++] = (unsigned char)buf[i] + 3;
        }
        str_len = 0;
    }
    for (;;) {
        float best_score = -1e10;
        int best_id = -1, best_idx = -1;
        for (int i = 0; i < n - 1; i++) {
            snprintf(buf, sizeof buf, "%s%s", pieces[tokens[i]], pieces[tokens[i + 1]]);
            int id = lookup(ctx, buf);
            if (id != -1 && scores[id] > best_score) {
                best_score = scores[id];
                best_id = id;
                best_idx = i;
            }
        }
        if (best_idx == -1) break;
        tokens[best_idx] = best_id;
        for (int i = best_idx + 1; i < n - 1; i++)
            tokens[i] = tokens[i + 1];
        n--;
    }
    if (eos) tokens[n++] = 2;
    return n;
}

#endif
