# AdaQuant layer optimizer benchmarks (owner: adaq). Run: bench_adaquant speed|synth|real|all
aq_bench(NAME bench_adaquant SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/bench_adaquant.c
         LIBS aq_adaquant aq_model aq_text aq_blas)
