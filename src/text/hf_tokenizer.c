/* hf_tokenizer.c — the public functions of the tokenizer.json backend
 * (hf_tokenizer.h): loading, the id/piece accessors, and encode (validate
 * UTF-8, normalize + pre-tokenize, BPE each word, post-processor) and decode.
 * The pieces live in hf_load.c, hf_parse.c, hf_pretok.c, hf_bpe.c and
 * hf_decode.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf_internal.h"

aq_status aq_hftok_open_memory(const char *json, size_t len, const char *label, aq_hftok **out,
                               aq_error *err)
{
    *out = NULL;
    aq_hftok *h = calloc(1, sizeof *h);
    if (!h) return aq_fail_nomem(err, "tokenizer", sizeof *h);
    h->unk_id = -1;
    const char *lab = label ? label : "tokenizer.json";
    h->label = malloc(strlen(lab) + 1);
    if (!h->label) {
        free(h);
        return aq_fail_nomem(err, "tokenizer label", strlen(lab));
    }
    strcpy(h->label, lab);
    aq_status st = hf_load_json(h, json, len, err);
    if (st != AQ_OK) {
        aq_error_prefix(err, "%s", lab);
        aq_hftok_close(h);
        return st;
    }
    *out = h;
    return AQ_OK;
}

aq_status aq_hftok_open(const char *path, aq_hftok **out, aq_error *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return aq_fail(err, AQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    hf_buf b = {0};
    char chunk[1 << 16];
    size_t n;
    aq_status st = AQ_OK;
    while (st == AQ_OK && (n = fread(chunk, 1, sizeof chunk, f)) > 0) st = hf_buf_add(&b, chunk, n, err);
    if (st == AQ_OK && ferror(f)) st = aq_fail(err, AQ_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    fclose(f);
    if (st == AQ_OK) st = aq_hftok_open_memory(b.p ? b.p : "", b.n, path, out, err);
    free(b.p);
    return st;
}

void aq_hftok_close(aq_hftok *h)
{
    if (!h) return;
    for (int i = 0; h->pieces && i < h->n_ids; i++) free(h->pieces[i]);
    for (int i = 0; h->apieces && i < h->n_ids; i++) free(h->apieces[i]);
    free(h->pieces);
    free(h->apieces);
    free(h->piece_len);
    free(h->apiece_len);
    free(h->flags);
    hf_strmap_free(&h->vocab);
    hf_strmap_free(&h->added);
    hf_mergemap_free(&h->merges);
    hf_components_free(h);
    free(h->label);
    free(h);
}

int aq_hftok_vocab_size(const aq_hftok *h)
{
    return h->n_ids;
}

int aq_hftok_token_id(const aq_hftok *h, const char *content)
{
    size_t n = strlen(content);
    int id = hf_strmap_get(&h->added, h->apieces, h->apiece_len, content, n);
    return id >= 0 ? id : hf_strmap_get(&h->vocab, h->pieces, h->piece_len, content, n);
}

const char *aq_hftok_piece(const aq_hftok *h, int id)
{
    if (id < 0 || id >= h->n_ids) return NULL;
    return h->apieces[id] ? h->apieces[id] : h->pieces[id];
}

int aq_hftok_is_special(const aq_hftok *h, int id)
{
    return id >= 0 && id < h->n_ids && (h->flags[id] & HF_F_SPECIAL);
}

int aq_hftok_bos_id(const aq_hftok *h)
{
    return h->n_prefix > 0 ? h->prefix_ids[0] : -1;
}

int aq_hftok_unk_id(const aq_hftok *h)
{
    return h->unk_id;
}

static aq_status encode_words(const aq_hftok *h, const hf_words *w, hf_ints *out, aq_error *err)
{
    hf_bpe_cache *c = hf_bpe_cache_new();
    if (!c) return aq_fail_nomem(err, "BPE context", 0);
    aq_status st = AQ_OK;
    for (size_t i = 0; i < w->n && st == AQ_OK; i++)
        st = hf_bpe_word(h, w->buf.p + w->w[i].off, w->w[i].len, c, out, err);
    hf_bpe_cache_free(c);
    return st;
}

aq_status aq_hftok_encode(const aq_hftok *h, const char *text, size_t len, int add_special, int **ids,
                          size_t *n, aq_error *err)
{
    *ids = NULL;
    *n = 0;
    size_t bad = hf_utf8_check(text, len);
    if (bad < len)
        return aq_fail(err, AQ_ERR_ARG, "%s: encode: the text is not valid UTF-8 at byte offset %zu", h->label, bad);
    hf_ints out = {0};
    hf_words w;
    aq_status st = AQ_OK;
    for (int i = 0; add_special && i < h->n_prefix && st == AQ_OK; i++) st = hf_ints_add(&out, h->prefix_ids[i], err);
    if (st == AQ_OK) st = hf_pretokenize(h, text, len, &w, err);
    if (st == AQ_OK) {
        st = encode_words(h, &w, &out, err);
        hf_words_free(&w);
    }
    for (int i = 0; add_special && i < h->n_suffix && st == AQ_OK; i++) st = hf_ints_add(&out, h->suffix_ids[i], err);
    if (st == AQ_OK && !out.p) st = hf_ints_add(&out, 0, err), out.n = 0; /* a non-NULL empty array */
    if (st != AQ_OK) {
        free(out.p);
        aq_error_prefix(err, "%s: encode", h->label);
        return st;
    }
    *ids = out.p;
    *n = out.n;
    return AQ_OK;
}

aq_status aq_hftok_decode(const aq_hftok *h, const int *ids, size_t n, int skip_special, char **out,
                          size_t *out_len, aq_error *err)
{
    *out = NULL;
    if (out_len) *out_len = 0;
    hf_buf b = {0};
    aq_status st = hf_decode_tokens(h, ids, n, skip_special, &b, err);
    if (st != AQ_OK) {
        free(b.p);
        return st;
    }
    *out = b.p;
    if (out_len) *out_len = b.n;
    return AQ_OK;
}
