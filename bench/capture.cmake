# Streaming capture vs one FP forward (bench/capture_bench.sh runs it).
aq_bench(NAME bench_capture SOURCES bench_capture.c LIBS aq_model aq_blas)
