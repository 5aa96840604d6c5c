/* blas_kernel.h — which BLIS kernel set ("sub-configuration") this process runs,
 * and the start-up choice of a fast one when BLIS does not know the CPU.
 *
 * BLIS picks its sub-configuration once per process, at its first
 * initialisation, from cpuid or from the BLIS_ARCH_TYPE environment variable
 * (BLIS 0.9.0: the numeric id of its arch_t enum). BLIS 0.9.0 does not know
 * newer CPUs (AMD Zen 5, cpuid family 0x1A) and falls back to its `generic`
 * reference kernels, 4.3x slower than `skx` on a Zen 5. aq_blas_kernel_select,
 * called at start-up before anything calls BLAS, sets BLIS_ARCH_TYPE to the best
 * sub-configuration the CPU's instructions support in that case only. A
 * BLIS_ARCH_TYPE set by the user always wins; a CPU BLIS knows keeps BLIS's own
 * choice. See docs/BLAS.md. */
#ifndef AQ_BLAS_KERNEL_H
#define AQ_BLAS_KERNEL_H

#include <stddef.h>

/* Who chose the sub-configuration in use. */
typedef enum aq_blas_kernel_source {
    AQ_BLAS_KERNEL_BLIS = 0, /* BLIS's own choice from cpuid */
    AQ_BLAS_KERNEL_AUTO,     /* aq_blas_kernel_select (BLIS alone would run `generic`) */
    AQ_BLAS_KERNEL_USER      /* BLIS_ARCH_TYPE set in the environment */
} aq_blas_kernel_source;

/* The kernel in use, as aq_blas_kernel_query reports it. */
typedef struct aq_blas_kernel {
    char name[24];                /* sub-configuration: "skx", "haswell", "zen3", "generic", ... */
    int id;                       /* its arch_t id in this BLIS build (a BLIS_ARCH_TYPE value) */
    aq_blas_kernel_source source;
    char blis_choice[24];         /* AUTO only: what BLIS alone would run ("generic"); else "" */
    char version[24];             /* BLIS version string, "0.9.0" */
} aq_blas_kernel;

/* Call once at start-up, single-threaded, before any BLAS call (and before
 * MPI_Init, which may start threads). On x86-64, when BLIS_ARCH_TYPE is unset
 * and BLIS would fall back to `generic`, sets BLIS_ARCH_TYPE to the best
 * sub-configuration that the CPU supports and this BLIS build contains. Learns
 * what BLIS would pick from a short-lived child process, so this process's BLIS
 * stays uninitialised. Fills log (if non-NULL) with one line for the user when
 * it changed the choice or could not avoid `generic`, else with "". Returns 1 if
 * it set BLIS_ARCH_TYPE, 0 otherwise. Later calls repeat the first result. */
int aq_blas_kernel_select(char *log, size_t cap);

/* The sub-configuration this process runs, and who chose it. Initialises BLIS
 * (so call aq_blas_kernel_select first). */
void aq_blas_kernel_query(aq_blas_kernel *k);

/* "auto-selected", "forced by BLIS_ARCH_TYPE", "BLIS's own choice" (for people)
 * and "auto", "user", "blis" (for report.json). */
const char *aq_blas_kernel_source_text(aq_blas_kernel_source s);
const char *aq_blas_kernel_source_key(aq_blas_kernel_source s);

/* One line for `adaquant --version`, the benches and report.md, e.g.
 * "BLIS 0.9.0, kernel skx (auto-selected: BLIS alone would run generic)".
 * Calls aq_blas_kernel_query. */
void aq_blas_kernel_describe(char *buf, size_t cap);

/* The x86-64 features the choice rests on. A *_os flag says the OS saves the
 * register state (XCR0): without it the instructions fault. */
typedef struct aq_x86_features {
    int avx2, fma, avx512f, avx512dq, avx512bw, avx512vl;
    int ymm_os, zmm_os;
} aq_x86_features;

/* This CPU's features (cpuid + xgetbv). Returns 0 (and all flags 0) when not
 * built for x86-64. */
int aq_blas_kernel_cpu_features(aq_x86_features *f);

/* The best sub-configuration those features support: "skx" (AVX-512F/DQ/BW/VL
 * plus AVX2/FMA, ZMM state saved), else "haswell" (AVX2 + FMA, YMM state saved),
 * else NULL. Pure; exposed for the test. */
const char *aq_blas_kernel_for_cpu(const aq_x86_features *f);

#endif
