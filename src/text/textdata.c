/* textdata.c — documents, calibration windows and evaluation sequences (textdata.h). */
#include "textdata.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

aq_status aq_docs_split(const char *text, size_t len, const char *label, aq_docs *out,
                        aq_error *err)
{
    memset(out, 0, sizeof *out);
    char *buf = malloc(len + 1);
    if (!buf) return aq_fail_nomem(err, "text", len + 1);
    memcpy(buf, text, len);
    buf[len] = '\0';
    size_t cap = 0, n = 0;
    char **doc = NULL;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        int sep = i + 1 < len && buf[i] == '\n' && buf[i + 1] == '\n';
        if (!sep && i < len) continue;
        /* piece [start, i): strip, keep if non-empty */
        size_t a = start, b = i;
        while (a < b && is_ws(buf[a]))
            a++;
        while (b > a && is_ws(buf[b - 1]))
            b--;
        if (b > a) {
            if (n == cap) {
                cap = cap ? 2 * cap : 256;
                char **nd = realloc(doc, cap * sizeof *nd);
                if (!nd) {
                    free(doc);
                    free(buf);
                    return aq_fail_nomem(err, "document table", cap * sizeof *nd);
                }
                doc = nd;
            }
            buf[b] = '\0'; /* b <= i: overwrites whitespace or the separator */
            doc[n++] = buf + a;
        }
        start = i + 2;
        i++; /* skip the second '\n' of the separator */
    }
    if (n == 0) {
        free(doc);
        free(buf);
        return aq_fail(err, AQ_ERR_ARG, "%s: no documents (the text is empty or only whitespace)",
                       label);
    }
    out->n = n;
    out->doc = doc;
    out->buf = buf;
    return AQ_OK;
}

aq_status aq_docs_read(const char *path, aq_docs *out, aq_error *err)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return aq_fail(err, AQ_ERR_IO, "%s: cannot open text file", path);
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    while (text) {
        size_t got = fread(text + len, 1, cap - len, f);
        len += got;
        if (len < cap) break;
        char *t = realloc(text, cap *= 2);
        if (!t) free(text);
        text = t;
    }
    int nomem = !text, bad = nomem || ferror(f);
    fclose(f);
    if (bad) {
        free(text);
        return nomem ? aq_fail_nomem(err, path, cap) : aq_fail(err, AQ_ERR_IO, "%s: read error", path);
    }
    aq_status st = aq_docs_split(text, len, path, out, err);
    free(text);
    return st;
}

void aq_docs_free(aq_docs *d)
{
    if (!d) return;
    free(d->doc);
    free(d->buf);
    memset(d, 0, sizeof *d);
}

void aq_docs_calib_range(const aq_docs *d, size_t *first, size_t *count)
{
    *first = 0;
    *count = d->n / 2;
}

void aq_docs_eval_range(const aq_docs *d, size_t *first, size_t *count)
{
    *first = d->n / 2;
    *count = d->n - d->n / 2;
}

aq_status aq_calib_windows(const aq_tokenizer *tok, const aq_docs *d, int S, int T, int **tokens,
                           aq_error *err)
{
    if (S < 1 || T < 1)
        return aq_fail(err, AQ_ERR_ARG, "calibration: %d windows of %d tokens is invalid", S, T);
    size_t need = (size_t)S * (size_t)T, have = 0, first, count;
    aq_docs_calib_range(d, &first, &count);
    int *out = malloc(need * sizeof(int));
    if (!out) return aq_fail_nomem(err, "calibration windows", need * sizeof(int));
    for (size_t i = first; i < first + count && have < need; i++) {
        int *ids;
        size_t n;
        aq_status st = aq_tok_encode_alloc(tok, d->doc[i], 1, 0, &ids, &n, err);
        if (st != AQ_OK) {
            free(out);
            aq_error_prefix(err, "calibration document %zu", i);
            return st;
        }
        size_t take = n < need - have ? n : need - have;
        memcpy(out + have, ids, take * sizeof(int));
        have += take;
        free(ids);
    }
    if (have < need) {
        free(out);
        return aq_fail(err, AQ_ERR_ARG,
                       "calibration: the %zu calibration documents give %zu tokens, fewer than the "
                       "%d x %d = %zu needed (use fewer or shorter windows, or more text)",
                       count, have, S, T, need);
    }
    *tokens = out;
    return AQ_OK;
}

/* BOS + encode(doc) of documents [first, first + count), each truncated to max_len. */
static aq_status seqs_range(const aq_tokenizer *tok, const aq_docs *d, size_t first, size_t count, int max_len,
                            const char *what, aq_seqs *out, aq_error *err)
{
    memset(out, 0, sizeof *out);
    if (max_len < 2) return aq_fail(err, AQ_ERR_ARG, "%s: max length %d < 2", what, max_len);
    if (count == 0) return aq_fail(err, AQ_ERR_ARG, "%s: no %s documents (%zu in total)", what, what, d->n);
    out->lens = malloc(count * sizeof(int));
    out->tokens = malloc(count * (size_t)max_len * sizeof(int));
    if (!out->lens || !out->tokens) {
        aq_seqs_free(out);
        return aq_fail_nomem(err, what, count * (size_t)max_len * sizeof(int));
    }
    for (size_t i = 0; i < count; i++) {
        int *ids;
        size_t n;
        aq_status st = aq_tok_encode_alloc(tok, d->doc[first + i], 1, 0, &ids, &n, err);
        if (st != AQ_OK) {
            aq_seqs_free(out);
            aq_error_prefix(err, "%s document %zu", what, first + i);
            return st;
        }
        if (n > (size_t)max_len) n = (size_t)max_len;
        memcpy(out->tokens + out->n_tokens, ids, n * sizeof(int));
        free(ids);
        out->lens[out->n++] = (int)n;
        out->n_tokens += n;
        out->n_predicted += n - 1;
    }
    return AQ_OK;
}

aq_status aq_eval_seqs(const aq_tokenizer *tok, const aq_docs *d, int max_len, size_t max_docs,
                       aq_seqs *out, aq_error *err)
{
    size_t first, count;
    aq_docs_eval_range(d, &first, &count);
    if (max_docs > 0 && max_docs < count) count = max_docs;
    return seqs_range(tok, d, first, count, max_len, "evaluation", out, err);
}

aq_status aq_calib_seqs(const aq_tokenizer *tok, const aq_docs *d, int max_len, size_t max_docs,
                        aq_seqs *out, aq_error *err)
{
    size_t first, count;
    aq_docs_calib_range(d, &first, &count);
    if (max_docs > 0 && max_docs < count) count = max_docs;
    return seqs_range(tok, d, first, count, max_len, "calibration", out, err);
}

void aq_seqs_free(aq_seqs *s)
{
    if (!s) return;
    free(s->lens);
    free(s->tokens);
    memset(s, 0, sizeof *s);
}
