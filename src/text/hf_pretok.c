/* hf_pretok.c — the text side of encoding: the normalizers (on the whole
 * text), then the pre-tokenizers, each turning the list of words into a new
 * one, as the `tokenizers` library does. The result is the list of words the
 * BPE model sees (in its alphabet: byte-level characters or "▁"-spaced text).
 *
 * Offsets into the original text are not tracked; the only thing that needs
 * them, Metaspace's prepend_scheme "first", needs to know whether the first
 * word starts at the beginning of the text, which is tracked as a flag. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "hf_internal.h"

void hf_words_free(hf_words *w)
{
    free(w->buf.p);
    free(w->w);
    memset(w, 0, sizeof *w);
}

static aq_status add_word(hf_words *w, size_t off, size_t len, aq_error *err)
{
    if (len == 0) return AQ_OK; /* tokenizers drops empty splits */
    if (w->n == w->cap) {
        size_t c = w->cap ? w->cap * 2 : 64;
        hf_span *p = realloc(w->w, c * sizeof *p);
        if (!p) return aq_fail_nomem(err, "pre-tokenized words", c * sizeof *p);
        w->w = p;
        w->cap = c;
    }
    w->w[w->n].off = off;
    w->w[w->n].len = len;
    w->n++;
    return AQ_OK;
}

/* ---- normalizers: in (owned) -> out (owned), in freed ---- */

static aq_status norm_unicode(int kind, hf_buf *b, aq_error *err)
{
    utf8proc_option_t opt = UTF8PROC_STABLE;
    if (kind == HF_N_NFC || kind == HF_N_NFKC) opt |= UTF8PROC_COMPOSE;
    else opt |= UTF8PROC_DECOMPOSE;
    if (kind == HF_N_NFKC || kind == HF_N_NFKD) opt |= UTF8PROC_COMPAT;
    if (b->n == 0) return AQ_OK;
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)b->p, (utf8proc_ssize_t)b->n, &dst, opt);
    if (r < 0) return aq_fail(err, AQ_ERR_ARG, "Unicode normalization failed: %s", utf8proc_errmsg(r));
    hf_buf nb = {0};
    aq_status st = hf_buf_add(&nb, dst, (size_t)r, err);
    free(dst);
    if (st != AQ_OK) return st;
    free(b->p);
    *b = nb;
    return AQ_OK;
}

/* Replace every non-overlapping match of pat in b by rep (the Replace
 * normalizer). */
static aq_status replace_all(const hf_pattern *pat, const char *rep, size_t rep_len, hf_buf *b,
                             pcre2_match_data *md, aq_error *err)
{
    hf_buf nb = {0};
    size_t pos = 0, ms, me;
    aq_status st = AQ_OK;
    int r;
    while ((r = hf_find(pat, b->p, b->n, pos, md, &ms, &me, err)) == 1) {
        AQ_TRY_GOTO(st, hf_buf_add(&nb, b->p + pos, ms - pos, err), fail);
        AQ_TRY_GOTO(st, hf_buf_add(&nb, rep, rep_len, err), fail);
        pos = me;
    }
    if (r < 0) {
        st = err ? err->code : AQ_ERR_FORMAT;
        goto fail;
    }
    AQ_TRY_GOTO(st, hf_buf_add(&nb, b->p + pos, b->n - pos, err), fail);
    free(b->p);
    *b = nb;
    return AQ_OK;
fail:
    free(nb.p);
    return st;
}

static aq_status normalize(const aq_hftok *h, hf_buf *b, pcre2_match_data *md, aq_error *err)
{
    for (int i = 0; i < h->n_norms; i++) {
        const hf_norm *n = &h->norms[i];
        if (n->kind == HF_N_PREPEND) {
            if (b->n == 0) continue; /* tokenizers prepends to non-empty text only */
            hf_buf nb = {0};
            aq_status st = hf_buf_add(&nb, n->str, n->str_len, err);
            if (st == AQ_OK) st = hf_buf_add(&nb, b->p, b->n, err);
            if (st != AQ_OK) {
                free(nb.p);
                return st;
            }
            free(b->p);
            *b = nb;
        } else if (n->kind == HF_N_REPLACE) {
            AQ_TRY(replace_all(&n->pat, n->str, n->str_len, b, md, err));
        } else {
            AQ_TRY(norm_unicode(n->kind, b, err));
        }
    }
    return AQ_OK;
}

