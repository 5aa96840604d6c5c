# Tests of ggml's block formats in the quantizer core (src/quant/ggml_*).
# test_ggml_blocks runs tests/scripts/ggml_ref.py (NumPy) as its reference.
aq_test(NAME test_ggml_blocks SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_ggml_blocks.c LIBS aq_quant LABELS unit)
# Against ggml's own C code (integration: installs node-llama-cpp once into the
# build tree and compiles its ggml-quants.c at test time; skipped without npm).
add_executable(test_ggml_blocks_llamacpp ${CMAKE_CURRENT_SOURCE_DIR}/test_ggml_blocks_llamacpp.c)
target_link_libraries(test_ggml_blocks_llamacpp PRIVATE aq_testutil aq_quant ${CMAKE_DL_LIBS})
aq_script_test(NAME test_ggml_blocks_llamacpp TIMEOUT 900
  COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/scripts/ggml_cbuild.sh ${AQ_LLAMACPP_NPM_DIR}
          $<TARGET_FILE:test_ggml_blocks_llamacpp>)
# One node-llama-cpp install serves this test and the export tests (export.cmake,
# included before this file, defines AQ_LLAMACPP_NPM_DIR and the fixture).
set_tests_properties(test_ggml_blocks_llamacpp PROPERTIES FIXTURES_REQUIRED npm_llamacpp)
