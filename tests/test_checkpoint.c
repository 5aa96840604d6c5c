/* test_checkpoint.c — aq_ckpt_* over every source: an HF directory with
 * model.safetensors (+ unrelated files), a sharded directory (index order,
 * lazy shard opening, missing shard, tensor missing from its shard), a bare
 * safetensors file (by extension and sniffed), a llama2.c .bin (stories260K
 * when ../shared is present), and config.json reading (HF defaults, errors)
 * and writing (checked with jansson, field by field). */
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../io/checkpoint.h"
#include "../io/safetensors.h"
#include "testutil.h"

static char dir[512];

static const char *pth(const char *rel)
{
    static char buf[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, rel);
    return buf[k];
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    CHECK(fp && fputs(text, fp) >= 0);
    if (fp) fclose(fp);
}

/* A safetensors file with tensors names[i] = F32 [2] {base+i, -(base+i)}. */
static void write_st(const char *path, const char *const *names, int n, float base,
                     const char *meta)
{
    static float vals[16][2];
    aq_error err = {0};
    aq_st_writer *w;
    CHECK_OK(aq_st_writer_new(&w, &err), &err);
    int64_t sh[1] = {2};
    for (int i = 0; i < n; i++) {
        vals[i][0] = base + (float)i;
        vals[i][1] = -(base + (float)i);
        CHECK_OK(aq_st_writer_add(w, names[i], AQ_F32, 1, sh, vals[i], &err), &err);
    }
    if (meta) CHECK_OK(aq_st_writer_meta(w, "origin", meta, &err), &err);
    CHECK_OK(aq_st_writer_write(w, path, &err), &err);
    aq_st_writer_free(w);
}

static float first_value(aq_checkpoint *ck, const char *name)
{
    aq_error err = {0};
    const aq_tensor_view *v;
    float x[2] = {NAN, NAN};
    if (aq_ckpt_get(ck, name, &v, &err) != AQ_OK || aq_view_to_f32(v, x, &err) != AQ_OK) {
        fprintf(stderr, "get %s: %s\n", name, err.msg);
        return NAN;
    }
    return x[0];
}

static const aq_llama_config tiny = {.dim = 64,
                                     .hidden_dim = 172,
                                     .n_layers = 5,
                                     .n_heads = 8,
                                     .n_kv_heads = 4,
                                     .vocab_size = 512,
                                     .max_seq_len = 512,
                                     .norm_eps = 1e-5f,
                                     .rope_theta = 10000.0f,
                                     .tied_embeddings = 1};