/* ---- pre-tokenizers: words -> words ---- */

/* Split one word by the delimiter matches of p, as tokenizers'
 * SplitDelimiterBehavior. Every behaviour but Removed cuts the word at match
 * boundaries: Isolated at both ends of each match, MergedWithPrevious after
 * each match, MergedWithNext before each, Contiguous like Isolated but not
 * between two adjacent matches. Offsets stay in the same buffer. */
static aq_status split_word(const hf_pattern *p, int behavior, const char *buf, hf_span w, hf_words *out,
                            pcre2_match_data *md, aq_error *err)
{
    const char *s = buf + w.off;
    size_t pos = 0, prev = 0, ms, me, last_me = (size_t)-1;
    int r, run_open = 0;
    while ((r = hf_find(p, s, w.len, pos, md, &ms, &me, err)) == 1) {
        if (behavior == HF_SPLIT_REMOVED) {
            AQ_TRY(add_word(out, w.off + prev, ms - prev, err));
            prev = me;
        } else if (behavior == HF_SPLIT_CONTIGUOUS) {
            if (ms != last_me) { /* a new run of matches: close the last one, emit the gap */
                if (run_open) {
                    AQ_TRY(add_word(out, w.off + prev, last_me - prev, err));
                    prev = last_me;
                }
                AQ_TRY(add_word(out, w.off + prev, ms - prev, err));
                prev = ms;
                run_open = 1;
            }
        } else {
            if (behavior == HF_SPLIT_ISOLATED || behavior == HF_SPLIT_NEXT) {
                AQ_TRY(add_word(out, w.off + prev, ms - prev, err));
                prev = ms;
            }
            if (behavior == HF_SPLIT_ISOLATED || behavior == HF_SPLIT_PREV) {
                AQ_TRY(add_word(out, w.off + prev, me - prev, err));
                prev = me;
            }
        }
        last_me = me;
        pos = me;
    }
    if (r < 0) return err ? err->code : AQ_ERR_FORMAT;
    if (run_open) {
        AQ_TRY(add_word(out, w.off + prev, last_me - prev, err));
        prev = last_me;
    }
    return add_word(out, w.off + prev, w.len - prev, err);
}

static aq_status pt_split(const hf_pretok *p, hf_words *w, int *first_at_origin, pcre2_match_data *md,
                          aq_error *err)
{
    hf_words out = {.buf = w->buf};
    aq_status st = AQ_OK;
    for (size_t i = 0; i < w->n && st == AQ_OK; i++) {
        size_t before = out.n;
        st = split_word(&p->pat, p->behavior, w->buf.p, w->w[i], &out, md, err);
        if (i == 0 && (out.n == before || out.w[before].off != w->w[0].off)) *first_at_origin = 0;
    }
    free(w->w);
    *w = out;
    return st;
}

/* ByteLevel: optional prefix space, optional GPT-2 regex split (Isolated),
 * then each byte becomes its byte-to-unicode character, in a new buffer. */
static aq_status bytelevel_piece(const hf_bytetab *t, const char *s, size_t n, hf_words *out, aq_error *err)
{
    size_t start = out->buf.n;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        AQ_TRY(hf_buf_add(&out->buf, t->utf8[c], (size_t)t->len[c], err));
    }
    return add_word(out, start, out->buf.n - start, err);
}

