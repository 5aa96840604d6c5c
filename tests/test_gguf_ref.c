/* test_gguf_ref.c — GGUF files from our writer, read by an independent
 * reader: @huggingface/gguf (npm, through tests/scripts/gguf_ref.mjs).
 *
 * Two files (default alignment 32, and general.alignment = 64), each with a
 * scalar of every metadata type, strings, arrays of several element types,
 * a string array with UTF-8 and empty entries, a nested array, and tensors of
 * seven ggml types with odd shapes. The JS reader must report every key with
 * its type and value as written, every tensor's name, shape, type and offset,
 * and the data section where the tensor bytes we supplied actually lie in the
 * file. The package's ggml type enum and bits-per-weight table must match
 * our type table. Skips (77) when the npm_refs fixture could not install the package. */
#include <jansson.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../io/gguf.h"
#include "testutil.h"

static const struct {
    const char *name;
    int type;
    uint32_t n_dims;
    int64_t ne[4];
} tensors[] = {
    {"token_embd.weight", AQ_GGML_Q8_0, 2, {64, 11}},
    {"blk.0.attn_q.weight", AQ_GGML_Q4_0, 2, {32, 3}},
    {"blk.0.ffn_down.weight", AQ_GGML_Q4_K, 2, {256, 5}},
    {"blk.0.ffn_up.weight", AQ_GGML_Q6_K, 3, {512, 1, 2}},
    {"output_norm.weight", AQ_GGML_F32, 1, {7}},
    {"blk.0.attn_norm.weight", AQ_GGML_F16, 1, {9}},
    {"rope_freqs.weight", AQ_GGML_BF16, 4, {3, 1, 1, 1}},
};
#define NT (sizeof tensors / sizeof tensors[0])

static const char *tokens[] = {"<unk>",           "<s>",    "</s>",        "",
                               "\xe2\x96\x81the", "<0x0A>", "\xe4\xb8\xad"};
#define NTOK (sizeof tokens / sizeof tokens[0])

static void build(aq_gguf_writer *w, uint32_t align, uint8_t data[NT][2048], aq_error *err)
{
    if (align) CHECK_OK(aq_gguf_set_u32(w, "general.alignment", align, err), err);
    uint8_t u8 = 200, bo = 1;
    int8_t i8 = -7;
    uint16_t u16 = 60000;
    int16_t i16 = -1234;
    int32_t i32 = -123456789;
    uint64_t u64 = 1234567890123456789ull;
    int64_t i64 = -1234567890123456789ll;
    double f64 = -2.718281828459045;
    CHECK_OK(aq_gguf_set_str(w, "general.architecture", "llama", err), err);
    CHECK_OK(aq_gguf_set_scalar(w, "t.u8", AQ_GGUF_UINT8, &u8, err), err);
    CHECK_OK(aq_gguf_set_scalar(w, "t.i8", AQ_GGUF_INT8, &i8, err), err);
    CHECK_OK(aq_gguf_set_scalar(w, "t.u16", AQ_GGUF_UINT16, &u16, err), err);
    CHECK_OK(aq_gguf_set_scalar(w, "t.i16", AQ_GGUF_INT16, &i16, err), err);
    CHECK_OK(aq_gguf_set_u32(w, "llama.context_length", 4000000000u, err), err);
    CHECK_OK(aq_gguf_set_scalar(w, "t.i32", AQ_GGUF_INT32, &i32, err), err);
    CHECK_OK(aq_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f, err), err);
    CHECK_OK(aq_gguf_set_scalar(w, "t.bool", AQ_GGUF_BOOL, &bo, err), err);
    CHECK_OK(aq_gguf_set_scalar(w, "t.u64", AQ_GGUF_UINT64, &u64, err), err);
    CHECK_OK(aq_gguf_set_scalar(w, "t.i64", AQ_GGUF_INT64, &i64, err), err);
    CHECK_OK(aq_gguf_set_scalar(w, "t.f64", AQ_GGUF_FLOAT64, &f64, err), err);
    CHECK_OK(aq_gguf_set_str(w, "t.utf8", "caf\xc3\xa9 \xe2\x96\x81 \xf0\x9f\x98\x80", err), err);
    CHECK_OK(aq_gguf_set_str_array(w, "tokenizer.ggml.tokens", tokens, NULL, NTOK, err), err);
    float scores[NTOK] = {0, 0, 0, -1.5f, -2.25f, 3.0f, -1e-3f};
    int32_t ttypes[NTOK] = {2, 3, 3, 1, 1, 6, 1};
    uint8_t bools[3] = {0, 1, 0};
    uint64_t big[2] = {UINT64_MAX, 1};
    CHECK_OK(aq_gguf_set_array(w, "tokenizer.ggml.scores", AQ_GGUF_FLOAT32, scores, NTOK, err),
             err);
    CHECK_OK(aq_gguf_set_array(w, "tokenizer.ggml.token_type", AQ_GGUF_INT32, ttypes, NTOK, err),
             err);
    CHECK_OK(aq_gguf_set_array(w, "t.bools", AQ_GGUF_BOOL, bools, 3, err), err);
    CHECK_OK(aq_gguf_set_array(w, "t.u64s", AQ_GGUF_UINT64, big, 2, err), err);
    int8_t nested[4] = {1, -2, 3, -4};
    uint64_t counts[3] = {1, 0, 3};
    CHECK_OK(aq_gguf_set_nested_array(w, "t.nested", AQ_GGUF_INT8, counts, 3, nested, err), err);
    for (size_t i = 0; i < NT; i++)
        CHECK_OK(aq_gguf_add_tensor(w, tensors[i].name, tensors[i].n_dims, tensors[i].ne,
                                    tensors[i].type, data[i], err),
                 err);
}

