/* hf_decode.c — ids back to text through the decoder chain of a
 * tokenizer.json, as the `tokenizers` library does: the token strings (added
 * tokens by their content) form a list that each decoder rewrites in turn,
 * then the list is concatenated (joined with spaces when the file has no
 * decoder, as tokenizers does).
 *
 * One deliberate difference: bytes that do not form valid UTF-8 (a character
 * whose bytes are split over tokens, when decoding part of a sequence) are
 * passed through as they are, where tokenizers substitutes U+FFFD. Callers
 * that stream tokens get the bytes back whole that way; a complete sequence
 * from encode always decodes to valid UTF-8. */
#include <stdlib.h>
#include <string.h>

#include "hf_internal.h"

typedef struct toks {
    hf_buf buf;
    hf_span *t;
    size_t n, cap;
} toks;

static void toks_free(toks *l)
{
    free(l->buf.p);
    free(l->t);
    memset(l, 0, sizeof *l);
}

/* Start a new token at the end of the buffer. */
static aq_status tok_begin(toks *l, aq_error *err)
{
    if (l->n == l->cap) {
        size_t c = l->cap ? l->cap * 2 : 64;
        hf_span *p = realloc(l->t, c * sizeof *p);
        if (!p) return aq_fail_nomem(err, "decoded tokens", c * sizeof *p);
        l->t = p;
        l->cap = c;
    }
    AQ_TRY(hf_buf_add(&l->buf, "", 0, err)); /* never a NULL buffer, even for empty tokens */
    l->t[l->n].off = l->buf.n;
    l->t[l->n].len = 0;
    l->n++;
    return AQ_OK;
}

/* Append bytes to the last token. */
static aq_status tok_add(toks *l, const void *s, size_t n, aq_error *err)
{
    AQ_TRY(hf_buf_add(&l->buf, s, n, err));
    l->t[l->n - 1].len += n;
    return AQ_OK;
}

static int is_byte_token(const char *s, size_t n, int *byte)
{
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return 0;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return 0;
        v = v * 16 + d;
    }
    *byte = v;
    return 1;
}

static aq_status dec_replace(const hf_dec *d, const char *s, size_t n, toks *o, pcre2_match_data *md,
                             aq_error *err)
{
    size_t pos = 0, ms, me;
    int r;
    while ((r = hf_find(&d->pat, s, n, pos, md, &ms, &me, err)) == 1) {
        AQ_TRY(tok_add(o, s + pos, ms - pos, err));
        AQ_TRY(tok_add(o, d->str, d->str_len, err));
        pos = me;
    }
    if (r < 0) return err ? err->code : AQ_ERR_FORMAT;
    return tok_add(o, s + pos, n - pos, err);
}

static aq_status dec_strip(const hf_dec *d, const char *s, size_t n, toks *o, aq_error *err)
{
    size_t a = 0, b = n, k = d->str_len;
    for (int i = 0; i < d->start && k && a + k <= b && !memcmp(s + a, d->str, k); i++) a += k;
    for (int i = 0; i < d->stop && k && a + k <= b && !memcmp(s + b - k, d->str, k); i++) b -= k;
    return tok_add(o, s + a, b - a, err);
}

/* A token all of whose characters are byte-level characters becomes those
 * bytes; any other token (an added token such as "<|eot_id|>" with a space,
 * say) is kept as it is, as tokenizers' ByteLevel decoder does. */
static aq_status dec_bytelevel(const aq_hftok *h, const char *s, size_t n, toks *o, aq_error *err)
{
    for (size_t i = 0; i < n;) {
        int32_t cp;
        int l = hf_utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (l <= 0 || cp >= 512 || h->bytes.inv[cp] < 0) return tok_add(o, s, n, err);
        i += (size_t)l;
    }
    for (size_t i = 0; i < n;) {
        int32_t cp;
        int l = hf_utf8_next((const unsigned char *)s + i, n - i, &cp);
        char c = (char)h->bytes.inv[cp];
        AQ_TRY(tok_add(o, &c, 1, err));
        i += (size_t)l;
    }
    return AQ_OK;
}

/* Each replacement character becomes a space, except in the first token
 * (when a prefix was prepended) where tokenizers drops them all. */
