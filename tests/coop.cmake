# The cooperative path (issue 14, mpi/pipeline/coop*.c): float64 references, the
# single-rank code, identical bytes across sub-grids, bad input. Q = 2 groups
# at -np 2 and -np 4 (a few seconds each).
aq_test(NAME test_coop SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_coop.c LIBS aq_dist NP 2
        LABELS mpi TIMEOUT 180)
add_test(NAME test_coop_np4 COMMAND ${AQ_MPIRUN} -np 4 $<TARGET_FILE:test_coop>)
set_tests_properties(test_coop_np4 PROPERTIES LABELS mpi TIMEOUT 180 SKIP_RETURN_CODE 77
  ENVIRONMENT "${AQ_TEST_ENV}")
aq_test_mpi_env(test_coop_np4 mpi)
# The cooperative path inside `adaquant quantize` (tests/coop_pipeline.py): every a16
# task forced onto sub-grids of 2 ranks at P = 2 and P = 5 (identical bytes; at P = 5
# the rank outside both groups runs single-rank tasks meanwhile),
# perplexity within 0.5% of the single-rank path; one w4a16 option (35 tasks; which
# options stay single-rank is test_plan's). Three quantize runs on stories260K and a
# refusal: integration (runs once; 12 s on an idle machine).
aq_script_test(NAME coop_pipeline LABELS integration mpi TIMEOUT 600
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/coop_pipeline.py ${CMAKE_CURRENT_BINARY_DIR}/coop_pipeline)
