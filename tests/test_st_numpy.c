/* test_st_numpy.c — interoperability with an independent encoder/decoder
 * (tests/fixtures/st_numpy.py: struct + json + numpy). numpy writes a file by
 * hand (several dtypes incl. F16/BF16, unaligned data): we must read the exact
 * bytes and convert to the float32 values numpy computed. Then we write a file
 * (every dtype, plus F16/BF16 narrowed by us from float32 sources including
 * ties, subnormals and overflow) and numpy must read it back bit-identically
 * and agree with our rounding. Skips (77) without numpy. */
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../io/safetensors.h"
#include "testutil.h"

static char dir[512];

static int run_script(const char *args)
{
    const char *src = getenv("AQ_SOURCE_DIR");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/fixtures/st_numpy.py %s", src ? src : ".",
             args);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void read_numpy_file(void)
{
    char args[1024], path[1024];
    snprintf(args, sizeof args, "write %s", dir);
    CHECK(run_script(args) == 0);
    snprintf(path, sizeof path, "%s/np.safetensors", dir);
    aq_error err = {0};
    aq_st_file *f = NULL;
    CHECK_OK(aq_st_open(path, &f, &err), &err);
    if (!f) return;
    CHECK(aq_st_meta_get(f, "writer") && !strcmp(aq_st_meta_get(f, "writer"), "numpy"));
    snprintf(path, sizeof path, "%s/manifest.txt", dir);
    FILE *man = fopen(path, "r");
    char name[128], dt[16], shape[128];
    int count = 0;
    while (man && fscanf(man, "%127s %15s %127s", name, dt, shape) == 3) {
        const aq_tensor_view *v = aq_st_find(f, name);
        CHECK_MSG(v != NULL, "tensor %s missing", name);
        if (!v) continue;
        count++;
        CHECK_MSG(!strcmp(aq_dtype_name(v->dtype), dt), "%s: dtype %s vs %s", name,
                  aq_dtype_name(v->dtype), dt);
        int nd = 0;
        for (char *s = strcmp(shape, "-") ? shape : NULL, *tok; s && (tok = strsep(&s, ","));)
            CHECK_MSG(nd < v->ndim && v->shape[nd++] == atoll(tok), "%s: shape mismatch", name);
        CHECK_MSG(nd == v->ndim, "%s: ndim %d vs %d", name, v->ndim, nd);
        size_t rl, fl;
        snprintf(path, sizeof path, "%s/%s.raw", dir, name);
        unsigned char *raw = aq_test_read_file(path, &rl);
        snprintf(path, sizeof path, "%s/%s.f32", dir, name);
        unsigned char *ref = aq_test_read_file(path, &fl);
        CHECK_MSG(raw && rl == v->nbytes && !memcmp(raw, v->data, rl), "%s: bytes differ", name);
        float *ours = NULL;
        CHECK_OK(aq_view_to_f32_alloc(v, &ours, &err), &err);
        CHECK_MSG(ref && ours && fl == 4 * (size_t)aq_view_numel(v) && !memcmp(ours, ref, fl),
                  "%s: float32 values differ from numpy's", name);
        free(ours);
        free(raw);
        free(ref);
    }
    if (man) fclose(man);
    CHECK_MSG(count == 14 && aq_st_count(f) == 14, "read %d of %zu tensors", count, aq_st_count(f));
    aq_st_close(f);
}

enum { NCONV = 6000 };

