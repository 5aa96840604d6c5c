/* hf_parse.c — the pipeline components of a tokenizer.json, read into the
 * flat lists of aq_hftok (Sequence nests are flattened in order): the
 * normalizers, pre-tokenizers, post-processor and decoders that Llama-2/3,
 * Mistral, TinyLlama, Qwen2/3 and SmolLM files use. Any other type, or an
 * option value whose behaviour is not implemented, is refused with
 * "unsupported ..." and the JSON path, so a file never tokenizes silently
 * differently from the `tokenizers` library. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf_internal.h"

#define PATH_MAX_LEN 160

static const char *type_of(json_t *j)
{
    json_t *t = json_object_get(j, "type");
    return json_is_string(t) ? json_string_value(t) : NULL;
}

static aq_status unsupported(aq_error *err, const char *what, const char *type, const char *path,
                             const char *supported)
{
    return aq_fail(err, AQ_ERR_FORMAT, "unsupported %s \"%.60s\" at %s (supported: %s)", what,
                   type ? type : "(no type)", path, supported);
}

static aq_status get_str(json_t *j, const char *key, const char *path, char **out, size_t *len,
                         aq_error *err)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_string(v))
        return aq_fail(err, AQ_ERR_FORMAT, "%s.%s: missing or not a string", path, key);
    *len = json_string_length(v);
    *out = malloc(*len + 1);
    if (!*out) return aq_fail_nomem(err, key, *len);
    memcpy(*out, json_string_value(v), *len + 1);
    return AQ_OK;
}

/* {"String": s} or {"Regex": r}. */
static aq_status get_pattern(json_t *j, const char *path, hf_pattern *p, aq_error *err)
{
    json_t *pat = json_object_get(j, "pattern");
    char where[PATH_MAX_LEN + 16];
    snprintf(where, sizeof where, "%s.pattern", path);
    json_t *s = json_object_get(pat, "String"), *r = json_object_get(pat, "Regex");
    if (json_is_string(s)) {
        p->lit_len = json_string_length(s);
        p->lit = malloc(p->lit_len + 1);
        if (!p->lit) return aq_fail_nomem(err, "pattern", p->lit_len);
        memcpy(p->lit, json_string_value(s), p->lit_len + 1);
        return AQ_OK;
    }
    if (json_is_string(r)) return hf_regex_compile(json_string_value(r), json_string_length(r), where, &p->re, err);
    return aq_fail(err, AQ_ERR_FORMAT, "%s: neither {\"String\": ...} nor {\"Regex\": ...}", where);
}

/* Grow a component array by one zeroed element. */
static void *grow(void *arr, int *n, size_t size, aq_error *err)
{
    char *p = realloc(arr, (size_t)(*n + 1) * size);
    if (!p) {
        aq_fail_nomem(err, "tokenizer components", (size_t)(*n + 1) * size);
        return NULL;
    }
    memset(p + (size_t)*n * size, 0, size);
    (*n)++;
    return p;
}

/* Calls f on each element of j[key] with the path "path.key[i]". */
typedef aq_status (*hf_each_fn)(aq_hftok *h, json_t *j, const char *path, aq_error *err);
static aq_status each(aq_hftok *h, json_t *j, const char *key, const char *path, hf_each_fn f,
                      aq_error *err)
{
    json_t *arr = json_object_get(j, key);
    if (!json_is_array(arr)) return aq_fail(err, AQ_ERR_FORMAT, "%s.%s: missing or not an array", path, key);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        char sub[PATH_MAX_LEN];
        snprintf(sub, sizeof sub, "%s.%s[%zu]", path, key, i);
        AQ_TRY(f(h, json_array_get(arr, i), sub, err));
    }
    return AQ_OK;
}