static aq_status bytelevel_word(const aq_hftok *h, const hf_pretok *p, const char *s, size_t n, hf_words *out,
                                pcre2_match_data *md, aq_error *err)
{
    char *tmp = NULL;
    if (p->add_prefix_space && (n == 0 || s[0] != ' ')) {
        tmp = malloc(n + 1);
        if (!tmp) return aq_fail_nomem(err, "pre-tokenizer", n + 1);
        tmp[0] = ' ';
        memcpy(tmp + 1, s, n);
        s = tmp;
        n++;
    }
    aq_status st = AQ_OK;
    if (!p->use_regex) {
        st = bytelevel_piece(&h->bytes, s, n, out, err);
    } else {
        hf_words parts = {0};
        hf_span all = {0, n};
        st = split_word(&p->pat, HF_SPLIT_ISOLATED, s, all, &parts, md, err);
        for (size_t i = 0; i < parts.n && st == AQ_OK; i++)
            st = bytelevel_piece(&h->bytes, s + parts.w[i].off, parts.w[i].len, out, err);
        free(parts.w);
    }
    free(tmp);
    return st;
}

/* Metaspace: spaces become the replacement, which is prepended (always, or
 * to the first word of the text only) unless already there; with split, the
 * word is cut before each replacement (MergedWithNext). */
static aq_status metaspace_word(const hf_pretok *p, const char *s, size_t n, int first, hf_words *out,
                                aq_error *err)
{
    size_t start = out->buf.n;
    int pre = p->prepend == HF_PREPEND_ALWAYS || (p->prepend == HF_PREPEND_FIRST && first);
    int has = n >= 1 && (s[0] == ' ' || (n >= p->repl_len && !memcmp(s, p->repl, p->repl_len)));
    if (pre && !has) AQ_TRY(hf_buf_add(&out->buf, p->repl, p->repl_len, err));
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') AQ_TRY(hf_buf_add(&out->buf, p->repl, p->repl_len, err));
        else AQ_TRY(hf_buf_add(&out->buf, s + i, 1, err));
    }
    if (!p->split) return add_word(out, start, out->buf.n - start, err);
    size_t end = out->buf.n, prev = start;
    for (size_t i = start; i + p->repl_len <= end; i++) {
        if (i > prev && !memcmp(out->buf.p + i, p->repl, p->repl_len)) {
            AQ_TRY(add_word(out, prev, i - prev, err));
            prev = i;
        }
    }
    return add_word(out, prev, end - prev, err);
}

static aq_status pt_rewrite(const aq_hftok *h, const hf_pretok *p, hf_words *w, int first_at_origin,
                            pcre2_match_data *md, aq_error *err)
{
    hf_words out = {0};
    aq_status st = AQ_OK;
    for (size_t i = 0; i < w->n && st == AQ_OK; i++) {
        const char *s = w->buf.p + w->w[i].off;
        size_t n = w->w[i].len;
        if (p->kind == HF_P_BYTELEVEL) st = bytelevel_word(h, p, s, n, &out, md, err);
        else st = metaspace_word(p, s, n, i == 0 && first_at_origin, &out, err);
    }
    if (st != AQ_OK) {
        hf_words_free(&out);
        return st;
    }
    hf_words_free(w);
    *w = out;
    return AQ_OK;
}

aq_status hf_pretokenize(const aq_hftok *h, const char *text, size_t len, hf_words *out, aq_error *err)
{
    memset(out, 0, sizeof *out);
    pcre2_match_data *md = pcre2_match_data_create(8, NULL);
    if (!md) return aq_fail_nomem(err, "regex match data", 64);
    aq_status st = hf_buf_add(&out->buf, text, len, err);
    if (st == AQ_OK) st = normalize(h, &out->buf, md, err);
    if (st == AQ_OK) st = add_word(out, 0, out->buf.n, err);
    int first_at_origin = 1;
    for (int i = 0; i < h->n_pretoks && st == AQ_OK; i++) {
        const hf_pretok *p = &h->pretoks[i];
        if (p->kind == HF_P_SPLIT) st = pt_split(p, out, &first_at_origin, md, err);
        else st = pt_rewrite(h, p, out, first_at_origin, md, err);
    }
    pcre2_match_data_free(md);
    if (st != AQ_OK) hf_words_free(out);
    return st;
}
