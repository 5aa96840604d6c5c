/* blas_kernel.c — the start-up choice of BLIS's kernel set and the report of
 * the one in use (blas_kernel.h).
 *
 * Why here: this is the component that owns the BLIS dependency (target
 * aq_blas, CMakeLists.txt). It sits at the bottom of src/ because every BLAS
 * user above it (src/adaquant, src/model, mpi/pipeline, the CLI, the benches, the
 * tests) links BLIS through it, and it needs nothing of MPI or of our other
 * components: the entry points call it before anything else touches BLAS.
 *
 * How BLIS 0.9.0 chooses (frame/base/bli_arch.c): bli_arch_query_id() runs
 * bli_arch_set_id() once per process (pthread_once). With BLIS_ARCH_TYPE unset
 * it takes bli_cpuid_query_id() (not exported by libblis.so); with it set, it
 * takes that number after checking that the sub-configuration was built, and
 * aborts if not. So the choice cannot be queried and then changed in one
 * process: we ask a forked child, which initialises its own copy of BLIS,
 * reports the id through a pipe and exits. The parent's BLIS stays untouched
 * until the first real BLAS call reads the BLIS_ARCH_TYPE we set.
 *
 * Process-wide state: `chosen` below records the one decision, written by
 * aq_blas_kernel_select during single-threaded start-up and only read after.
 * It mirrors BLIS's own once-per-process choice and is the only way to tell
 * later whether BLIS_ARCH_TYPE came from the user or from us. */
#define _GNU_SOURCE
#include "blas_kernel.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <blis.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

static struct {
    int done;                      /* aq_blas_kernel_select ran */
    int set;                       /* it set BLIS_ARCH_TYPE */
    char blis_choice[24];          /* what BLIS alone picks (when set) */
    char log[256];                 /* the line for the user, or "" */
} chosen;

int aq_blas_kernel_cpu_features(aq_x86_features *f)
{
    memset(f, 0, sizeof *f);
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 1;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (osxsave) {
        /* XCR0: bits 1-2 = SSE/YMM state, bits 5-7 = opmask/ZMM state. */
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        (void)hi;
        f->ymm_os = avx && (lo & 0x6u) == 0x6u;
        f->zmm_os = f->ymm_os && (lo & 0xE0u) == 0xE0u;
    }
    f->fma = fma;
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        f->avx2 = (b >> 5) & 1;
        f->avx512f = (b >> 16) & 1;
        f->avx512dq = (b >> 17) & 1;
        f->avx512bw = (b >> 30) & 1;
        f->avx512vl = (b >> 31) & 1;
    }
    return 1;
#else
    return 0;
#endif
}

/* The requirements are those BLIS itself checks before it picks these
 * sub-configurations (bli_cpuid_is_skx / _is_haswell). BLIS's zen2 and zen3
 * sub-configurations need the same instructions as haswell and run the same
 * haswell gemm micro-kernels with other cache blockings; on a Zen 5 the three
 * run sgemm at 77-90 GFLOP/s and skx 1.65x-1.95x faster than any of them
 * (docs/BLAS.md), so the rule stays one line per instruction set. */
const char *aq_blas_kernel_for_cpu(const aq_x86_features *f)
{
    int avx2 = f->ymm_os && f->avx2 && f->fma;
    if (avx2 && f->zmm_os && f->avx512f && f->avx512dq && f->avx512bw && f->avx512vl) return "skx";
    if (avx2) return "haswell";
    return NULL;
}

/* The arch_t id whose bli_arch_string is name in this BLIS build, or -1. The
 * ids differ across BLIS versions (zen3 was inserted in 0.8), so look it up. */
static int id_of(const char *name)
{
    for (int i = 0; i < (int)BLIS_NUM_ARCHS; i++)
        if (!strcmp(bli_arch_string((arch_t)i), name)) return i;
    return -1;
}

/* The id BLIS picks in a fresh copy of this process with BLIS_ARCH_TYPE set to
 * arch_type (NULL: unset), or -1 when it aborts (sub-configuration not built)
 * or the child cannot be run. */
