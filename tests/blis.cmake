# BLAS kernel selection (src/blas/blas_kernel.h): the start-up choice of BLIS's
# sub-configuration, and `adaquant --version` naming it. Both tests clear or set
# BLIS_ARCH_TYPE themselves for each case, so they hold in every forced-kernel pass.
aq_test(NAME test_blas_kernel SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_blas_kernel.c LIBS aq_blas LABELS unit
        TIMEOUT 60) # a few fork/exec + bli_init, ~0.1 s each; 60 s leaves room on a loaded machine
aq_script_test(NAME blas_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/scripts/blas_cli.sh LABELS integration
               TIMEOUT 120) # 5 CLI starts and one 2-rank mpirun (~1 s each unloaded)
aq_script_test(NAME blas_report COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/scripts/blas_report.sh LABELS integration
               TIMEOUT 120) # two tiny single-rank quantize runs of stories260K (~4 s each unloaded)
