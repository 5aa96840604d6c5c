/* export_hfvocab.c — tokenizer.ggml.* of a byte-level BPE tokenizer.json
 * (GPT-2 style: Llama-3, Qwen2/3), as llama.cpp's `gpt2` tokenizer model
 * wants it: tokens (the vocabulary strings, ids without one as "[PADn]"),
 * token_type (1 normal, 3 control = special added token, 4 user-defined =
 * other added token, 5 unused = padding), merges ("left right" in rank
 * order) and `pre`, llama.cpp's name of the pre-tokenizer regex, told from
 * the file's Split pattern (llama-bpe, qwen2, or plain gpt2).
 * Reads the tokenizer's internals (src/text/hf_internal.h) for the merge
 * ranks, and the JSON once more for the regex source (compiled away). */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/gguf.h"
#include "../src/text/hf_internal.h"
#include "../src/text/tok_internal.h"
#include "export_gguf.h"

/* llama.cpp's name of a pre-tokenizer regex, by a fragment that tells the
 * known ones apart; NULL if none matches. */
static const char *pre_name(const char *re)
{
    if (!re) return "gpt2"; /* ByteLevel's own regex only: GPT-2's */
    if (strstr(re, "\\p{N}{1,3}")) return "llama-bpe";
    if (strstr(re, "\\p{L}+|\\p{N}|")) return "qwen2";
    return NULL;
}

/* The Split regex of tokenizer.json's pre_tokenizer (or NULL), into buf. */
static aq_status find_split_regex(const char *file, char *buf, size_t cap, int *found, aq_error *err)
{
    json_error_t je;
    json_t *root = json_load_file(file, 0, &je);
    if (!root) return aq_fail(err, AQ_ERR_FORMAT, "export: %s: %s (line %d)", file, je.text, je.line);
    json_t *pt = json_object_get(root, "pre_tokenizer"), *list = json_object_get(pt, "pretokenizers");
    size_t n = json_is_array(list) ? json_array_size(list) : 1;
    *found = 0;
    for (size_t i = 0; i < n && !*found; i++) {
        json_t *p = json_is_array(list) ? json_array_get(list, i) : pt;
        const char *re = json_string_value(json_object_get(json_object_get(p, "pattern"), "Regex"));
        if (re && strlen(re) < cap) {
            strcpy(buf, re);
            *found = 1;
        }
    }
    json_decref(root);
    return AQ_OK;
}