/* ---- comparison helpers: JSON from the JS reader vs what we wrote ---- */

static json_t *entry(json_t *meta, const char *key, int type, int sub)
{
    json_t *e = json_object_get(meta, key);
    int t = (int)json_integer_value(json_object_get(e, "type"));
    int ok =
        e && t == type && (sub < 0 || json_integer_value(json_object_get(e, "subType")) == sub);
    CHECK_MSG(ok, "key %s: JS reads type %d/%d, we wrote %d/%d", key, t,
              (int)json_integer_value(json_object_get(e, "subType")), type, sub);
    return ok ? json_object_get(e, "value") : NULL;
}

static int str_is(json_t *v, const char *want)
{
    return json_is_string(v) && !strcmp(json_string_value(v), want);
}

/* A BigInt printed as a decimal string; UINT64_MAX when absent. */
static uint64_t big_of(json_t *v)
{
    return json_is_string(v) ? strtoull(json_string_value(v), NULL, 10) : UINT64_MAX;
}

static void check_num(json_t *meta, const char *key, int type, double want)
{
    json_t *v = entry(meta, key, type, -1);
    CHECK_MSG(json_is_number(v) && json_number_value(v) == want, "key %s: JS %.17g, wrote %.17g",
              key, json_number_value(v), want);
}

static void check_big(json_t *meta, const char *key, int type, const char *want)
{
    json_t *v = entry(meta, key, type, -1);
    CHECK_MSG(str_is(v, want), "key %s: JS %s, wrote %s", key,
              json_is_string(v) ? json_string_value(v) : "?", want);
}

