# Quantizer kernel and GPTQ throughput (prints figures vs a memcpy baseline).
aq_bench(NAME bench_quant
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/bench_quant.c ${CMAKE_SOURCE_DIR}/src/adaquant/gptq.c
  LIBS aq_quant aq_blas)
