/* hf_load.c — reads a tokenizer.json into an aq_hftok: the BPE model (its
 * vocabulary, the merges in either serialisation — "a b" strings or [a, b]
 * pairs — and its options), the added tokens, then hands the normalizer,
 * pre-tokenizer, post-processor and decoder to hf_parse.c. Every refusal names
 * the JSON path of what is wrong or unsupported. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf_internal.h"

/* Ids beyond this are refused (real vocabularies have < 300K entries). */
#define HF_MAX_IDS (1 << 24)

static aq_status fmt_err(aq_error *err, const char *fmt, const char *a)
{
    return aq_fail(err, AQ_ERR_FORMAT, fmt, a);
}

/* An integer id in [0, HF_MAX_IDS). */
static int get_id(json_t *v)
{
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    return x >= 0 && x < HF_MAX_IDS ? (int)x : -1;
}

static char *dup_bytes(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* Largest id of the vocabulary and of the added tokens (validating both). */
static aq_status scan_ids(json_t *vocab, json_t *added, int *max_id, aq_error *err)
{
    const char *key;
    json_t *v;
    int mx = -1;
    json_object_foreach(vocab, key, v) {
        int id = get_id(v);
        if (id < 0)
            return aq_fail(err, AQ_ERR_FORMAT, "model.vocab[\"%.60s\"]: id is not an integer in [0, %d)",
                           key, HF_MAX_IDS);
        if (id > mx) mx = id;
    }
    size_t i;
    json_array_foreach(added, i, v) {
        int id = get_id(json_object_get(v, "id"));
        json_t *c = json_object_get(v, "content");
        if (id < 0 || !json_is_string(c))
            return aq_fail(err, AQ_ERR_FORMAT,
                           "added_tokens[%zu]: needs an integer \"id\" in [0, %d) and a string \"content\"",
                           i, HF_MAX_IDS);
        if (id > mx) mx = id;
    }
    /* Real files number their tokens densely; a sparse id would only make us
     * allocate tables for ids that do not exist (16M ids = 400 MB). */
    size_t count = json_object_size(vocab) + json_array_size(added);
    if (mx >= 0 && (size_t)mx > 2 * count + 65536)
        return aq_fail(err, AQ_ERR_FORMAT, "model.vocab / added_tokens: id %d is far beyond the %zu tokens given",
                       mx, count);
    *max_id = mx;
    return AQ_OK;
}

static aq_status load_vocab(aq_hftok *h, json_t *vocab, aq_error *err)
{
    AQ_TRY(hf_strmap_init(&h->vocab, json_object_size(vocab), err));
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        int id = get_id(v);
        size_t klen = strlen(key); /* jansson keys stop at NUL; such keys are refused */
        if (h->pieces[id])
            return aq_fail(err, AQ_ERR_FORMAT, "model.vocab: id %d is given to both \"%.60s\" and \"%.60s\"",
                           id, h->pieces[id], key);
        h->pieces[id] = dup_bytes(key, klen);
        if (!h->pieces[id]) return aq_fail_nomem(err, "vocabulary", klen);
        h->piece_len[id] = (uint32_t)klen;
        h->flags[id] |= HF_F_VOCAB;
        hf_strmap_put(&h->vocab, h->pieces, h->piece_len, id);
    }
    return AQ_OK;
}

static aq_status load_added(aq_hftok *h, json_t *added, aq_error *err)
{
    AQ_TRY(hf_strmap_init(&h->added, json_array_size(added), err));
    size_t i;
    json_t *v;
    json_array_foreach(added, i, v) {
        int id = get_id(json_object_get(v, "id"));
        json_t *c = json_object_get(v, "content");
        if (h->apieces[id])
            return aq_fail(err, AQ_ERR_FORMAT, "added_tokens[%zu]: id %d is already an added token", i, id);
        size_t n = json_string_length(c);
        h->apieces[id] = dup_bytes(json_string_value(c), n);
        if (!h->apieces[id]) return aq_fail_nomem(err, "added tokens", n);
        h->apiece_len[id] = (uint32_t)n;
        h->flags[id] |= HF_F_ADDED;
        if (json_is_true(json_object_get(v, "special"))) h->flags[id] |= HF_F_SPECIAL;
        hf_strmap_put(&h->added, h->apieces, h->apiece_len, id);
    }
    return AQ_OK;
}