aq_status hf_parse_normalizer(aq_hftok *h, json_t *j, const char *path, aq_error *err)
{
    if (!j || json_is_null(j)) return AQ_OK;
    const char *t = type_of(j);
    if (t && !strcmp(t, "Sequence")) return each(h, j, "normalizers", path, hf_parse_normalizer, err);
    static const char *const uni[] = {"NFC", "NFD", "NFKC", "NFKD"};
    static const int uni_kind[] = {HF_N_NFC, HF_N_NFD, HF_N_NFKC, HF_N_NFKD};
    int kind = -1;
    for (int i = 0; i < 4; i++)
        if (t && !strcmp(t, uni[i])) kind = uni_kind[i];
    if (t && !strcmp(t, "Prepend")) kind = HF_N_PREPEND;
    if (t && !strcmp(t, "Replace")) kind = HF_N_REPLACE;
    if (kind < 0) return unsupported(err, "normalizer", t, path, "Sequence, NFC, NFD, NFKC, NFKD, Prepend, Replace");
    hf_norm *a = grow(h->norms, &h->n_norms, sizeof *a, err);
    if (!a) return AQ_ERR_NOMEM;
    h->norms = a;
    hf_norm *n = &a[h->n_norms - 1];
    n->kind = kind;
    if (kind == HF_N_PREPEND) return get_str(j, "prepend", path, &n->str, &n->str_len, err);
    if (kind == HF_N_REPLACE) {
        AQ_TRY(get_pattern(j, path, &n->pat, err));
        return get_str(j, "content", path, &n->str, &n->str_len, err);
    }
    return AQ_OK;
}

/* tokenizers' prepend_scheme (default "always"); the older add_prefix_space
 * false means "never" and, as tokenizers decides, contradicts any other
 * declared scheme. */
static aq_status get_prepend(json_t *j, const char *path, int *out, aq_error *err)
{
    json_t *ps = json_object_get(j, "prepend_scheme");
    *out = HF_PREPEND_ALWAYS;
    if (ps && !json_is_null(ps)) {
        const char *s = json_is_string(ps) ? json_string_value(ps) : NULL;
        if (s && !strcmp(s, "always")) *out = HF_PREPEND_ALWAYS;
        else if (s && !strcmp(s, "first")) *out = HF_PREPEND_FIRST;
        else if (s && !strcmp(s, "never")) *out = HF_PREPEND_NEVER;
        else return unsupported(err, "prepend_scheme", s, path, "always, first, never");
    }
    json_t *ap = json_object_get(j, "add_prefix_space");
    if (ap && json_is_false(ap)) {
        if (*out != HF_PREPEND_NEVER)
            return aq_fail(err, AQ_ERR_FORMAT, "%s: add_prefix_space false contradicts prepend_scheme", path);
        *out = HF_PREPEND_NEVER;
    }
    return AQ_OK;
}

/* The Metaspace replacement: exactly one character. */
static aq_status get_replacement(json_t *j, const char *path, char *out, size_t *len, aq_error *err)
{
    json_t *r = json_object_get(j, "replacement");
    if (!json_is_string(r)) return aq_fail(err, AQ_ERR_FORMAT, "%s.replacement: missing or not a string", path);
    const char *s = json_string_value(r);
    size_t n = json_string_length(r);
    int32_t cp;
    if (n == 0 || n > 4 || hf_utf8_next((const unsigned char *)s, n, &cp) != (int)n)
        return aq_fail(err, AQ_ERR_FORMAT, "%s.replacement: not one character", path);
    memcpy(out, s, n);
    out[n] = '\0';
    *len = n;
    return AQ_OK;
}

