# The cooperative path (issue 14): Q = 1 vs Q = 2 on Llama-7B MLP shapes.
# Run bench/coop_bench.sh BUILD_DIR (a few minutes; figures in docs/COOP.md).
aq_bench(NAME bench_coop SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/bench_coop.c LIBS aq_dist aq_blas)
