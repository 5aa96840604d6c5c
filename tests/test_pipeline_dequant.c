/* test_pipeline_dequant.c — helper of tests/test_pipeline.py: dumps adaquant's
 * OWN dequantisation of every quantized layer of OUTDIR/model.safetensors
 * (through the qlayer reader the engine uses, src/adaquant/qlayer.h) as raw
 * little-endian float32 files DUMPDIR/<prefix>.f32, so that the independent
 * numpy reader (tests/scripts/pipe_reader.py, written from docs/FORMAT.md) can
 * be compared with it bit for bit.
 * usage: test_pipeline_dequant OUTDIR DUMPDIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/checkpoint.h"
#include "../io/safetensors.h"
#include "../src/adaquant/qlayer.h"

static size_t d_in_of(const char *prefix, const aq_llama_config *c)
{
    if (strstr(prefix, "o_proj")) return (size_t)c->dim; /* n_heads * head_dim */
    if (strstr(prefix, "down_proj")) return (size_t)c->hidden_dim;
    return (size_t)c->dim;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s OUTDIR DUMPDIR\n", argv[0]);
        return 2;
    }
    char path[4096];
    aq_error err = {0};
    aq_llama_config cfg;
    snprintf(path, sizeof path, "%s/config.json", argv[1]);
    if (aq_llama_config_read_json(path, &cfg, &err) != AQ_OK) goto fail;
    snprintf(path, sizeof path, "%s/model.safetensors", argv[1]);
    aq_st_file *f;
    if (aq_st_open(path, &f, &err) != AQ_OK) goto fail;
    int n = 0;
    for (size_t i = 0; i < aq_st_meta_count(f); i++) {
        const char *k, *v;
        aq_st_meta_at(f, i, &k, &v);
        if (strncmp(k, "quant.", 6)) continue;
        aq_qlayer q;
        if (aq_qlayer_load_st(f, k + 6, d_in_of(k + 6, &cfg), &q, &err) != AQ_OK) goto fail;
        snprintf(path, sizeof path, "%s/%s.f32", argv[2], k + 6);
        FILE *o = fopen(path, "wb");
        size_t cnt = q.d_out * q.d_in;
        int ok = o && fwrite(q.weight, sizeof(float), cnt, o) == cnt;
        if (o) fclose(o);
        aq_qlayer_free(&q);
        if (!ok) {
            fprintf(stderr, "cannot write %s\n", path);
            return 1;
        }
        n++;
    }
    aq_st_close(f);
    printf("%d layers dumped\n", n);
    return n > 0 ? 0 : 1;
fail:
    fprintf(stderr, "test_pipeline_dequant: %s\n", err.msg);
    return 1;
}