static void check_metadata(json_t *meta, uint32_t align)
{
    CHECK(str_is(entry(meta, "kv_count", AQ_GGUF_UINT64, -1), align ? "20" : "19"));
    CHECK(str_is(entry(meta, "tensor_count", AQ_GGUF_UINT64, -1), "7"));
    CHECK(json_integer_value(entry(meta, "version", AQ_GGUF_UINT32, -1)) == 3);
    if (align) check_num(meta, "general.alignment", AQ_GGUF_UINT32, align);
    CHECK(str_is(entry(meta, "general.architecture", AQ_GGUF_STRING, -1), "llama"));
    check_num(meta, "t.u8", AQ_GGUF_UINT8, 200);
    check_num(meta, "t.i8", AQ_GGUF_INT8, -7);
    check_num(meta, "t.u16", AQ_GGUF_UINT16, 60000);
    check_num(meta, "t.i16", AQ_GGUF_INT16, -1234);
    check_num(meta, "llama.context_length", AQ_GGUF_UINT32, 4000000000.0);
    check_num(meta, "t.i32", AQ_GGUF_INT32, -123456789);
    check_num(meta, "llama.attention.layer_norm_rms_epsilon", AQ_GGUF_FLOAT32, (double)1e-5f);
    CHECK(json_is_true(entry(meta, "t.bool", AQ_GGUF_BOOL, -1)));
    check_big(meta, "t.u64", AQ_GGUF_UINT64, "1234567890123456789");
    check_big(meta, "t.i64", AQ_GGUF_INT64, "-1234567890123456789");
    check_num(meta, "t.f64", AQ_GGUF_FLOAT64, -2.718281828459045);
    json_t *s = entry(meta, "t.utf8", AQ_GGUF_STRING, -1);
    CHECK(str_is(s, "caf\xc3\xa9 \xe2\x96\x81 \xf0\x9f\x98\x80"));
    json_t *tok = entry(meta, "tokenizer.ggml.tokens", AQ_GGUF_ARRAY, AQ_GGUF_STRING);
    CHECK(json_array_size(tok) == NTOK);
    for (size_t i = 0; i < NTOK && i < json_array_size(tok); i++)
        CHECK_MSG(str_is(json_array_get(tok, i), tokens[i]), "token %zu", i);
    json_t *sc = entry(meta, "tokenizer.ggml.scores", AQ_GGUF_ARRAY, AQ_GGUF_FLOAT32);
    float scores[NTOK] = {0, 0, 0, -1.5f, -2.25f, 3.0f, -1e-3f};
    int32_t ttypes[NTOK] = {2, 3, 3, 1, 1, 6, 1};
    json_t *tt = entry(meta, "tokenizer.ggml.token_type", AQ_GGUF_ARRAY, AQ_GGUF_INT32);
    CHECK(json_array_size(sc) == NTOK && json_array_size(tt) == NTOK);
    for (size_t i = 0; i < NTOK && i < json_array_size(sc) && i < json_array_size(tt); i++) {
        CHECK(json_number_value(json_array_get(sc, i)) == (double)scores[i]);
        CHECK(json_integer_value(json_array_get(tt, i)) == ttypes[i]);
    }
    json_t *bo = entry(meta, "t.bools", AQ_GGUF_ARRAY, AQ_GGUF_BOOL);
    CHECK(json_array_size(bo) == 3 && json_is_false(json_array_get(bo, 0)) &&
          json_is_true(json_array_get(bo, 1)));
    json_t *u = entry(meta, "t.u64s", AQ_GGUF_ARRAY, AQ_GGUF_UINT64);
    CHECK(json_array_size(u) == 2 && str_is(json_array_get(u, 0), "18446744073709551615") &&
          str_is(json_array_get(u, 1), "1"));
    json_t *n = entry(meta, "t.nested", AQ_GGUF_ARRAY, AQ_GGUF_ARRAY);
    CHECK(json_array_size(n) == 3 && json_array_size(json_array_get(n, 0)) == 1 &&
          json_array_size(json_array_get(n, 1)) == 0 && json_array_size(json_array_get(n, 2)) == 3);
    CHECK(json_integer_value(json_array_get(json_array_get(n, 2), 2)) == -4);
}

/* Tensor infos as JS read them, and our bytes at the place JS says they are. */
static void check_tensors(json_t *ref, uint8_t data[NT][2048], const uint8_t *file, size_t len)
{
    json_t *ts = json_object_get(ref, "tensors");
    unsigned long long base = big_of(json_object_get(ref, "tensorDataOffset"));
    CHECK(json_array_size(ts) == NT);
    for (size_t i = 0; i < NT && i < json_array_size(ts); i++) {
        json_t *t = json_array_get(ts, i), *shape = json_object_get(t, "shape");
        CHECK(str_is(json_object_get(t, "name"), tensors[i].name));
        CHECK(json_integer_value(json_object_get(t, "n_dims")) == tensors[i].n_dims);
        CHECK(json_integer_value(json_object_get(t, "dtype")) == tensors[i].type);
        CHECK(json_array_size(shape) == tensors[i].n_dims);
        for (uint32_t d = 0; d < tensors[i].n_dims && d < json_array_size(shape); d++)
            CHECK(big_of(json_array_get(shape, d)) == (uint64_t)tensors[i].ne[d]);
        unsigned long long off = big_of(json_object_get(t, "offset"));
        uint64_t nb = 0;
        aq_error err = {0};
        CHECK_OK(aq_ggml_nbytes(tensors[i].type, tensors[i].n_dims, tensors[i].ne, "t", &nb, &err),
                 &err);
        CHECK_MSG(base < len && off < len && base + off + nb <= len &&
                      !memcmp(file + base + off, data[i], (size_t)nb),
                  "tensor %s: our bytes are not at JS's data offset %llu + %llu", tensors[i].name,
                  base, off);
    }
}

/* Our ggml type table against the package's enum (names and ids) and its
 * bits-per-weight table. Q8_1 is left out of the sizes: the package counts
 * 4 + 4 + 32 bytes, ggml's block_q8_1 is two fp16 (d, s) and 32 int8 = 36. */
