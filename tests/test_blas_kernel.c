/* test_blas_kernel.c — the start-up choice of BLIS's kernel (src/blas/blas_kernel.h).
 *
 * 1. The rule, over every combination of the feature flags: a sub-configuration
 *    is chosen only when every instruction set it needs is there (and its
 *    register state saved by the OS), and the best such one is chosen.
 * 2. This CPU's features as the code reads them (cpuid + xgetbv) agree with the
 *    compiler's own cpuid (__builtin_cpu_supports, libgcc / compiler-rt).
 * 3. Fresh processes (this binary re-executed with --child, so BLIS chooses
 *    once, as in the CLI): with BLIS_ARCH_TYPE unset, on an x86-64 CPU with
 *    AVX2 + FMA the kernel in use is never `generic`; where BLIS alone runs
 *    `generic` the choice is skx (AVX-512F/DQ/BW/VL) or haswell, and marked
 *    auto-selected; where BLIS knows the CPU its choice stands. With
 *    BLIS_ARCH_TYPE set (even to `generic`, even empty) the user's id is kept.
 * Expectations come from __builtin_cpu_supports and from BLIS queried alone
 * in a forked child, never from the code under test. Assumes a BLIS built for
 * the whole x86_64 family (Debian's), which contains skx and haswell. */
#include <errno.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <blis.h>

#include "../src/blas/blas_kernel.h"
#include "testutil.h"

/* One line: "<name> <id> <source key> <set> <log non-empty>". */
static int child_main(void)
{
    char log[256];
    int set = aq_blas_kernel_select(log, sizeof log);
    aq_blas_kernel k;
    aq_blas_kernel_query(&k);
    printf("%s %d %s %d %d\n", k.name, k.id, aq_blas_kernel_source_key(k.source), set, log[0] != 0);
    return 0;
}

typedef struct result {
    char name[32], source[16];
    int id, set, logged;
} result;

/* Runs this binary with --child and BLIS_ARCH_TYPE = arch_type (NULL: unset)
 * in a fresh process image: BLIS there starts uninitialised, and the
 * start-up code runs exactly as in any other program. */
