/* textdata.c — the document table, calibration windows and evaluation
 * sequences (textdata.h); the source readers are in datasrc.c. */
#include "textdata.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "docs_build.h"

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

void aq_docs_strip(const char *buf, size_t *a, size_t *b)
{
    while (*a < *b && is_ws(buf[*a]))
        ++*a;
    while (*b > *a && is_ws(buf[*b - 1]))
        --*b;
}

/* Grow *p (cap elements of size sz) to hold need; 0 on failure. */
static int grow(void **p, size_t *cap, size_t need, size_t sz)
{
    if (need <= *cap) return 1;
    size_t c = *cap ? 2 * *cap : 256;
    void *q = realloc(*p, c * sz);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

aq_status aq_docs_own(aq_docs *d, void *block, aq_error *err)
{
    size_t cap = d->cap_blocks;
    if (!grow((void **)&d->blocks, &cap, d->n_blocks + 1, sizeof *d->blocks)) {
        free(block);
        return aq_fail_nomem(err, "document table", cap * sizeof *d->blocks);
    }
    d->cap_blocks = cap;
    d->blocks[d->n_blocks++] = block;
    return AQ_OK;
}

aq_status aq_docs_add_name(aq_docs *d, const char *name, int *index, aq_error *err)
{
    size_t cap = d->cap_names;
    char *copy = strdup(name);
    if (!copy || !grow((void **)&d->names, &cap, d->n_names + 1, sizeof *d->names)) {
        free(copy);
        return aq_fail_nomem(err, "file names", strlen(name));
    }
    d->cap_names = cap;
    d->names[d->n_names] = copy;
    *index = (int)d->n_names++;
    return AQ_OK;
}

aq_status aq_docs_push(aq_docs *d, char *text, const uint32_t *ids, size_t n_ids, int src, size_t pos,
                       aq_error *err)
{
    if (d->n == d->cap) {
        /* the per-document arrays grow together (same capacity) */
        size_t c = d->cap ? 2 * d->cap : 256, ok = 1;
        void **arr[5] = {(void **)&d->doc, (void **)&d->ids, (void **)&d->n_ids, (void **)&d->src,
                         (void **)&d->pos};
        size_t sz[5] = {sizeof *d->doc, sizeof *d->ids, sizeof *d->n_ids, sizeof *d->src, sizeof *d->pos};
        for (int k = 0; k < 5; k++) {
            size_t cap = d->cap;
            ok &= grow(arr[k], &cap, c, sz[k]) && cap >= c;
        }
        if (!ok) return aq_fail_nomem(err, "document table", c * sizeof(void *));
        d->cap = c;
    }
    d->doc[d->n] = text;
    d->ids[d->n] = ids;
    d->n_ids[d->n] = n_ids;
    d->src[d->n] = src;
    d->pos[d->n] = pos;
    d->n++;
    return AQ_OK;
}

aq_status aq_docs_split_into(aq_docs *d, char *buf, size_t len, int src, aq_error *err)
{
    /* documents are C strings from here on: a NUL byte would silently cut one
     * short (or make it empty), and means the file is not text */
    const char *nul = memchr(buf, '\0', len);
    if (nul)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: a NUL byte at byte offset %zu: not a text file (a pre-tokenized file needs the .tok "
                       "extension or --data-format tokens)",
                       d->names[src], (size_t)(nul - buf));
    buf[len] = '\0';
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        int sep = i + 1 < len && buf[i] == '\n' && buf[i + 1] == '\n';
        if (!sep && i < len) continue;
        /* piece [start, i): strip, keep if non-empty */
        size_t a = start, b = i;
        aq_docs_strip(buf, &a, &b);
        if (b > a) {
            buf[b] = '\0'; /* b <= i: overwrites whitespace or the separator */
            AQ_TRY(aq_docs_push(d, buf + a, NULL, 0, src, 0, err));
        }
        start = i + 2;
        i++; /* skip the second '\n' of the separator */
    }
    return AQ_OK;
}

aq_status aq_docs_split(const char *text, size_t len, const char *label, aq_docs *out,
                        aq_error *err)
{
    memset(out, 0, sizeof *out);
    char *buf = malloc(len + 1);
    if (!buf) return aq_fail_nomem(err, "text", len + 1);
    memcpy(buf, text, len);
    int src;
    aq_status st = aq_docs_own(out, buf, err);
    if (st == AQ_OK) st = aq_docs_add_name(out, label, &src, err);
    if (st == AQ_OK) st = aq_docs_split_into(out, buf, len, src, err);
    if (st == AQ_OK && out->n == 0)
        st = aq_fail(err, AQ_ERR_ARG, "%s: no documents (the text is empty or only whitespace)", label);
    if (st != AQ_OK) {
        aq_docs_free(out);
        return st;
    }
    out->n_calib = out->n / 2;
    return AQ_OK;
}

