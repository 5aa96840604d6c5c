/* tokenizer.c — the tokenizer front end (tokenizer.h): finds the file, tells
 * a llama2.c .bin from a tokenizer.json by content, checks it against the
 * model's vocab_size, reads the EOS of a tokenizer.json from the model's
 * side files, and dispatches encode/decode to the backend
 * (l2c_tokenizer.c, hf_tokenizer.c). Streaming decode is in tok_stream.c. */
#include "tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tok_internal.h"

/* ---- finding and recognising the file ---- */

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

aq_status aq_tok_resolve(const char *path, char *file, size_t cap, aq_error *err)
{
    if (!is_dir(path)) {
        if ((size_t)snprintf(file, cap, "%s", path) >= cap)
            return aq_fail(err, AQ_ERR_ARG, "tokenizer path too long: %.64s...", path);
        return AQ_OK;
    }
    static const char *const names[] = {"tokenizer.json", "tokenizer.bin"};
    for (size_t i = 0; i < 2; i++) {
        if ((size_t)snprintf(file, cap, "%s/%s", path, names[i]) >= cap)
            return aq_fail(err, AQ_ERR_ARG, "tokenizer path too long: %.64s...", path);
        if (is_file(file)) return AQ_OK;
    }
    return aq_fail(err, AQ_ERR_NOTFOUND,
                   "%s: the directory holds neither tokenizer.json nor tokenizer.bin (give the "
                   "tokenizer file itself)",
                   path);
}

/* A JSON object starts with '{' after optional whitespace and a UTF-8 BOM; a
 * llama2.c .bin starts with a small int32 max_token_length, never that. */
static int looks_like_json(const unsigned char *b, size_t len)
{
    size_t i = 0;
    if (len >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF) i = 3;
    while (i < len && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r'))
        i++;
    return i < len && b[i] == '{';
}

static aq_status sniff_file(const char *file, int *json, aq_error *err)
{
    FILE *f = fopen(file, "rb");
    if (!f) return aq_fail(err, AQ_ERR_IO, "%s: cannot open tokenizer: %s", file, strerror(errno));
    unsigned char head[64];
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    *json = looks_like_json(head, got);
    return AQ_OK;
}

/* ---- the EOS of a tokenizer.json: the model's side files ---- */

static aq_status add_stop(aq_tokenizer *t, int id, const char *file, aq_error *err)
{
    if (id < 0 || id >= t->vocab)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: eos token id %d is not a token of the tokenizer "
                       "(ids 0..%d)", file, id, t->vocab - 1);
    for (int i = 0; i < t->n_stop; i++)
        if (t->stop[i] == id) return AQ_OK;
    if (t->n_stop < AQ_TOK_MAX_STOP) t->stop[t->n_stop++] = id;
    if (t->eos < 0) t->eos = id;
    return AQ_OK;
}

/* dir/name parsed, or NULL (*st = AQ_OK) when the file is absent. */
static json_t *load_side(const char *dir, const char *name, char *file, size_t cap,
                         aq_status *st, aq_error *err)
{
    *st = AQ_OK;
    snprintf(file, cap, "%s/%s", dir, name);
    if (!is_file(file)) return NULL;
    json_error_t je;
    /* All numbers as reals: tokenizer_config.json holds integers beyond
     * int64 ("model_max_length": 1e30 written out), which jansson refuses. */
    json_t *j = json_load_file(file, JSON_DECODE_INT_AS_REAL, &je);
    if (!j || !json_is_object(j)) {
        *st = aq_fail(err, AQ_ERR_FORMAT, "%s: %s (line %d, column %d)", file,
                      j ? "not a JSON object" : je.text, je.line, je.column);
        json_decref(j);
        return NULL;
    }
    return j;
}

/* The id of tokenizer_config.json's key (a string or {"content": string});
 * -1 if absent or null. */
static aq_status config_token(const aq_tokenizer *t, json_t *j, const char *key, const char *file,
                              int *id, aq_error *err)
{
    json_t *e = json_object_get(j, key);
    *id = -1;
    if (json_is_object(e)) e = json_object_get(e, "content");
    if (!e || json_is_null(e)) return AQ_OK;
    if (!json_is_string(e))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: \"%s\" must be a string or {\"content\": string}",
                       file, key);
    *id = aq_hftok_token_id(t->hf, json_string_value(e));
    if (*id < 0)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: %s \"%s\" is not a token of the tokenizer.json",
                       file, key, json_string_value(e));
    return AQ_OK;
}

/* tokenizer_config.json: "eos_token"; and "bos_token" when "add_bos_token"
 * is true but the post-processor adds no BOS (as transformers' Llama
 * tokenizers do: some Llama-3 files have a ByteLevel post-processor only). */