/* One merge, "a b" or ["a", "b"], into the rank table. */
static aq_status load_merge(aq_hftok *h, json_t *m, size_t rank, aq_error *err)
{
    const char *a, *b;
    size_t la, lb;
    if (json_is_string(m)) {
        a = json_string_value(m);
        size_t n = json_string_length(m);
        const char *sp = memchr(a, ' ', n);
        if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp - a) - 1))
            return aq_fail(err, AQ_ERR_FORMAT, "model.merges[%zu] \"%.60s\": not two tokens separated by one space",
                           rank, a);
        la = (size_t)(sp - a);
        b = sp + 1;
        lb = n - la - 1;
    } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
               json_is_string(json_array_get(m, 1))) {
        a = json_string_value(json_array_get(m, 0));
        la = json_string_length(json_array_get(m, 0));
        b = json_string_value(json_array_get(m, 1));
        lb = json_string_length(json_array_get(m, 1));
    } else {
        return aq_fail(err, AQ_ERR_FORMAT, "model.merges[%zu]: neither a \"a b\" string nor a pair of strings",
                       rank);
    }
    int ia = hf_strmap_get(&h->vocab, h->pieces, h->piece_len, a, la);
    int ib = hf_strmap_get(&h->vocab, h->pieces, h->piece_len, b, lb);
    char *ab = malloc(la + lb + 1);
    if (!ab) return aq_fail_nomem(err, "merge", la + lb);
    memcpy(ab, a, la);
    memcpy(ab + la, b, lb);
    int iab = hf_strmap_get(&h->vocab, h->pieces, h->piece_len, ab, la + lb);
    aq_status st = AQ_OK;
    if (ia < 0 || ib < 0 || iab < 0) {
        const char *miss = ia < 0 ? a : ib < 0 ? b : ab;
        int lm = (int)(ia < 0 ? la : ib < 0 ? lb : la + lb);
        st = aq_fail(err, AQ_ERR_FORMAT,
                     "model.merges[%zu] (\"%.*s\" + \"%.*s\"): token \"%.*s\" is not in the vocabulary", rank,
                     (int)(la > 60 ? 60 : la), a, (int)(lb > 60 ? 60 : lb), b, lm > 60 ? 60 : lm, miss);
    } else {
        hf_mergemap_put(&h->merges, ia, ib, (int)rank, iab);
        h->flags[ia] |= HF_F_MERGED;
        h->flags[ib] |= HF_F_MERGED;
    }
    free(ab);
    return st;
}

/* An optional string option that must be null or "" (what we implement). */
static aq_status need_empty(json_t *model, const char *name, aq_error *err)
{
    json_t *v = json_object_get(model, name);
    if (!v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0)) return AQ_OK;
    return aq_fail(err, AQ_ERR_FORMAT, "unsupported BPE option at model.%s (only null or \"\" is implemented)",
                   name);
}

static const char *const known_model[] = {"type", "dropout", "unk_token", "continuing_subword_prefix",
                                          "end_of_word_suffix", "fuse_unk", "byte_fallback", "ignore_merges",
                                          "vocab", "merges"};

static aq_status load_options(aq_hftok *h, json_t *model, aq_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(model, key, v) {
        int known = 0;
        for (size_t i = 0; i < sizeof known_model / sizeof known_model[0]; i++) known |= !strcmp(key, known_model[i]);
        if (!known && !json_is_null(v) && !json_is_false(v))
            return fmt_err(err, "unsupported BPE option at model.%.60s", key);
    }
    json_t *d = json_object_get(model, "dropout");
    if (d && !json_is_null(d) && !(json_is_number(d) && json_number_value(d) == 0.0))
        return fmt_err(err, "unsupported BPE option at model.dropout%s (only null is implemented)", "");
    AQ_TRY(need_empty(model, "continuing_subword_prefix", err));
    AQ_TRY(need_empty(model, "end_of_word_suffix", err));
    h->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    h->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    h->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    h->unk_id = -1;
    json_t *u = json_object_get(model, "unk_token");
    if (u && json_is_string(u)) {
        h->unk_id = hf_strmap_get(&h->vocab, h->pieces, h->piece_len, json_string_value(u),
                                  json_string_length(u));
        if (h->unk_id < 0)
            return fmt_err(err, "model.unk_token \"%.60s\" is not in the vocabulary", json_string_value(u));
    } else if (u && !json_is_null(u)) {
        return fmt_err(err, "model.unk_token%s: neither a string nor null", "");
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        h->byte_ids[b] = hf_strmap_get(&h->vocab, h->pieces, h->piece_len, name, 6);
    }
    return AQ_OK;
}