static int probe(const char *arch_type)
{
    int fd[2];
    if (pipe(fd) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return -1;
    }
    if (pid == 0) {
        close(fd[0]);
        /* An abort is an answer here: keep BLIS's message and the core out of the user's way. */
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, STDERR_FILENO);
        unsetenv("BLIS_ARCH_DEBUG");
        if (arch_type)
            setenv("BLIS_ARCH_TYPE", arch_type, 1);
        else
            unsetenv("BLIS_ARCH_TYPE");
        if (arch_type) bli_init(); /* a forced id is checked against the kernel registry bli_init fills */
        int id = (int)bli_arch_query_id();
        _exit(write(fd[1], &id, sizeof id) == (ssize_t)sizeof id ? 0 : 1);
    }
    close(fd[1]);
    int id = -1;
    ssize_t r;
    do
        r = read(fd[0], &id, sizeof id);
    while (r < 0 && errno == EINTR);
    close(fd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (r != (ssize_t)sizeof id || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
    return id;
}

/* The decision, without the bookkeeping: sets BLIS_ARCH_TYPE and returns 1 when
 * BLIS would run generic and a faster built sub-configuration fits the CPU. */
static int decide(void)
{
    aq_x86_features f;
    if (!aq_blas_kernel_cpu_features(&f)) return 0; /* not x86-64: BLIS knows best */
    const char *best = aq_blas_kernel_for_cpu(&f);
    if (!best) return 0;                            /* nothing faster would run */
    int generic = id_of("generic"), own = probe(NULL);
    if (own < 0 || own != generic) return 0;        /* BLIS knows this CPU (or cannot say) */
    snprintf(chosen.blis_choice, sizeof chosen.blis_choice, "%s", bli_arch_string((arch_t)own));
    /* skx first; haswell also fits an AVX-512 CPU when a build lacks skx. */
    const char *candidates[2] = {best, strcmp(best, "haswell") ? "haswell" : NULL};
    for (int i = 0; i < 2 && candidates[i]; i++) {
        int id = id_of(candidates[i]);
        if (id < 0) continue;
        char num[16];
        snprintf(num, sizeof num, "%d", id);
        if (probe(num) != id) continue; /* not built into this BLIS */
        if (setenv("BLIS_ARCH_TYPE", num, 1) != 0) return 0;
        snprintf(chosen.log, sizeof chosen.log,
                 "BLIS %s does not recognise this CPU and would run its generic kernels; running its '%s' "
                 "kernels (%s; BLIS_ARCH_TYPE=%s, set BLIS_ARCH_TYPE to choose another)",
                 bli_info_get_version_str(), candidates[i],
                 strcmp(candidates[i], "skx") ? "AVX2 + FMA" : "AVX-512F/DQ/BW/VL", num);
        return 1;
    }
    snprintf(chosen.log, sizeof chosen.log,
             "BLIS %s runs its slow generic kernels on this CPU: this build has no sub-configuration for its %s",
             bli_info_get_version_str(), strcmp(best, "skx") ? "AVX2" : "AVX-512");
    return 0;
}

int aq_blas_kernel_select(char *log, size_t cap)
{
    if (!chosen.done) {
        chosen.done = 1;
        /* Set at all, even empty, is the user's: BLIS then reads it (strtol) and never cpuid. */
        const char *user = getenv("BLIS_ARCH_TYPE");
        if (!user) {
            chosen.set = decide();
        } else {
            char *end;
            long v = strtol(user, &end, 10);
            if (end == user || *end)
                snprintf(chosen.log, sizeof chosen.log,
                         "BLIS_ARCH_TYPE='%s' is not a number: BLIS %s reads it as %ld (%s); it takes the numeric "
                         "id of a sub-configuration (docs/BLAS.md)",
                         user, bli_info_get_version_str(), v,
                         v >= 0 && v < (long)BLIS_NUM_ARCHS ? bli_arch_string((arch_t)v) : "invalid");
        }
    }
    if (log && cap) snprintf(log, cap, "%s", chosen.log);
    return chosen.set;
}

void aq_blas_kernel_query(aq_blas_kernel *k)
{
    memset(k, 0, sizeof *k);
    bli_init(); /* a forced id is only valid once the kernel registry exists (see probe) */
    arch_t id = bli_arch_query_id();
    k->id = (int)id;
    snprintf(k->name, sizeof k->name, "%s", bli_arch_string(id));
    snprintf(k->version, sizeof k->version, "%s", bli_info_get_version_str());
    const char *env = getenv("BLIS_ARCH_TYPE");
    if (chosen.set) {
        k->source = AQ_BLAS_KERNEL_AUTO;
        snprintf(k->blis_choice, sizeof k->blis_choice, "%s", chosen.blis_choice);
    } else if (env) {
        k->source = AQ_BLAS_KERNEL_USER;
    } else {
        k->source = AQ_BLAS_KERNEL_BLIS;
    }
}

const char *aq_blas_kernel_source_text(aq_blas_kernel_source s)
{
    switch (s) {
    case AQ_BLAS_KERNEL_AUTO: return "auto-selected";
    case AQ_BLAS_KERNEL_USER: return "forced by BLIS_ARCH_TYPE";
    default: return "BLIS's own choice";
    }
}

const char *aq_blas_kernel_source_key(aq_blas_kernel_source s)
{
    switch (s) {
    case AQ_BLAS_KERNEL_AUTO: return "auto";
    case AQ_BLAS_KERNEL_USER: return "user";
    default: return "blis";
    }
}

void aq_blas_kernel_describe(char *buf, size_t cap)
{
    aq_blas_kernel k;
    aq_blas_kernel_query(&k);
    if (k.source == AQ_BLAS_KERNEL_AUTO)
        snprintf(buf, cap, "BLIS %s, kernel %s (%s: BLIS alone would run %s)", k.version, k.name,
                 aq_blas_kernel_source_text(k.source), k.blis_choice);
    else if (k.source == AQ_BLAS_KERNEL_USER)
        snprintf(buf, cap, "BLIS %s, kernel %s (%s=%s)", k.version, k.name, aq_blas_kernel_source_text(k.source),
                 getenv("BLIS_ARCH_TYPE"));
    else
        snprintf(buf, cap, "BLIS %s, kernel %s (%s)", k.version, k.name, aq_blas_kernel_source_text(k.source));
}