static aq_status from_tokenizer_config(aq_tokenizer *t, const char *dir, aq_error *err)
{
    char file[PATH_MAX];
    aq_status st;
    json_t *j = load_side(dir, "tokenizer_config.json", file, sizeof file, &st, err);
    if (!j) return st;
    int eos, bos;
    st = config_token(t, j, "eos_token", file, &eos, err);
    if (st == AQ_OK && eos >= 0) st = add_stop(t, eos, file, err);
    if (st == AQ_OK && t->bos < 0 && json_is_true(json_object_get(j, "add_bos_token"))) {
        st = config_token(t, j, "bos_token", file, &bos, err);
        t->bos = bos;
        t->bos_added = bos >= 0;
    }
    json_decref(j);
    return st;
}

/* A token id read as a JSON number (load_side reads numbers as reals). */
static int json_id(const json_t *v)
{
    double x = json_number_value(v);
    return json_is_number(v) && x >= 0 && x < INT_MAX && x == (double)(int)x ? (int)x : -1;
}

/* config.json "eos_token_id": an integer or a list of them. */
static aq_status eos_from_config(aq_tokenizer *t, const char *dir, aq_error *err)
{
    char file[PATH_MAX];
    aq_status st;
    json_t *j = load_side(dir, "config.json", file, sizeof file, &st, err);
    if (!j) return st;
    json_t *e = json_object_get(j, "eos_token_id"), *v;
    size_t i;
    if (json_is_number(e)) {
        st = json_id(e) >= 0 ? add_stop(t, json_id(e), file, err)
                             : aq_fail(err, AQ_ERR_FORMAT,
                                       "%s: eos_token_id is not a non-negative integer", file);
    } else if (json_is_array(e)) {
        json_array_foreach(e, i, v) {
            st = json_id(v) >= 0 ? add_stop(t, json_id(v), file, err)
                                 : aq_fail(err, AQ_ERR_FORMAT,
                                           "%s: eos_token_id[%zu] is not a non-negative integer",
                                           file, i);
            if (st != AQ_OK) break;
        }
    } else if (e && !json_is_null(e)) {
        st = aq_fail(err, AQ_ERR_FORMAT, "%s: eos_token_id must be an integer or a list", file);
    }
    json_decref(j);
    return st;
}

static aq_status hf_side_files(aq_tokenizer *t, const char *file, aq_error *err)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", file);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    AQ_TRY(from_tokenizer_config(t, dir, err));
    return eos_from_config(t, dir, err);
}

/* ---- opening ---- */

static void describe(aq_tokenizer *t, const char *label)
{
    char bos[16] = "none", eos[16] = "none";
    if (t->bos >= 0) snprintf(bos, sizeof bos, "%d", t->bos);
    if (t->eos >= 0) snprintf(eos, sizeof eos, "%d", t->eos);
    if (t->kind == AQ_TOK_LLAMA2C)
        snprintf(t->describe, sizeof t->describe,
                 "llama2.c tokenizer %s: %d tokens, %s, BOS %s, EOS %s", label, t->vocab,
                 aq_l2ctok_byte_fallback(t->l2c) ? "byte fallback"
                 : t->unk >= 0                   ? "no byte fallback (unknown characters -> <unk>)"
                                                 : "no byte fallback, no <unk>",
                 bos, eos);
    else
        snprintf(t->describe, sizeof t->describe, "tokenizer.json %s: %d tokens, BOS %s, EOS %s",
                 label, t->vocab, bos, eos);
}

/* The checks and the fields common to both kinds, once the backend is open. */
static aq_status finish(aq_tokenizer *t, int vocab_size, const char *label, aq_error *err)
{
    if (t->kind == AQ_TOK_LLAMA2C) {
        t->vocab = aq_l2ctok_vocab_size(t->l2c);
        t->bos = t->vocab > AQ_L2CTOK_BOS ? AQ_L2CTOK_BOS : -1;
        t->eos = t->vocab > AQ_L2CTOK_EOS ? AQ_L2CTOK_EOS : -1;
        t->unk = aq_l2ctok_byte_fallback(t->l2c) ? -1 : aq_l2ctok_unk_id(t->l2c);
        if (t->bos >= 0) t->stop[t->n_stop++] = t->bos;
        if (t->eos >= 0) t->stop[t->n_stop++] = t->eos;
    } else {
        t->vocab = aq_hftok_vocab_size(t->hf);
        t->bos = aq_hftok_bos_id(t->hf);
        t->eos = -1;
        t->unk = aq_hftok_unk_id(t->hf);
        if (vocab_size > 0 && t->vocab > vocab_size)
            return aq_fail(err, AQ_ERR_ARG,
                           "%s: config/tokenizer vocabulary mismatch: the tokenizer has ids up to "
                           "%d (%d tokens) but the model's vocab_size is %d",
                           label, t->vocab - 1, t->vocab, vocab_size);
    }
    t->unknown = malloc(sizeof *t->unknown);
    if (!t->unknown) return aq_fail_nomem(err, "tokenizer", sizeof *t->unknown);
    atomic_init(t->unknown, 0);
    return AQ_OK;
}