aq_status aq_docs_read_file(const char *path, char **buf, size_t *len, aq_error *err)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return aq_fail(err, AQ_ERR_IO, "%s: cannot open data file", path);
    size_t cap = 1 << 16, n = 0;
    char *text = malloc(cap + 1);
    while (text) {
        size_t got = fread(text + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *t = realloc(text, (cap *= 2) + 1);
        if (!t) free(text);
        text = t;
    }
    int nomem = !text, bad = nomem || ferror(f);
    fclose(f);
    if (bad) {
        free(text);
        return nomem ? aq_fail_nomem(err, path, cap) : aq_fail(err, AQ_ERR_IO, "%s: read error", path);
    }
    text[n] = '\0';
    *buf = text;
    *len = n;
    return AQ_OK;
}

aq_status aq_docs_read(const char *path, aq_docs *out, aq_error *err)
{
    memset(out, 0, sizeof *out);
    char *text;
    size_t len;
    AQ_TRY(aq_docs_read_file(path, &text, &len, err));
    aq_status st = aq_docs_split(text, len, path, out, err);
    free(text);
    return st;
}

void aq_docs_free(aq_docs *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->n_blocks; i++)
        free(d->blocks[i]);
    for (size_t i = 0; i < d->n_names; i++)
        free(d->names[i]);
    free(d->blocks);
    free(d->names);
    free(d->doc);
    free(d->ids);
    free(d->n_ids);
    free(d->src);
    free(d->pos);
    memset(d, 0, sizeof *d);
}

void aq_docs_calib_range(const aq_docs *d, size_t *first, size_t *count)
{
    *first = 0;
    *count = d->n_calib;
}

void aq_docs_eval_range(const aq_docs *d, size_t *first, size_t *count)
{
    *first = d->n_calib;
    *count = d->n - d->n_calib;
}

static aq_status bad_id(const aq_docs *d, size_t i, size_t j, int vocab, aq_error *err)
{
    return aq_fail(err, AQ_ERR_FORMAT,
                   "%s: token %zu (0-based, in the file's id array): id %" PRIu32 " >= the vocabulary size %d",
                   d->names[d->src[i]], d->pos[i] + j, d->ids[i][j], vocab);
}

aq_status aq_docs_check_ids(const aq_docs *d, int vocab, aq_error *err)
{
    for (size_t i = 0; i < d->n; i++)
        for (size_t j = 0; d->ids[i] && j < d->n_ids[i]; j++)
            if (d->ids[i][j] >= (uint32_t)vocab) return bad_id(d, i, j, vocab, err);
    return AQ_OK;
}

/* The tokens of document i: BOS + encode(text), or BOS + its ids (checked
 * against the vocabulary). *ids is malloc'd. */
static aq_status doc_tokens(const aq_tokenizer *tok, const aq_docs *d, size_t i, int **ids, size_t *n,
                            aq_error *err)
{
    if (d->doc[i]) return aq_tok_encode_alloc(tok, d->doc[i], 1, 0, ids, n, err);
    int bos = aq_tok_bos_id(tok), vocab = aq_tok_vocab_size(tok);
    size_t m = d->n_ids[i], k = bos >= 0;
    int *out = malloc((m + k) * sizeof *out);
    if (!out) return aq_fail_nomem(err, "document tokens", (m + k) * sizeof *out);
    if (bos >= 0) out[0] = bos;
    for (size_t j = 0; j < m; j++) {
        uint32_t id = d->ids[i][j];
        if (id >= (uint32_t)vocab) {
            free(out);
            return bad_id(d, i, j, vocab, err);
        }
        out[k + j] = (int)id;
    }
    *ids = out;
    *n = m + k;
    return AQ_OK;
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
    int sep = aq_tok_bos_id(tok) < 0 ? aq_tok_eos_id(tok) : -1;
    for (size_t i = first; i < first + count && have < need; i++) {
        int *ids;
        size_t n;
        aq_status st = doc_tokens(tok, d, i, &ids, &n, err);
        if (st != AQ_OK) {
            free(out);
            aq_error_prefix(err, "calibration document %zu", i);
            return st;
        }
        /* A tokenizer without BOS (Qwen): documents are joined by its EOS, as
         * such models saw documents in training, not run together. */
        if (sep >= 0 && i > first && have < need) out[have++] = sep;
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
        aq_status st = doc_tokens(tok, d, first + i, &ids, &n, err);
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
        out->n_predicted += n ? n - 1 : 0;
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