static void test_config(void)
{
    aq_error err = {0};
    aq_llama_config c;
    CHECK_OK(aq_llama_config_write_json(pth("cfg.json"), &tiny, &err), &err);
    json_error_t je;
    json_t *j = json_load_file(pth("cfg.json"), 0, &je);
    CHECK(j != NULL);
    CHECK(!strcmp(json_string_value(json_array_get(json_object_get(j, "architectures"), 0)),
                  "LlamaForCausalLM"));
    CHECK(!strcmp(json_string_value(json_object_get(j, "model_type")), "llama"));
    CHECK(!strcmp(json_string_value(json_object_get(j, "torch_dtype")), "float32"));
    CHECK(!strcmp(json_string_value(json_object_get(j, "hidden_act")), "silu"));
    CHECK(json_integer_value(json_object_get(j, "hidden_size")) == 64);
    CHECK(json_integer_value(json_object_get(j, "intermediate_size")) == 172);
    CHECK(json_integer_value(json_object_get(j, "num_hidden_layers")) == 5);
    CHECK(json_integer_value(json_object_get(j, "num_attention_heads")) == 8);
    CHECK(json_integer_value(json_object_get(j, "num_key_value_heads")) == 4);
    CHECK(json_integer_value(json_object_get(j, "vocab_size")) == 512);
    CHECK(json_integer_value(json_object_get(j, "max_position_embeddings")) == 512);
    CHECK(json_real_value(json_object_get(j, "rms_norm_eps")) == 1e-5); /* the decimal, not 1e-5f */
    CHECK(json_real_value(json_object_get(j, "rope_theta")) == 10000.0);
    CHECK(json_is_true(json_object_get(j, "tie_word_embeddings")));
    json_decref(j);
    CHECK_OK(aq_llama_config_read_json(pth("cfg.json"), &c, &err), &err);
    CHECK(!memcmp(&c, &tiny, sizeof c));

    /* HF's own defaults for absent fields */
    write_text(pth("cfg2.json"),
               "{\"model_type\": \"llama\", \"hidden_size\": 2048, \"intermediate_size\": 5632,\n"
               " \"num_hidden_layers\": 22, \"num_attention_heads\": 32, \"vocab_size\": 32000}\n");
    CHECK_OK(aq_llama_config_read_json(pth("cfg2.json"), &c, &err), &err);
    CHECK(c.dim == 2048 && c.hidden_dim == 5632 && c.n_layers == 22 && c.n_heads == 32);
    CHECK(c.n_kv_heads == 32 && c.vocab_size == 32000 && c.max_seq_len == 2048);
    CHECK(c.norm_eps == 1e-6f && c.rope_theta == 10000.0f && c.tied_embeddings == 0);

    write_text(pth("cfg3.json"),
               "{\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
               " \"vocab_size\": 10}");
    CHECK(aq_llama_config_read_json(pth("cfg3.json"), &c, &err) == AQ_ERR_FORMAT &&
          strstr(err.msg, "intermediate_size") && strstr(err.msg, "cfg3.json"));
    write_text(pth("cfg4.json"), "{\"model_type\": \"bert\", \"hidden_size\": 64}");
    CHECK(aq_llama_config_read_json(pth("cfg4.json"), &c, &err) == AQ_ERR_FORMAT &&
          strstr(err.msg, "bert"));
    write_text(pth("cfg5.json"), "{\"hidden_size\": 64,\n \"oops\"}");
    CHECK(aq_llama_config_read_json(pth("cfg5.json"), &c, &err) == AQ_ERR_FORMAT &&
          strstr(err.msg, "line 2"));
    write_text(pth("cfg6.json"),
               "{\"hidden_size\": 60, \"intermediate_size\": 8, \"num_hidden_layers\": 1,"
               " \"num_attention_heads\": 8, \"vocab_size\": 10}");
    CHECK(aq_llama_config_read_json(pth("cfg6.json"), &c, &err) == AQ_ERR_FORMAT &&
          strstr(err.msg, "heads"));
    CHECK(aq_llama_config_read_json(pth("none.json"), &c, &err) == AQ_ERR_NOTFOUND);
    for (int i = 1; i <= 6; i++) {
        char n[32];
        snprintf(n, sizeof n, i == 1 ? "cfg.json" : "cfg%d.json", i);
        unlink(pth(n));
    }
}

static void test_hf_dir(void)
{
    aq_error err = {0};
    CHECK(mkdir(pth("hf"), 0755) == 0);
    static const char *const names[] = {"model.norm.weight", "model.embed_tokens.weight",
                                        "lm_head.weight"};
    write_st(pth("hf/model.safetensors"), names, 3, 10.0f, "unit");
    CHECK_OK(aq_llama_config_write_json(pth("hf/config.json"), &tiny, &err), &err);
    write_text(pth("hf/quantization.json"), "{\"layers\": []}");
    write_text(pth("hf/README.md"), "not a model\n");
    aq_checkpoint *ck = NULL;
    CHECK_OK(aq_ckpt_open(pth("hf"), &ck, &err), &err);
    if (!ck) return;
    CHECK(aq_ckpt_get_kind(ck) == AQ_CKPT_HF_DIR && !strcmp(aq_ckpt_path(ck), pth("hf")));
    CHECK(aq_ckpt_count(ck) == 3 && !strcmp(aq_ckpt_name(ck, 0), "model.norm.weight") &&
          !strcmp(aq_ckpt_name(ck, 2), "lm_head.weight") && aq_ckpt_name(ck, 3) == NULL);
    CHECK(first_value(ck, "lm_head.weight") == 12.0f &&
          first_value(ck, "model.norm.weight") == 10.0f);
    const aq_tensor_view *v;
    CHECK(aq_ckpt_get(ck, "nope", &v, &err) == AQ_ERR_NOTFOUND && strstr(err.msg, "'nope'"));
    aq_llama_config c;
    CHECK_OK(aq_ckpt_llama_config(ck, &c, &err), &err);
    CHECK(!memcmp(&c, &tiny, sizeof c));
    CHECK(aq_ckpt_meta_get(ck, "origin") && !strcmp(aq_ckpt_meta_get(ck, "origin"), "unit"));
    CHECK(aq_ckpt_meta_count(ck) == 1);
    aq_ckpt_close(ck);

    /* the bare file: by extension, and sniffed without one; no config */
    CHECK_OK(aq_ckpt_open(pth("hf/model.safetensors"), &ck, &err), &err);
    CHECK(ck && aq_ckpt_get_kind(ck) == AQ_CKPT_SAFETENSORS && aq_ckpt_count(ck) == 3);
    CHECK(ck && aq_ckpt_llama_config(ck, &c, &err) == AQ_ERR_NOTFOUND);
    aq_ckpt_close(ck);
    CHECK(rename(pth("hf/model.safetensors"), pth("hf/weights")) == 0);
    CHECK_OK(aq_ckpt_open(pth("hf/weights"), &ck, &err), &err);
    CHECK(ck && aq_ckpt_get_kind(ck) == AQ_CKPT_SAFETENSORS &&
          first_value(ck, "lm_head.weight") == 12.0f);
    aq_ckpt_close(ck);
    /* a directory with neither file */
    CHECK(aq_ckpt_open(pth("hf"), &ck, &err) == AQ_ERR_NOTFOUND &&
          strstr(err.msg, "model.safetensors"));
    CHECK(aq_ckpt_open(pth("does-not-exist"), &ck, &err) == AQ_ERR_NOTFOUND);
    /* a config.json without the model is still unusable for the config */
    unlink(pth("hf/weights"));
    unlink(pth("hf/config.json"));
    unlink(pth("hf/quantization.json"));
    unlink(pth("hf/README.md"));
    rmdir(pth("hf"));
}

