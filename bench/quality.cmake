# Loss-column study for the bit allocation (owner: qual): network KL vs layer error
# on the result files of a quantize run. Run: bench_quality --work WORK [--eval-docs N]
aq_bench(NAME bench_quality SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/bench_quality.c
         LIBS aq_model aq_solver aq_text aq_io)