/* tokenizers' ByteLevel pre-tokenizer regex (used when use_regex is true). */
static const char gpt2_re[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static aq_status parse_split(json_t *j, const char *path, hf_pretok *p, aq_error *err)
{
    static const char *const beh[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                      "Contiguous"};
    json_t *b = json_object_get(j, "behavior");
    p->behavior = -1;
    for (int i = 0; i < 5; i++)
        if (json_is_string(b) && !strcmp(json_string_value(b), beh[i])) p->behavior = i;
    char where[PATH_MAX_LEN + 16];
    snprintf(where, sizeof where, "%s.behavior", path);
    if (p->behavior < 0)
        return unsupported(err, "Split behavior", json_is_string(b) ? json_string_value(b) : NULL, where,
                           "Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous");
    if (json_is_true(json_object_get(j, "invert"))) {
        snprintf(where, sizeof where, "%s.invert", path);
        return unsupported(err, "Split option", "invert: true", where, "invert: false");
    }
    return get_pattern(j, path, &p->pat, err);
}

aq_status hf_parse_pretokenizer(aq_hftok *h, json_t *j, const char *path, aq_error *err)
{
    if (!j || json_is_null(j)) return AQ_OK;
    const char *t = type_of(j);
    if (t && !strcmp(t, "Sequence")) return each(h, j, "pretokenizers", path, hf_parse_pretokenizer, err);
    int digits = t && !strcmp(t, "Digits");
    int kind = !t ? -1 : !strcmp(t, "Split") || digits ? HF_P_SPLIT : !strcmp(t, "ByteLevel") ? HF_P_BYTELEVEL
                     : !strcmp(t, "Metaspace") ? HF_P_METASPACE : -1;
    if (kind < 0) return unsupported(err, "pre-tokenizer", t, path, "Sequence, Split, Digits, ByteLevel, Metaspace");
    hf_pretok *a = grow(h->pretoks, &h->n_pretoks, sizeof *a, err);
    if (!a) return AQ_ERR_NOMEM;
    h->pretoks = a;
    hf_pretok *p = &a[h->n_pretoks - 1];
    p->kind = kind;
    if (digits) {
        /* tokenizers' Digits: split at each char::is_numeric() character
         * (general category N), alone or in runs. */
        static const char num_re[] = "\\p{N}";
        p->behavior = json_is_true(json_object_get(j, "individual_digits")) ? HF_SPLIT_ISOLATED : HF_SPLIT_CONTIGUOUS;
        return hf_regex_compile(num_re, sizeof num_re - 1, path, &p->pat.re, err);
    }
    if (kind == HF_P_SPLIT) return parse_split(j, path, p, err);
    if (kind == HF_P_BYTELEVEL) {
        /* tokenizers' defaults when a field is absent: both true. */
        json_t *ap = json_object_get(j, "add_prefix_space"), *ur = json_object_get(j, "use_regex");
        p->add_prefix_space = !ap || json_is_true(ap);
        p->use_regex = !ur || json_is_true(ur);
        if (p->use_regex) return hf_regex_compile(gpt2_re, sizeof gpt2_re - 1, path, &p->pat.re, err);
        return AQ_OK;
    }
    json_t *sp = json_object_get(j, "split");
    p->split = !sp || json_is_true(sp);
    AQ_TRY(get_replacement(j, path, p->repl, &p->repl_len, err));
    return get_prepend(j, path, &p->prepend, err);
}

/* The ids of a TemplateProcessing special token name. */
static aq_status template_ids(aq_hftok *h, json_t *j, const char *name, const char *path, int **ids, int *n,
                              aq_error *err)
{
    json_t *ent = json_object_get(json_object_get(j, "special_tokens"), name);
    json_t *arr = json_object_get(ent, "ids");
    if (!json_is_array(arr))
        return aq_fail(err, AQ_ERR_FORMAT, "%s.special_tokens: no ids for \"%.60s\"", path, name);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *v = json_array_get(arr, i);
        json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (id < 0 || id >= h->n_ids || !(h->pieces[id] || h->apieces[id]))
            return aq_fail(err, AQ_ERR_FORMAT, "%s.special_tokens[\"%.60s\"].ids[%zu]: not an id of the vocabulary",
                           path, name, i);
        int *p = realloc(*ids, (size_t)(*n + 1) * sizeof *p);
        if (!p) return aq_fail_nomem(err, "template", 0);
        *ids = p;
        p[(*n)++] = (int)id;
    }
    return AQ_OK;
}

static aq_status parse_template(aq_hftok *h, json_t *j, const char *path, aq_error *err)
{
    if (h->prefix_ids || h->suffix_ids || h->n_prefix || h->n_suffix)
        return unsupported(err, "post-processor", "TemplateProcessing (a second one)", path, "one TemplateProcessing");
    json_t *single = json_object_get(j, "single");
    if (!json_is_array(single)) return aq_fail(err, AQ_ERR_FORMAT, "%s.single: missing or not an array", path);
    int seen_a = 0;
    for (size_t i = 0; i < json_array_size(single); i++) {
        json_t *it = json_array_get(single, i);
        json_t *st = json_object_get(it, "SpecialToken"), *sq = json_object_get(it, "Sequence");
        json_t *id = json_object_get(st ? st : sq, "id");
        if (sq && json_is_string(id) && !strcmp(json_string_value(id), "A") && !seen_a) {
            seen_a = 1;
        } else if (st && json_is_string(id)) {
            AQ_TRY(template_ids(h, j, json_string_value(id), path, seen_a ? &h->suffix_ids : &h->prefix_ids,
                                seen_a ? &h->n_suffix : &h->n_prefix, err));
        } else {
            return aq_fail(err, AQ_ERR_FORMAT, "%s.single[%zu]: neither a SpecialToken nor the Sequence A", path, i);
        }
    }
    if (!seen_a) return aq_fail(err, AQ_ERR_FORMAT, "%s.single: no Sequence A", path);
    return AQ_OK;
}