static void write_index(const char *path, const char *extra)
{
    char text[2048];
    snprintf(text, sizeof text,
             "{\"metadata\": {\"total_size\": 32},\n \"weight_map\": {\n"
             "  \"d\": \"model-00002-of-00002.safetensors\",\n"
             "  \"a\": \"model-00001-of-00002.safetensors\",\n"
             "  \"c\": \"model-00002-of-00002.safetensors\",\n"
             "  \"b\": \"model-00001-of-00002.safetensors\"%s\n }}\n",
             extra);
    write_text(path, text);
}

static void test_sharded(void)
{
    aq_error err = {0};
    CHECK(mkdir(pth("sh"), 0755) == 0);
    static const char *const s1[] = {"a", "b"}, *const s2[] = {"c", "d"};
    write_st(pth("sh/model-00001-of-00002.safetensors"), s1, 2, 1.0f, "shard1");
    write_st(pth("sh/model-00002-of-00002.safetensors"), s2, 2, 3.0f, "shard2");
    write_index(pth("sh/model.safetensors.index.json"), "");
    aq_checkpoint *ck = NULL;
    CHECK_OK(aq_ckpt_open(pth("sh"), &ck, &err), &err);
    if (!ck) return;
    CHECK(aq_ckpt_get_kind(ck) == AQ_CKPT_HF_SHARDED && aq_ckpt_count(ck) == 4);
    const char *order[] = {"d", "a", "c", "b"}; /* index order */
    for (int i = 0; i < 4; i++)
        CHECK(!strcmp(aq_ckpt_name(ck, (size_t)i), order[i]));
    /* lazy: corrupt shard 2 after open; shard 1's tensors still load */
    write_text(pth("sh/model-00002-of-00002.safetensors"), "garbage");
    CHECK(first_value(ck, "a") == 1.0f && first_value(ck, "b") == 2.0f);
    const aq_tensor_view *v;
    CHECK(aq_ckpt_get(ck, "c", &v, &err) == AQ_ERR_FORMAT &&
          strstr(err.msg, "model-00002-of-00002"));
    aq_ckpt_close(ck);
    write_st(pth("sh/model-00002-of-00002.safetensors"), s2, 2, 3.0f, "shard2");
    CHECK_OK(aq_ckpt_open(pth("sh"), &ck, &err), &err);
    if (!ck) return;
    CHECK(first_value(ck, "d") == 4.0f && first_value(ck, "c") == 3.0f);
    CHECK(first_value(ck, "b") == 2.0f && first_value(ck, "a") == 1.0f);
    CHECK(aq_ckpt_meta_get(ck, "origin") && !strcmp(aq_ckpt_meta_get(ck, "origin"), "shard1"));
    aq_llama_config c;
    CHECK(aq_ckpt_llama_config(ck, &c, &err) == AQ_ERR_NOTFOUND && strstr(err.msg, "config.json"));
    aq_ckpt_close(ck);

    /* a tensor listed in the index but absent from its shard */
    write_index(pth("sh/model.safetensors.index.json"),
                ",\n  \"e\": \"model-00001-of-00002.safetensors\"");
    CHECK_OK(aq_ckpt_open(pth("sh"), &ck, &err), &err);
    if (!ck) return;
    CHECK(aq_ckpt_get(ck, "e", &v, &err) == AQ_ERR_NOTFOUND && strstr(err.msg, "'e'") &&
          strstr(err.msg, "model-00001-of-00002.safetensors"));
    CHECK(aq_ckpt_get(ck, "zz", &v, &err) == AQ_ERR_NOTFOUND);
    aq_ckpt_close(ck);

    /* a shard referenced but absent */
    write_index(pth("sh/model.safetensors.index.json"),
                ",\n  \"f\": \"model-00003-of-00003.safetensors\"");
    CHECK(aq_ckpt_open(pth("sh"), &ck, &err) == AQ_ERR_NOTFOUND &&
          strstr(err.msg, "model-00003-of-00003") && strstr(err.msg, "'f'"));
    /* a broken index */
    write_text(pth("sh/model.safetensors.index.json"), "{\"weight_map\": [1]}");
    CHECK(aq_ckpt_open(pth("sh"), &ck, &err) == AQ_ERR_FORMAT && strstr(err.msg, "weight_map"));
    write_text(pth("sh/model.safetensors.index.json"),
               "{\"weight_map\": {\"a\": \"../x.safetensors\"}}");
    CHECK(aq_ckpt_open(pth("sh"), &ck, &err) == AQ_ERR_FORMAT &&
          strstr(err.msg, "shard file name"));
    write_text(pth("sh/model.safetensors.index.json"), "{\"weight_map\": {");
    CHECK(aq_ckpt_open(pth("sh"), &ck, &err) == AQ_ERR_FORMAT && strstr(err.msg, "index.json"));
    unlink(pth("sh/model.safetensors.index.json"));
    unlink(pth("sh/model-00001-of-00002.safetensors"));
    unlink(pth("sh/model-00002-of-00002.safetensors"));
    rmdir(pth("sh"));
}