static void check_type_table(json_t *ref)
{
    json_t *names = json_object_get(ref, "ggmlTypes"), *bpw = json_object_get(ref, "bitsPerWeight");
    const char *name;
    json_t *id;
    CHECK(json_object_size(names) >= 30);
    json_object_foreach(names, name, id)
    {
        int i = (int)json_integer_value(id);
        if (i >= AQ_GGML_TYPE_COUNT)
            continue; /* newer than our table: rejected, see docs/GGUF.md */
        CHECK_MSG(aq_ggml_type_name(i) && !strcmp(aq_ggml_type_name(i), name),
                  "ggml type %d: JS %s, ours %s", i, name,
                  aq_ggml_type_name(i) ? aq_ggml_type_name(i) : "none");
    }
    for (int i = 0; i < AQ_GGML_TYPE_COUNT; i++) {
        const char *n = aq_ggml_type_name(i);
        if (!n) continue;
        CHECK_MSG(json_integer_value(json_object_get(names, n)) == i,
                  "ggml type %s: not id %d in JS", n, i);
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        double want = (double)aq_ggml_block_bytes(i) * 8 / (double)aq_ggml_block_size(i);
        if (i != AQ_GGML_Q8_1 && bpw) /* null: a later package version moved the table */
            CHECK_MSG(json_number_value(json_object_get(bpw, key)) == want,
                      "%s: JS %g bits/weight, ours %g", n,
                      json_number_value(json_object_get(bpw, key)), want);
    }
}

static int run_ref(const char *file, const char *out)
{
    const char *node = getenv("AQ_NODE"), *npm = getenv("AQ_NPM_DIR"),
               *src = getenv("AQ_SOURCE_DIR");
    char script[4096];
    snprintf(script, sizeof script, "%s/tests/scripts/gguf_ref.mjs", src ? src : ".");
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(out, "w", stdout)) _exit(126);
        execlp(node ? node : "node", node ? node : "node", script, npm, file, (char *)NULL);
        perror("exec node");
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void one_file(const char *dir, uint32_t align)
{
    char path[4096], out[4096];
    snprintf(path, sizeof path, "%s/ref%u.gguf", dir, align);
    snprintf(out, sizeof out, "%s/ref%u.json", dir, align);
    static uint8_t data[NT][2048];
    uint64_t seed = 99 + align;
    for (size_t i = 0; i < NT; i++)
        for (size_t k = 0; k < 2048; k++)
            data[i][k] = (uint8_t)(aq_test_urand(&seed) * 256);
    aq_error err = {0};
    aq_gguf_writer *w = NULL;
    CHECK_OK(aq_gguf_writer_new(&w, &err), &err);
    build(w, align, data, &err);
    CHECK_OK(aq_gguf_write(w, path, &err), &err);
    aq_gguf_writer_free(w);
    int rc = run_ref(path, out);
    CHECK_MSG(rc == 0, "node gguf_ref.mjs %s failed (exit %d)", path, rc);
    json_error_t je;
    json_t *ref = rc == 0 ? json_load_file(out, 0, &je) : NULL;
    CHECK_MSG(ref != NULL, "JS output %s unreadable", out);
    size_t len = 0;
    unsigned char *file = aq_test_read_file(path, &len);
    if (ref && file) {
        check_metadata(json_object_get(ref, "metadata"), align);
        check_tensors(ref, data, file, len);
        if (align == 0) check_type_table(ref);
    }
    json_decref(ref);
    free(file);
    unlink(path);
    unlink(out);
}

int main(void)
{
    const char *npm = getenv("AQ_NPM_DIR"), *node = getenv("AQ_NODE");
    char pkg[4096];
    snprintf(pkg, sizeof pkg, "%s/node_modules/@huggingface/gguf/dist/index.mjs", npm ? npm : "");
    if (!npm || access(pkg, R_OK) != 0) {
        printf("skip: @huggingface/gguf not installed in %s (the npm_refs fixture did not run or "
               "npm was unreachable)\n",
               npm ? npm : "(AQ_NPM_DIR unset)");
        return 77;
    }
    if (node && (!*node || strstr(node, "NOTFOUND"))) {
        printf("skip: node not found at configure time (AQ_NODE=%s)\n", node);
        return 77;
    }
    char *dir = aq_test_tmpdir("ggufref");
    one_file(dir, 0);
    one_file(dir, 64);
    rmdir(dir);
    free(dir);
    AQ_TEST_END();
}