static void write_for_numpy(void)
{
    static float src[NCONV];
    static uint16_t h16[NCONV], b16[NCONV];
    static unsigned char bytes[AQ_DTYPE_COUNT][24];
    uint64_t s = 42;
    for (int i = 0; i < NCONV; i++) {
        uint32_t u = (uint32_t)(aq_test_u64(&s) >> 32);
        if (i % 3 == 0) { /* halfway between neighbours: the tie cases */
            uint16_t h = (uint16_t)(u & 0x7bfe) | (uint16_t)(u >> 16 & 0x8000);
            src[i] = (aq_f16_to_f32(h) + aq_f16_to_f32((uint16_t)(h + 1))) / 2;
        } else if (i % 3 == 1) { /* the range around half precision */
            u = (u & 0x807fffffu) | ((100u + (u >> 8) % 60u) << 23);
            memcpy(&src[i], &u, 4);
        } else { /* any finite float */
            if ((u & 0x7f800000u) == 0x7f800000u) u ^= 0x40000000u;
            memcpy(&src[i], &u, 4);
        }
        h16[i] = aq_f32_to_f16(src[i]);
        b16[i] = aq_f32_to_bf16(src[i]);
    }
    for (int d = 0; d < AQ_DTYPE_COUNT; d++)
        for (int k = 0; k < 24; k++)
            bytes[d][k] = (unsigned char)(aq_test_u64(&s) >> 56);
    for (int k = 0; k < 24; k++)
        bytes[AQ_BOOL][k] &= 1;
    for (int k = 1; k < 24; k += 2)
        bytes[AQ_F16][k] &= 0x7b; /* finite values only */
    for (int k = 1; k < 24; k += 2)
        bytes[AQ_BF16][k] &= 0x7f;
    for (int k = 3; k < 24; k += 4)
        bytes[AQ_F32][k] &= 0x7f;
    bytes[AQ_F32][2] &= 0x7f;
    for (int k = 7; k < 24; k += 8)
        bytes[AQ_F64][k] &= 0x7f;

    aq_error err = {0};
    aq_st_writer *w;
    CHECK_OK(aq_st_writer_new(&w, &err), &err);
    char path[1024];
    snprintf(path, sizeof path, "%s/manifest.txt", dir);
    FILE *man = fopen(path, "w");
    for (int d = 0; d < AQ_DTYPE_COUNT && man; d++) {
        char name[64];
        size_t es = aq_dtype_size((aq_dtype)d);
        int64_t sh[2] = {2, (int64_t)(24 / es / 2)};
        snprintf(name, sizeof name, "t.%s", aq_dtype_name((aq_dtype)d));
        CHECK_OK(aq_st_writer_add(w, name, (aq_dtype)d, 2, sh, bytes[d], &err), &err);
        fprintf(man, "%s %s 2,%lld\n", name, aq_dtype_name((aq_dtype)d), (long long)sh[1]);
        snprintf(path, sizeof path, "%s/%s.raw", dir, name);
        FILE *fp = fopen(path, "wb");
        CHECK(fp && fwrite(bytes[d], 1, 24 / es / 2 * 2 * es, fp) == 24 / es / 2 * 2 * es);
        if (fp) fclose(fp);
    }
    if (man) fclose(man);
    int64_t n[1] = {NCONV};
    CHECK_OK(aq_st_writer_add(w, "conv.f16", AQ_F16, 1, n, h16, &err), &err);
    CHECK_OK(aq_st_writer_add(w, "conv.bf16", AQ_BF16, 1, n, b16, &err), &err);
    CHECK_OK(aq_st_writer_meta(w, "writer", "adaquant", &err), &err);
    snprintf(path, sizeof path, "%s/conv.src", dir);
    FILE *fp = fopen(path, "wb");
    CHECK(fp && fwrite(src, sizeof(float), NCONV, fp) == NCONV);
    if (fp) fclose(fp);
    snprintf(path, sizeof path, "%s/ours.safetensors", dir);
    CHECK_OK(aq_st_writer_write(w, path, &err), &err);
    aq_st_writer_free(w);
    char args[2200];
    snprintf(args, sizeof args, "check %s %s", path, dir);
    CHECK(run_script(args) == 0);
}

int main(void)
{
    if (!aq_test_have_numpy()) {
        printf("SKIP: /usr/bin/python3 with numpy is not available\n");
        return 77;
    }
    char *d = aq_test_tmpdir("stnp");
    snprintf(dir, sizeof dir, "%s", d);
    read_numpy_file();
    write_for_numpy();
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (aq_test_failures == 0 && system(cmd) != 0) printf("note: could not remove %s\n", dir);
    free(d);
    AQ_TEST_END();
}
