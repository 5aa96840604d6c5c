# End-to-end pipeline benchmark (bench/pipe_bench.sh): P = 1 vs 2 timings per
# phase and the quality of uniform / mixed allocations on stories260K.
# Run: cmake --build BUILD --target bench_pipeline
add_custom_target(bench_pipeline
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/pipe_bench.sh $<TARGET_FILE:adaquant_cli> ${AQ_SHARED_DIR}
  DEPENDS adaquant_cli USES_TERMINAL)
