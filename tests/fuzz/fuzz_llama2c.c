/* fuzz_llama2c.c — libFuzzer harness for the llama2.c model and tokenizer
 * readers (io/llama2c.c). The whole input is offered to aq_l2c_open_memory;
 * the same input is offered to aq_l2c_vocab_parse with vocab_size taken from
 * its first two bytes (little-endian) and the rest as the tokenizer image.
 * Any input must be rejected with a message or yield self-consistent results:
 * exact file-size accounting, views inside the input (or owned q/k copies
 * that are the documented row permutation of the input), pieces that match
 * the bytes of the image. A violated invariant aborts (a finding).
 *
 * The input is also encoded as text with a small fixed vocabulary built to
 * produce score ties and overlapping merges (differential fuzzing): the heap
 * merge of src/text/l2c_tokenizer.c must give exactly the ids of a literal port of
 * run.c's quadratic loop, and decode(encode(text)) must give the text back.
 * tests/fuzz.cmake links harnesses with io/ only, so l2c_tokenizer.c is compiled
 * into this harness (with the same coverage instrumentation). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "../../io/llama2c.h"
#include "../../src/text/l2c_tokenizer.c"
#include "../runc_encode.h"

/* q/k views are owned copies: row h*hs + half*hs/2 + i of the view must be row
 * h*hs + 2i + half of the source block that starts at src. */
static void check_perm(const aq_tensor_view *v, const uint8_t *src, int64_t hs)
{
    int64_t rows = v->shape[0], cols = v->shape[1];
    const uint8_t *dst = v->data;
    size_t rb = (size_t)cols * 4;
    for (int64_t r = 0; r < rows; r++) {
        int64_t h = r / hs, k = r % hs, half = k / (hs / 2), i = k % (hs / 2);
        REQUIRE(!memcmp(dst + (size_t)r * rb, src + (size_t)(h * hs + 2 * i + half) * rb, rb));
    }
}

static void fuzz_model(const uint8_t *data, size_t size)
{
    aq_llama2c *m = NULL;
    aq_error err = {0};
    if (aq_l2c_open_memory(data, size, "fuzz", &m, &err) != AQ_OK) {
        REQUIRE(m == NULL && err.code != AQ_OK && err.msg[0] != '\0');
        return;
    }
    aq_llama_config c;
    aq_l2c_config(m, &c);
    REQUIRE(c.dim > 0 && c.hidden_dim > 0 && c.n_layers > 0 && c.n_heads > 0 && c.n_kv_heads > 0);
    REQUIRE(c.vocab_size > 0 && c.max_seq_len > 0 && c.dim % c.n_heads == 0);
    REQUIRE(c.n_heads % c.n_kv_heads == 0);
    int64_t hs = c.dim / c.n_heads;
    size_t n = aq_l2c_count(m);
    REQUIRE(n == 2 + 9 * (size_t)c.n_layers + (c.tied_embeddings ? 0 : 1));
    uint64_t floats = 0;
    /* wq follows token_embedding [vocab, dim] and rms_att [L, dim]; wk follows wq. */
    size_t d = (size_t)c.dim, L = (size_t)c.n_layers, q_rows = (size_t)(c.n_heads * hs);
    const uint8_t *wq = data + 28 + 4 * ((size_t)c.vocab_size * d + L * d);
    const uint8_t *wk = wq + 4 * L * q_rows * d;
    for (size_t i = 0; i < n; i++) {
        const aq_tensor_view *v = aq_l2c_tensor(m, i);
        REQUIRE(v && v->dtype == AQ_F32 && (v->ndim == 1 || v->ndim == 2));
        REQUIRE((uint64_t)aq_view_numel(v) * 4 == v->nbytes);
        REQUIRE(aq_l2c_find(m, v->name) == v);
        const uint8_t *p = v->data;
        int is_q = strstr(v->name, "q_proj") != NULL, is_k = strstr(v->name, "k_proj") != NULL;
        if (!is_q && !is_k) REQUIRE(p >= data + 28 && p + v->nbytes <= data + size);
        if (is_q || is_k) {
            int l = atoi(v->name + strlen("model.layers."));
            size_t blk = v->nbytes;
            check_perm(v, (is_q ? wq : wk) + (size_t)l * blk, hs);
        }
        floats += v->nbytes / 4;
    }
    /* Exact accounting: header + tensors + the two skipped RoPE blocks. */
    REQUIRE(28 + 4 * (floats + (uint64_t)c.max_seq_len * (uint64_t)hs) == size);
    aq_l2c_close(m);
}