static int run_child(const char *arch_type, result *r)
{
    int fd[2];
    memset(r, 0, sizeof *r);
    if (pipe(fd) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], STDOUT_FILENO);
        if (arch_type)
            setenv("BLIS_ARCH_TYPE", arch_type, 1);
        else
            unsetenv("BLIS_ARCH_TYPE");
        execl("/proc/self/exe", "test_blas_kernel", "--child", (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    char buf[256];
    size_t n = 0;
    ssize_t got;
    while (n < sizeof buf - 1 && ((got = read(fd[0], buf + n, sizeof buf - 1 - n)) > 0 || (got < 0 && errno == EINTR)))
        if (got > 0) n += (size_t)got;
    buf[n] = 0;
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
    return sscanf(buf, "%31s %d %15s %d %d", r->name, &r->id, r->source, &r->set, &r->logged) == 5 ? 0 : -1;
}

/* What BLIS picks by itself here: a forked child (this process has not
 * initialised BLIS) with BLIS_ARCH_TYPE unset, asking BLIS directly. */
static int blis_alone(char *name, size_t cap)
{
    int fd[2];
    if (pipe(fd) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(fd[0]);
        unsetenv("BLIS_ARCH_TYPE");
        bli_init();
        const char *s = bli_arch_string(bli_arch_query_id());
        _exit(write(fd[1], s, strlen(s)) == (ssize_t)strlen(s) ? 0 : 1);
    }
    close(fd[1]);
    ssize_t got = read(fd[0], name, cap - 1);
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    name[got > 0 ? got : 0] = 0;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 && got > 0 ? 0 : -1;
}

static void check_rule(void)
{
    /* Known answers first: a Zen 5 / Skylake-X, a Xeon Phi (AVX-512F without
     * BW/VL), a Haswell, an AVX-only CPU, AVX-512 with the ZMM state off. */
    aq_x86_features zen5 = {1, 1, 1, 1, 1, 1, 1, 1}, knl = {1, 1, 1, 0, 0, 0, 1, 1};
    aq_x86_features hsw = {1, 1, 0, 0, 0, 0, 1, 0}, avx = {0, 0, 0, 0, 0, 0, 1, 0};
    aq_x86_features no_zmm = {1, 1, 1, 1, 1, 1, 1, 0};
    CHECK(!strcmp(aq_blas_kernel_for_cpu(&zen5), "skx"));
    CHECK(!strcmp(aq_blas_kernel_for_cpu(&knl), "haswell"));
    CHECK(!strcmp(aq_blas_kernel_for_cpu(&hsw), "haswell"));
    CHECK(aq_blas_kernel_for_cpu(&avx) == NULL);
    CHECK(!strcmp(aq_blas_kernel_for_cpu(&no_zmm), "haswell"));
    /* Every combination: needs of skx = all eight flags; of haswell = AVX2,
     * FMA, YMM state (BLIS's bli_cpuid_is_skx / _is_haswell). */
    for (unsigned m = 0; m < 256; m++) {
        aq_x86_features f = {m & 1, (m >> 1) & 1, (m >> 2) & 1, (m >> 3) & 1,
                             (m >> 4) & 1, (m >> 5) & 1, (m >> 6) & 1, (m >> 7) & 1};
        const char *want = m == 255 ? "skx" : (f.avx2 && f.fma && f.ymm_os) ? "haswell" : NULL;
        const char *got = aq_blas_kernel_for_cpu(&f);
        CHECK_MSG(want ? got && !strcmp(got, want) : got == NULL, "flags 0x%02x: chose %s, want %s", m,
                  got ? got : "none", want ? want : "none");
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--child")) return child_main();

    check_rule();
    /* The header's enum and the library's names agree (the ids BLIS_ARCH_TYPE takes). */
    CHECK(!strcmp(bli_arch_string(BLIS_ARCH_GENERIC), "generic"));
    char num[16];

#if defined(__x86_64__)
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); /* &&: 0 or 1 */
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                 __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    aq_x86_features f;
    CHECK(aq_blas_kernel_cpu_features(&f) == 1);
    /* libgcc/compiler-rt report a feature only when the OS saves its state. */
    CHECK((f.avx2 && f.ymm_os) == !!__builtin_cpu_supports("avx2"));
    CHECK((f.fma && f.ymm_os) == !!__builtin_cpu_supports("fma"));
    CHECK((f.avx512f && f.zmm_os) == !!__builtin_cpu_supports("avx512f"));
    CHECK((f.avx512dq && f.zmm_os) == !!__builtin_cpu_supports("avx512dq"));
    CHECK((f.avx512bw && f.zmm_os) == !!__builtin_cpu_supports("avx512bw"));
    CHECK((f.avx512vl && f.zmm_os) == !!__builtin_cpu_supports("avx512vl"));
    CHECK(!strcmp(bli_arch_string(BLIS_ARCH_HASWELL), "haswell"));
    CHECK(!strcmp(bli_arch_string(BLIS_ARCH_SKX), "skx"));
#else
    int avx2 = 0, avx512 = 0;
    aq_x86_features f;
    CHECK(aq_blas_kernel_cpu_features(&f) == 0);
#endif

    char alone[32];
    CHECK(blis_alone(alone, sizeof alone) == 0);
    result r;
    CHECK(run_child(NULL, &r) == 0);
    printf("CPU: AVX2+FMA %d, AVX-512F/DQ/BW/VL %d; BLIS alone: %s; in use: %s (%s)\n", avx2, avx512, alone, r.name,
           r.source);
    if (avx2) CHECK_MSG(strcmp(r.name, "generic") != 0, "an AVX2 + FMA CPU runs BLIS's generic kernels");
    if (!strcmp(alone, "generic") && avx2) {
        CHECK(!strcmp(r.name, avx512 ? "skx" : "haswell"));
        CHECK(!strcmp(r.source, "auto") && r.set == 1 && r.logged == 1);
    } else {
        CHECK_MSG(!strcmp(r.name, alone), "BLIS's own choice %s replaced by %s", alone, r.name);
        CHECK(!strcmp(r.source, "blis") && r.set == 0);
    }

    /* The user's BLIS_ARCH_TYPE wins, even when it names the slow kernels. */
    snprintf(num, sizeof num, "%d", (int)BLIS_ARCH_GENERIC);
    CHECK(run_child(num, &r) == 0);
    CHECK(!strcmp(r.name, "generic") && r.id == (int)BLIS_ARCH_GENERIC);
    CHECK(!strcmp(r.source, "user") && r.set == 0 && r.logged == 0);
#if defined(__x86_64__)
    if (avx2) {
        snprintf(num, sizeof num, "%d", (int)BLIS_ARCH_HASWELL);
        CHECK(run_child(num, &r) == 0);
        CHECK(!strcmp(r.name, "haswell") && !strcmp(r.source, "user") && r.set == 0);
    }
    /* Set but empty is set: BLIS reads it as id 0 (strtol) and never looks
     * at cpuid, so it is the user's choice, and the log says it is no number.
     * (Only queried here, no kernel runs, so any CPU can take id 0.) */
    if (run_child("0", &r) == 0) { /* only in builds that contain id 0 */
        CHECK(run_child("", &r) == 0);
        CHECK(r.id == 0 && !strcmp(r.source, "user") && r.set == 0 && r.logged == 1);
    }
#endif
    AQ_TEST_END();
}