static void test_llama2c(void)
{
    aq_error err = {0};
    aq_checkpoint *ck = NULL;
    write_text(pth("junk.bin"), "this is not a model");
    CHECK(aq_ckpt_open(pth("junk.bin"), &ck, &err) != AQ_OK && ck == NULL && err.msg[0]);
    unlink(pth("junk.bin"));

    const char *shared = getenv("AQ_SHARED_DIR");
    char p[1024];
    snprintf(p, sizeof p, "%s/models/stories260K/stories260K.bin", shared ? shared : "../shared");
    if (access(p, R_OK) != 0) {
        printf("note: %s absent, llama2.c checks skipped\n", p);
        return;
    }
    err = (aq_error){0};
    CHECK_OK(aq_ckpt_open(p, &ck, &err), &err);
    if (!ck) return;
    CHECK(aq_ckpt_get_kind(ck) == AQ_CKPT_LLAMA2C);
    int64_t params = 0;
    for (size_t i = 0; i < aq_ckpt_count(ck); i++) {
        const aq_tensor_view *v;
        aq_status st = aq_ckpt_get(ck, aq_ckpt_name(ck, i), &v, &err);
        CHECK_MSG(st == AQ_OK, "%s", err.msg);
        if (st == AQ_OK) params += aq_view_numel(v);
    }
    CHECK_MSG(params == 260032, "stories260K has %lld parameters", (long long)params);
    aq_llama_config c;
    CHECK_OK(aq_ckpt_llama_config(ck, &c, &err), &err);
    CHECK(c.dim == 64 && c.hidden_dim == 172 && c.n_layers == 5 && c.n_heads == 8 &&
          c.n_kv_heads == 4 && c.vocab_size == 512 && c.tied_embeddings);
    CHECK(aq_ckpt_meta_count(ck) == 0 && aq_ckpt_meta_get(ck, "x") == NULL);
    aq_ckpt_close(ck);
}

int main(void)
{
    char *d = aq_test_tmpdir("ckpt");
    snprintf(dir, sizeof dir, "%s", d);
    test_config();
    test_hf_dir();
    test_sharded();
    test_llama2c();
    rmdir(dir);
    free(d);
    AQ_TEST_END();
}