static void fuzz_vocab(const uint8_t *data, size_t size)
{
    if (size < 2) return;
    int vocab = data[0] | data[1] << 8;
    aq_l2c_vocab v;
    aq_error err = {0};
    if (aq_l2c_vocab_parse(data + 2, size - 2, vocab, "fuzz", &v, &err) != AQ_OK) {
        REQUIRE(v.n == 0 && v.pieces == NULL && err.code != AQ_OK && err.msg[0] != '\0');
        return;
    }
    REQUIRE((vocab ? v.n == vocab : v.n > 0) && v.max_token_length > 0);
    size_t off = 4;
    for (int i = 0; i < v.n; i++) {
        REQUIRE(v.lengths[i] >= 0 && v.lengths[i] <= v.max_token_length);
        REQUIRE(v.pieces[i][v.lengths[i]] == '\0');
        REQUIRE(!memcmp(v.pieces[i], data + 2 + off + 8, (size_t)v.lengths[i]));
        off += 8 + (size_t)v.lengths[i];
    }
    REQUIRE(off == size - 2);
    aq_l2c_vocab_free(&v);
}

/* ---- differential fuzzing of the tokenizer ---- */

static const struct {
    float score;
    const char *s;
} fz_extra[] = {{0, " "},   {0, "a"},    {0, "b"},         {0, "c"},    {-1, "aa"},    {-1, "ab"},
                {-1, "ba"}, {-2, "bb"},  {-2, "aab"},      {-2, "abb"}, {-3, " a"},    {-3, " b"},
                {-1, "bc"}, {-4, "abc"}, {-1, "\xc3\xa9"}, {-5, " aa"}, {-2e10f, "cc"}};
#define FZ_N (259 + (int)(sizeof fz_extra / sizeof fz_extra[0]))

static aq_l2ctok *fz_tokenizer(void)
{
    static unsigned char img[4 + FZ_N * 16];
    unsigned char *p = img + 4;
    int32_t maxlen = 8;
    memcpy(img, &maxlen, 4);
    for (int i = 0; i < FZ_N; i++) {
        char name[8];
        const char *s = name;
        float score = 0;
        if (i < 3)
            s = i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>";
        else if (i < 259)
            snprintf(name, sizeof name, "<0x%02X>", i - 3);
        else
            s = fz_extra[i - 259].s, score = fz_extra[i - 259].score;
        int32_t n = (int32_t)strlen(s);
        memcpy(p, &score, 4);
        memcpy(p + 4, &n, 4);
        memcpy(p + 8, s, (size_t)n);
        p += 8 + n;
    }
    aq_l2ctok *t = NULL;
    aq_error err = {0};
    REQUIRE(aq_l2ctok_open_memory(img, (size_t)(p - img), FZ_N, "fuzz-vocab", &t, &err) == AQ_OK);
    return t;
}

/* Linear lookup for the reference encoder: the vocabulary is tiny. */
static int fz_lookup(const void *ctx, const char *s)
{
    const aq_l2ctok *t = ctx;
    for (int i = 0; i < t->v.n; i++)
        if (!strcmp(t->v.pieces[i], s)) return i;
    return -1;
}

static void fuzz_encode(const uint8_t *data, size_t size)
{
    if (size > 512) return; /* the reference is quadratic */
    aq_l2ctok *t = fz_tokenizer();
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0'; /* encode takes a C string: stop at the first NUL */
    size_t len = strlen(text), n = 0, cap = aq_l2ctok_encode_max(len);
    int *ids = malloc(cap * sizeof *ids), *want = malloc(cap * sizeof *want);
    aq_error err = {0};
    REQUIRE(aq_l2ctok_encode(t, text, 1, 0, ids, cap, &n, NULL, &err) == AQ_OK);
    REQUIRE(n == (size_t)aq_runc_encode((const char *const *)t->v.pieces, t->v.scores, fz_lookup, t, text, 1, 0, want) &&
            !memcmp(ids, want, n * sizeof *ids));
    char *dec = NULL;
    size_t dl = 0;
    REQUIRE(aq_l2ctok_decode_all(t, ids, n, &dec, &dl, &err) == AQ_OK);
    REQUIRE(dl == len && !memcmp(dec, text, len));
    free(dec);
    free(ids);
    free(want);
    free(text);
    aq_l2ctok_close(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_model(data, size);
    fuzz_vocab(data, size);
    fuzz_encode(data, size);
    return 0;
}