static aq_status tok_new(aq_tokenizer **out, aq_error *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return aq_fail_nomem(err, "tokenizer", sizeof **out);
    (*out)->bos = (*out)->eos = (*out)->unk = -1;
    return AQ_OK;
}

aq_status aq_tok_open(const char *path, int vocab_size, aq_tokenizer **out, aq_error *err)
{
    *out = NULL;
    if (vocab_size < 0)
        return aq_fail(err, AQ_ERR_ARG, "%s: vocab_size %d must not be negative", path, vocab_size);
    char file[PATH_MAX];
    int json = 0;
    AQ_TRY(aq_tok_resolve(path, file, sizeof file, err));
    AQ_TRY(sniff_file(file, &json, err));
    aq_tokenizer *t;
    AQ_TRY(tok_new(&t, err));
    aq_status st;
    if (json) {
        t->kind = AQ_TOK_HF_JSON;
        AQ_TRY_GOTO(st, aq_hftok_open(file, &t->hf, err), fail);
        AQ_TRY_GOTO(st, finish(t, vocab_size, file, err), fail);
        AQ_TRY_GOTO(st, hf_side_files(t, file, err), fail);
    } else {
        t->kind = AQ_TOK_LLAMA2C;
        AQ_TRY_GOTO(st, aq_l2ctok_open(file, vocab_size, &t->l2c, err), fail);
        AQ_TRY_GOTO(st, finish(t, vocab_size, file, err), fail);
    }
    describe(t, file);
    *out = t;
    return AQ_OK;
fail:
    aq_tok_close(t);
    return st;
}

aq_status aq_tok_open_memory(const void *buf, size_t len, int vocab_size, const char *label,
                             aq_tokenizer **out, aq_error *err)
{
    *out = NULL;
    if (!label) label = "<memory>";
    if (vocab_size < 0)
        return aq_fail(err, AQ_ERR_ARG, "%s: vocab_size %d must not be negative", label,
                       vocab_size);
    aq_tokenizer *t;
    AQ_TRY(tok_new(&t, err));
    aq_status st;
    if (looks_like_json(buf, len)) {
        t->kind = AQ_TOK_HF_JSON;
        AQ_TRY_GOTO(st, aq_hftok_open_memory(buf, len, label, &t->hf, err), fail);
    } else {
        t->kind = AQ_TOK_LLAMA2C;
        AQ_TRY_GOTO(st, aq_l2ctok_open_memory(buf, len, vocab_size, label, &t->l2c, err), fail);
    }
    AQ_TRY_GOTO(st, finish(t, vocab_size, label, err), fail);
    describe(t, label);
    *out = t;
    return AQ_OK;
fail:
    aq_tok_close(t);
    return st;
}

void aq_tok_close(aq_tokenizer *t)
{
    if (!t) return;
    aq_l2ctok_close(t->l2c);
    if (t->hf) aq_hftok_close(t->hf);
    free(t->unknown);
    free(t);
}

/* ---- accessors ---- */

aq_tok_kind aq_tok_kind_of(const aq_tokenizer *t) { return t->kind; }
const char *aq_tok_describe(const aq_tokenizer *t) { return t->describe; }
int aq_tok_vocab_size(const aq_tokenizer *t) { return t->vocab; }
int aq_tok_bos_id(const aq_tokenizer *t) { return t->bos; }
int aq_tok_eos_id(const aq_tokenizer *t) { return t->eos; }
int aq_tok_unk_id(const aq_tokenizer *t) { return t->unk; }

int aq_tok_is_stop(const aq_tokenizer *t, int id)
{
    for (int i = 0; i < t->n_stop; i++)
        if (t->stop[i] == id) return 1;
    return 0;
}

const char *aq_tok_piece(const aq_tokenizer *t, int id)
{
    if (t->kind == AQ_TOK_LLAMA2C) return aq_l2ctok_piece(t->l2c, id);
    return id >= 0 && id < t->vocab ? aq_hftok_piece(t->hf, id) : NULL;
}

size_t aq_tok_unknown_count(const aq_tokenizer *t)
{
    return atomic_load(t->unknown);
}