aq_status hf_parse_postprocessor(aq_hftok *h, json_t *j, const char *path, aq_error *err)
{
    if (!j || json_is_null(j)) return AQ_OK;
    const char *t = type_of(j);
    if (t && !strcmp(t, "Sequence")) return each(h, j, "processors", path, hf_parse_postprocessor, err);
    if (t && !strcmp(t, "ByteLevel")) return AQ_OK; /* only moves offsets; ids unchanged */
    if (t && !strcmp(t, "TemplateProcessing")) return parse_template(h, j, path, err);
    return unsupported(err, "post-processor", t, path, "Sequence, ByteLevel, TemplateProcessing");
}

aq_status hf_parse_decoder(aq_hftok *h, json_t *j, const char *path, aq_error *err)
{
    if (!j || json_is_null(j)) return AQ_OK;
    const char *t = type_of(j);
    if (t && !strcmp(t, "Sequence")) return each(h, j, "decoders", path, hf_parse_decoder, err);
    static const char *const names[] = {"ByteLevel", "Replace", "ByteFallback", "Fuse", "Strip", "Metaspace"};
    static const int kinds[] = {HF_D_BYTELEVEL, HF_D_REPLACE, HF_D_BYTEFALLBACK, HF_D_FUSE, HF_D_STRIP, HF_D_METASPACE};
    int kind = -1;
    for (int i = 0; i < 6; i++)
        if (t && !strcmp(t, names[i])) kind = kinds[i];
    if (kind < 0)
        return unsupported(err, "decoder", t, path, "Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace");
    hf_dec *a = grow(h->decs, &h->n_decs, sizeof *a, err);
    if (!a) return AQ_ERR_NOMEM;
    h->decs = a;
    hf_dec *d = &a[h->n_decs - 1];
    d->kind = kind;
    if (kind == HF_D_REPLACE) {
        AQ_TRY(get_pattern(j, path, &d->pat, err));
        return get_str(j, "content", path, &d->str, &d->str_len, err);
    }
    if (kind == HF_D_STRIP) {
        AQ_TRY(get_str(j, "content", path, &d->str, &d->str_len, err));
        int32_t cp;
        if (d->str_len == 0 || hf_utf8_next((const unsigned char *)d->str, d->str_len, &cp) != (int)d->str_len)
            return aq_fail(err, AQ_ERR_FORMAT, "%s.content: not one character", path);
        json_t *a0 = json_object_get(j, "start"), *a1 = json_object_get(j, "stop");
        if (!json_is_integer(a0) || !json_is_integer(a1) || json_integer_value(a0) < 0 ||
            json_integer_value(a1) < 0 || json_integer_value(a0) > 1000000 || json_integer_value(a1) > 1000000)
            return aq_fail(err, AQ_ERR_FORMAT, "%s: start and stop must be small non-negative integers", path);
        d->start = (int)json_integer_value(a0);
        d->stop = (int)json_integer_value(a1);
        return AQ_OK;
    }
    if (kind == HF_D_METASPACE) {
        char r[8];
        AQ_TRY(get_replacement(j, path, r, &d->str_len, err));
        d->str = malloc(d->str_len + 1);
        if (!d->str) return aq_fail_nomem(err, "decoder", 8);
        memcpy(d->str, r, d->str_len + 1);
        return get_prepend(j, path, &d->prepend, err);
    }
    return AQ_OK;
}

void hf_components_free(aq_hftok *h)
{
    for (int i = 0; i < h->n_norms; i++) {
        hf_pattern_free(&h->norms[i].pat);
        free(h->norms[i].str);
    }
    for (int i = 0; i < h->n_pretoks; i++) hf_pattern_free(&h->pretoks[i].pat);
    for (int i = 0; i < h->n_decs; i++) {
        hf_pattern_free(&h->decs[i].pat);
        free(h->decs[i].str);
    }
    free(h->norms);
    free(h->pretoks);
    free(h->decs);
    free(h->prefix_ids);
    free(h->suffix_ids);
}