static aq_status dec_metaspace(const hf_dec *d, size_t idx, const char *s, size_t n, toks *o, aq_error *err)
{
    size_t i = 0, k = d->str_len;
    int drop = idx == 0 && d->prepend != HF_PREPEND_NEVER;
    while (i < n) {
        if (i + k <= n && !memcmp(s + i, d->str, k)) {
            if (!drop) AQ_TRY(tok_add(o, " ", 1, err));
            i += k;
        } else {
            AQ_TRY(tok_add(o, s + i, 1, err));
            i++;
        }
    }
    return AQ_OK;
}
/* One decoder: in -> out. */
static aq_status dec_step(const aq_hftok *h, const hf_dec *d, const toks *in, toks *o, pcre2_match_data *md,
                          aq_error *err)
{
    int joined = d->kind == HF_D_FUSE || d->kind == HF_D_BYTELEVEL;
    if (joined && in->n) AQ_TRY(tok_begin(o, err));
    int in_bytes = 0;
    for (size_t i = 0; i < in->n; i++) {
        const char *s = in->buf.p + in->t[i].off;
        size_t n = in->t[i].len;
        int byte;
        if (d->kind == HF_D_BYTEFALLBACK) {
            int isb = is_byte_token(s, n, &byte);
            if (!isb || !in_bytes) AQ_TRY(tok_begin(o, err)); /* runs of byte tokens form one token */
            in_bytes = isb;
            if (isb) {
                char c = (char)byte;
                AQ_TRY(tok_add(o, &c, 1, err));
            } else {
                AQ_TRY(tok_add(o, s, n, err));
            }
            continue;
        }
        if (!joined) AQ_TRY(tok_begin(o, err));
        if (d->kind == HF_D_FUSE) AQ_TRY(tok_add(o, s, n, err));
        else if (d->kind == HF_D_BYTELEVEL) AQ_TRY(dec_bytelevel(h, s, n, o, err));
        else if (d->kind == HF_D_REPLACE) AQ_TRY(dec_replace(d, s, n, o, md, err));
        else if (d->kind == HF_D_STRIP) AQ_TRY(dec_strip(d, s, n, o, err));
        else AQ_TRY(dec_metaspace(d, i, s, n, o, err));
    }
    return AQ_OK;
}

static aq_status initial_tokens(const aq_hftok *h, const int *ids, size_t n, int skip_special, toks *l,
                                aq_error *err)
{
    for (size_t i = 0; i < n; i++) {
        int id = ids[i];
        if (id < 0 || id >= h->n_ids || !(h->pieces[id] || h->apieces[id]))
            return aq_fail(err, AQ_ERR_ARG, "%s: decode: id %d at position %zu is not in the vocabulary (0..%d)",
                           h->label, id, i, h->n_ids - 1);
        if (skip_special && (h->flags[id] & HF_F_SPECIAL)) continue;
        AQ_TRY(tok_begin(l, err));
        if (h->apieces[id]) AQ_TRY(tok_add(l, h->apieces[id], h->apiece_len[id], err));
        else AQ_TRY(tok_add(l, h->pieces[id], h->piece_len[id], err));
    }
    return AQ_OK;
}

aq_status hf_decode_tokens(const aq_hftok *h, const int *ids, size_t n, int skip_special, hf_buf *out,
                           aq_error *err)
{
    toks cur = {0};
    aq_status st = initial_tokens(h, ids, n, skip_special, &cur, err);
    pcre2_match_data *md = pcre2_match_data_create(8, NULL);
    if (!md && st == AQ_OK) st = aq_fail_nomem(err, "regex match data", 64);
    for (int i = 0; i < h->n_decs && st == AQ_OK; i++) {
        toks nx = {0};
        st = dec_step(h, &h->decs[i], &cur, &nx, md, err);
        toks_free(&cur);
        cur = nx;
    }
    for (size_t i = 0; i < cur.n && st == AQ_OK; i++) {
        if (h->n_decs == 0 && i > 0) st = hf_buf_add(out, " ", 1, err);
        if (st == AQ_OK) st = hf_buf_add(out, cur.buf.p + cur.t[i].off, cur.t[i].len, err);
    }
    if (st == AQ_OK && !out->p) st = hf_buf_add(out, "", 0, err);
    if (md) pcre2_match_data_free(md);
    toks_free(&cur);
    return st;
}