static aq_status load_model(aq_hftok *h, json_t *root, aq_error *err)
{
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return fmt_err(err, "no \"model\" object at the top level%s", "");
    json_t *type = json_object_get(model, "type");
    json_t *vocab = json_object_get(model, "vocab");
    json_t *merges = json_object_get(model, "merges");
    if (type && !(json_is_string(type) && !strcmp(json_string_value(type), "BPE")))
        return fmt_err(err, "unsupported model type \"%.40s\" at model.type (supported: BPE)",
                       json_is_string(type) ? json_string_value(type) : "?");
    if (!json_is_object(vocab)) return fmt_err(err, "model.vocab%s: missing or not an object", "");
    if (!json_is_array(merges)) return fmt_err(err, "model.merges%s: missing or not an array", "");
    json_t *added = json_object_get(root, "added_tokens");
    json_t *empty = json_array();
    if (!added || json_is_null(added)) added = empty;
    aq_status st = AQ_OK;
    int max_id = -1;
    if (!json_is_array(added)) {
        st = fmt_err(err, "added_tokens%s: not an array", "");
        goto done;
    }
    AQ_TRY_GOTO(st, scan_ids(vocab, added, &max_id, err), done);
    if (max_id < 0) {
        st = fmt_err(err, "model.vocab%s: empty (and no added tokens)", "");
        goto done;
    }
    h->n_ids = max_id + 1;
    size_t n = (size_t)h->n_ids;
    h->pieces = calloc(n, sizeof *h->pieces);
    h->apieces = calloc(n, sizeof *h->apieces);
    h->piece_len = calloc(n, sizeof *h->piece_len);
    h->apiece_len = calloc(n, sizeof *h->apiece_len);
    h->flags = calloc(n, 1);
    if (!h->pieces || !h->apieces || !h->piece_len || !h->apiece_len || !h->flags) {
        st = aq_fail_nomem(err, "vocabulary", n * 25);
        goto done;
    }
    AQ_TRY_GOTO(st, load_vocab(h, vocab, err), done);
    AQ_TRY_GOTO(st, load_added(h, added, err), done);
    AQ_TRY_GOTO(st, hf_mergemap_init(&h->merges, json_array_size(merges), err), done);
    for (size_t i = 0; i < json_array_size(merges); i++)
        AQ_TRY_GOTO(st, load_merge(h, json_array_get(merges, i), i, err), done);
    st = load_options(h, model, err);
done:
    json_decref(empty);
    return st;
}

static const char *const known_top[] = {"version", "truncation", "padding", "added_tokens", "normalizer",
                                        "pre_tokenizer", "model", "post_processor", "decoder"};

aq_status hf_load_json(aq_hftok *h, const char *json, size_t len, aq_error *err)
{
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    if (!root)
        return aq_fail(err, AQ_ERR_FORMAT, "not valid JSON (truncated?) at line %d column %d (byte %d): %s",
                       je.line, je.column, je.position, je.text);
    aq_status st = AQ_OK;
    if (!json_is_object(root)) {
        st = fmt_err(err, "the top level is not a JSON object%s", "");
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        int known = 0;
        for (size_t i = 0; i < sizeof known_top / sizeof known_top[0]; i++) known |= !strcmp(key, known_top[i]);
        if (!known && !json_is_null(v)) {
            st = fmt_err(err, "unsupported top-level field \"%.60s\"", key);
            goto done;
        }
    }
    hf_bytetab_init(&h->bytes);
    AQ_TRY_GOTO(st, load_model(h, root, err), done);
    AQ_TRY_GOTO(st, hf_parse_normalizer(h, json_object_get(root, "normalizer"), "normalizer", err), done);
    AQ_TRY_GOTO(st, hf_parse_pretokenizer(h, json_object_get(root, "pre_tokenizer"), "pre_tokenizer", err),
                done);
    AQ_TRY_GOTO(st, hf_parse_postprocessor(h, json_object_get(root, "post_processor"), "post_processor", err),
                done);
    st = hf_parse_decoder(h, json_object_get(root, "decoder"), "decoder", err);
done:
    json_decref(root);
    return st;
}
