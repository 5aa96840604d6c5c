/* test_reader_dump.c — helper of tests/test_reader.py and tests/test_pipeline.py: dumps what adaquant's
 * OWN code makes of an OUTDIR, for the independent reader
 * (tests/scripts/pipe_reader.py, written from docs/FORMAT.md) to compare with
 * bit for bit:
 *  - DUMPDIR/<prefix>.f32: every quantized layer's dequantised weight, through
 *    the qlayer reader the engine loads OUTDIR with (src/adaquant/qlayer.h);
 *  - DUMPDIR/<prefix>.out.f32: for a layer with quantized activations, its
 *    activation fake-quantiser (stored a_scale, a_zero, a_bits) applied to the
 *    reader's inputs DUMPDIR/<prefix>.in.f32 (pipe_reader.py actq-inputs).
 *    Two engine paths exist and must agree: aq_fake_quant (quant.h, what the
 *    forward pass runs) and aq_qlayer_fake_quant_act (qlayer.h).
 * usage: test_reader_dump OUTDIR DUMPDIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/checkpoint.h"
#include "../io/safetensors.h"
#include "../src/adaquant/qlayer.h"
#include "../src/quant/quant.h"

static size_t d_in_of(const char *prefix, const aq_llama_config *c)
{
    if (strstr(prefix, "down_proj")) return (size_t)c->hidden_dim;
    /* o: n_heads * head_dim (head_dim may differ from hidden / heads: Qwen3) */
    if (strstr(prefix, "o_proj")) return (size_t)c->n_heads * (size_t)aq_llama_head_dim(c);
    return (size_t)c->dim; /* q/k/v/gate/up: hidden_size */
}

/* The whole file as floats (*n of them); NULL on error (message printed). */
static float *read_f32(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "test_reader_dump: cannot open %s\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *x = len > 0 && len % 4 == 0 ? malloc((size_t)len) : NULL;
    if (!x || fread(x, 1, (size_t)len, f) != (size_t)len) {
        fprintf(stderr, "test_reader_dump: %s: cannot read %ld bytes of float32\n", path, len);
        free(x);
        x = NULL;
    }
    fclose(f);
    *n = x ? (size_t)len / 4 : 0;
    return x;
}

/* Quantise DUMPDIR/<prefix>.in.f32 both ways; 0 = written, 1 = error. */
static int one_layer(const aq_qlayer *q, const char *prefix, const char *dumpdir)
{
    char path[4096];
    size_t n;
    snprintf(path, sizeof path, "%s/%s.in.f32", dumpdir, prefix);
    float *x = read_f32(path, &n);
    if (!x) return 1;
    float *y = malloc(n * sizeof *y), *y2 = malloc(n * sizeof *y2);
    int rc = !y || !y2;
    if (!rc) {
        aq_fake_quant(x, n, q->a_scale, q->a_zero, q->a_bits, y);
        memcpy(y2, x, n * sizeof *y2);
        aq_qlayer_fake_quant_act(y2, n, q->a_scale, q->a_zero, q->a_bits);
        for (size_t i = 0; i < n && !rc; i++)
            if (memcmp(&y[i], &y2[i], sizeof(float))) {
                fprintf(stderr, "%s: input %zu (%.9g): aq_fake_quant %.9g, aq_qlayer_fake_quant_act %.9g\n",
                        prefix, i, (double)x[i], (double)y[i], (double)y2[i]);
                rc = 1;
            }
    }
    snprintf(path, sizeof path, "%s/%s.out.f32", dumpdir, prefix);
    FILE *o = rc ? NULL : fopen(path, "wb");
    if (!rc && (!o || fwrite(y, sizeof(float), n, o) != n)) {
        fprintf(stderr, "test_reader_dump: cannot write %s\n", path);
        rc = 1;
    }
    if (o) fclose(o);
    free(x);
    free(y);
    free(y2);
    return rc;
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
    aq_st_file *f;
    snprintf(path, sizeof path, "%s/config.json", argv[1]);
    if (aq_llama_config_read_json(path, &cfg, &err) != AQ_OK) goto fail;
    snprintf(path, sizeof path, "%s/model.safetensors", argv[1]);
    if (aq_st_open(path, &f, &err) != AQ_OK) goto fail;
    int n = 0, n_act = 0, rc = 0;
    for (size_t i = 0; i < aq_st_meta_count(f) && !rc; i++) {
        const char *k, *v;
        aq_st_meta_at(f, i, &k, &v);
        if (strncmp(k, "quant.", 6)) continue;
        aq_qlayer q;
        if (aq_qlayer_load_st(f, k + 6, d_in_of(k + 6, &cfg), &q, &err) != AQ_OK) {
            aq_st_close(f);
            goto fail;
        }
        snprintf(path, sizeof path, "%s/%s.f32", argv[2], k + 6);
        FILE *o = fopen(path, "wb");
        size_t cnt = q.d_out * q.d_in;
        if (!o || fwrite(q.weight, sizeof(float), cnt, o) != cnt) {
            fprintf(stderr, "test_reader_dump: cannot write %s\n", path);
            rc = 1;
        }
        if (o) fclose(o);
        if (!rc && q.a_bits < 16) {
            snprintf(path, sizeof path, "%s/%s.in.f32", argv[2], k + 6);
            FILE *in = fopen(path, "rb");
            if (in) fclose(in);
            if (in) rc = one_layer(&q, k + 6, argv[2]);
            n_act += in != NULL;
        }
        n++;
        aq_qlayer_free(&q);
    }
    aq_st_close(f);
    if (!rc) printf("%d layers dumped, %d activation quantizers applied\n", n, n_act);
    return rc || n == 0;
fail:
    fprintf(stderr, "test_reader_dump: %s\n", err.msg);
    return 1;
}