static int cmp_rank(const void *a, const void *b)
{
    const hf_merge_slot *x = *(const hf_merge_slot *const *)a, *y = *(const hf_merge_slot *const *)b;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

/* "left right" of every merge, in rank order (malloc'd strings). */
static aq_status merge_strings(const aq_hftok *h, char ***out, size_t *n_out, aq_error *err)
{
    size_t n = 0;
    for (size_t i = 0; i < h->merges.cap; i++) n += h->merges.slots[i].key != UINT64_MAX;
    const hf_merge_slot **s = malloc((n ? n : 1) * sizeof *s);
    char **str = calloc(n ? n : 1, sizeof *str);
    if (!s || !str) {
        free(s);
        free(str);
        return aq_fail(err, AQ_ERR_NOMEM, "export: merges");
    }
    n = 0;
    for (size_t i = 0; i < h->merges.cap; i++)
        if (h->merges.slots[i].key != UINT64_MAX) s[n++] = &h->merges.slots[i];
    qsort(s, n, sizeof *s, cmp_rank);
    aq_status st = AQ_OK;
    for (size_t i = 0; i < n && st == AQ_OK; i++) {
        int a = (int)(s[i]->key >> 32), b = (int)(s[i]->key & 0xFFFFFFFFu);
        size_t la = h->piece_len[a], lb = h->piece_len[b];
        if (!(str[i] = malloc(la + lb + 2))) st = aq_fail(err, AQ_ERR_NOMEM, "export: merges");
        else {
            memcpy(str[i], h->pieces[a], la);
            str[i][la] = ' ';
            memcpy(str[i] + la + 1, h->pieces[b], lb);
            str[i][la + lb + 1] = 0;
        }
    }
    free(s);
    *out = str;
    *n_out = n;
    return st;
}

static void free_strs(char **s, size_t n)
{
    for (size_t i = 0; s && i < n; i++) free(s[i]);
    free(s);
}

/* tokens and token_type over the model's vocab (padding included). */
static aq_status add_tokens(aq_gguf_writer *w, const aq_hftok *h, int vocab, aq_error *err)
{
    const char **tok = calloc((size_t)vocab, sizeof *tok);
    size_t *len = calloc((size_t)vocab, sizeof *len);
    int32_t *type = calloc((size_t)vocab, sizeof *type);
    char (*pad)[24] = calloc((size_t)vocab, sizeof *pad);
    aq_status st = AQ_OK;
    if (!tok || !len || !type || !pad) st = aq_fail(err, AQ_ERR_NOMEM, "export: vocabulary");
    for (int i = 0; i < vocab && st == AQ_OK; i++) {
        int has = i < h->n_ids && (h->pieces[i] || h->apieces[i]);
        if (!has) {
            len[i] = (size_t)snprintf(pad[i], sizeof pad[i], "[PAD%d]", i);
            tok[i] = pad[i];
            type[i] = 5;
            continue;
        }
        tok[i] = h->pieces[i] ? h->pieces[i] : h->apieces[i];
        len[i] = h->pieces[i] ? h->piece_len[i] : h->apiece_len[i];
        type[i] = (h->flags[i] & HF_F_SPECIAL) ? 3 : (h->flags[i] & HF_F_ADDED) ? 4 : 1;
    }
    if (st == AQ_OK) st = aq_gguf_set_str_array(w, "tokenizer.ggml.tokens", tok, len, (uint64_t)vocab, err);
    if (st == AQ_OK)
        st = aq_gguf_set_array(w, "tokenizer.ggml.token_type", AQ_GGUF_INT32, type, (uint64_t)vocab, err);
    free(tok);
    free(len);
    free(type);
    free(pad);
    return st;
}

aq_status aq_export_add_hf_vocab(struct aq_gguf_writer *w, const aq_tokenizer *tok,
                                 const char *tok_file, int vocab, aq_error *err)
{
    const aq_hftok *h = tok->hf;
    if (h->byte_fallback || h->n_pretoks == 0)
        return aq_fail(err, AQ_ERR_ARG, "export: tokenizer %s: only byte-level BPE tokenizer.json "
                                        "files are supported yet (not SentencePiece-style ones)", tok_file);
    char re[4096];
    int found = 0;
    AQ_TRY(find_split_regex(tok_file, re, sizeof re, &found, err));
    const char *pre = pre_name(found ? re : NULL);
    if (!pre)
        return aq_fail(err, AQ_ERR_ARG, "export: tokenizer %s: pre-tokenizer regex not known to "
                                        "llama.cpp's gpt2 tokenizer (not Llama-3, Qwen2 or GPT-2)", tok_file);
    char **merges = NULL;
    size_t n_merges = 0;
    aq_status st;
    AQ_TRY_GOTO(st, aq_gguf_set_str(w, "tokenizer.ggml.model", "gpt2", err), done);
    AQ_TRY_GOTO(st, aq_gguf_set_str(w, "tokenizer.ggml.pre", pre, err), done);
    AQ_TRY_GOTO(st, add_tokens(w, h, vocab, err), done);
    AQ_TRY_GOTO(st, merge_strings(h, &merges, &n_merges, err), done);
    AQ_TRY_GOTO(st, aq_gguf_set_str_array(w, "tokenizer.ggml.merges", (const char *const *)merges, NULL,
                                          n_merges, err), done);
    if (aq_tok_bos_id(tok) >= 0)
        AQ_TRY_GOTO(st, aq_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)aq_tok_bos_id(tok), err), done);
    if (aq_tok_eos_id(tok) >= 0)
        AQ_TRY_GOTO(st, aq_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)aq_tok_eos_id(tok), err), done);
    st = aq_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", aq_tok_bos_id(tok) >= 0, err);
done:
    free_strs(merges, n_merges);
    return st;
}