void aq_tok_report_unknown(const aq_tokenizer *t, const char *who, FILE *f)
{
    size_t n = aq_tok_unknown_count(t);
    if (n == 0) return;
    if (t->kind == AQ_TOK_LLAMA2C)
        fprintf(f, "%s: %zu character%s outside the vocabulary mapped to <unk> (%s)\n", who, n,
                n == 1 ? "" : "s", t->describe);
    else
        fprintf(f, "%s: %zu <unk> token%s for text outside the vocabulary (%s)\n", who, n,
                n == 1 ? "" : "s", t->describe);
}

/* ---- encode ---- */

size_t aq_tok_encode_max(size_t text_len)
{
    return aq_l2ctok_encode_max(text_len);
}

/* tokenizer.json: the backend's ids, plus EOS, counting <unk>. */
static aq_status hf_encode(const aq_tokenizer *t, const char *text, int bos, int eos, int **ids,
                           size_t *n, aq_error *err)
{
    AQ_TRY(aq_hftok_encode(t->hf, text, strlen(text), bos, ids, n, err));
    int pre = bos && t->bos_added, post = eos && t->eos >= 0;
    if (pre || post) {
        int *grown = realloc(*ids, (*n + 2) * sizeof **ids);
        if (!grown) {
            free(*ids);
            *ids = NULL;
            *n = 0;
            return aq_fail_nomem(err, "token ids", (*n + 2) * sizeof **ids);
        }
        *ids = grown;
        if (pre) {
            memmove(*ids + 1, *ids, *n * sizeof **ids);
            (*ids)[0] = t->bos;
            (*n)++;
        }
        if (post) (*ids)[(*n)++] = t->eos;
    }
    size_t unk = 0;
    for (size_t i = 0; t->unk >= 0 && i < *n; i++)
        unk += (*ids)[i] == t->unk;
    if (unk) atomic_fetch_add(t->unknown, unk);
    return AQ_OK;
}

aq_status aq_tok_encode(const aq_tokenizer *t, const char *text, int bos, int eos, int *ids,
                        size_t cap, size_t *n, aq_error *err)
{
    *n = 0;
    if (t->kind == AQ_TOK_LLAMA2C) {
        size_t unk = 0;
        AQ_TRY(aq_l2ctok_encode(t->l2c, text, bos, eos, ids, cap, n, &unk, err));
        if (unk) atomic_fetch_add(t->unknown, unk);
        return AQ_OK;
    }
    int *got;
    size_t k;
    AQ_TRY(hf_encode(t, text, bos, eos, &got, &k, err));
    if (k > cap) {
        free(got);
        return aq_fail(err, AQ_ERR_ARG,
                       "tokenizer: output room for %zu ids, need %zu for a %zu-byte text", cap, k,
                       strlen(text));
    }
    memcpy(ids, got, k * sizeof *ids);
    free(got);
    *n = k;
    return AQ_OK;
}

aq_status aq_tok_encode_alloc(const aq_tokenizer *t, const char *text, int bos, int eos, int **ids,
                              size_t *n, aq_error *err)
{
    *ids = NULL;
    *n = 0;
    if (t->kind == AQ_TOK_HF_JSON) return hf_encode(t, text, bos, eos, ids, n, err);
    size_t cap = aq_tok_encode_max(strlen(text));
    int *buf = malloc(cap * sizeof *buf);
    if (!buf) return aq_fail_nomem(err, "token ids", cap * sizeof *buf);
    aq_status st = aq_tok_encode(t, text, bos, eos, buf, cap, n, err);
    if (st != AQ_OK) {
        free(buf);
        return st;
    }
    *ids = buf;
    return AQ_OK;
}

/* ---- decode ---- */

aq_status aq_tok_decode(const aq_tokenizer *t, int prev_token, int token, const char **piece,
                        size_t *len, aq_error *err)
{
    if (t->kind == AQ_TOK_LLAMA2C)
        return aq_l2ctok_decode(t->l2c, prev_token, token, piece, len, err);
    return aq_fail(err, AQ_ERR_ARG,
                   "tokenizer: a tokenizer.json token is decoded in context (aq_tok_stream), not "
                   "alone (token %d)",
                   token);
}

aq_status aq_tok_decode_all(const aq_tokenizer *t, const int *ids, size_t n, char **out,
                            size_t *out_len, aq_error *err)
{
    if (t->kind == AQ_TOK_LLAMA2C) return aq_l2ctok_decode_all(t->l2c, ids, n, out, out_len, err);
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->vocab)
            return aq_fail(err, AQ_ERR_ARG,
                           "tokenizer: token id %d at position %zu is out of range [0, %d)", ids[i],
                           i, t->vocab);
    return aq_hftok_decode(t->hf, ids, n, 1, out, out_len, err);
}
