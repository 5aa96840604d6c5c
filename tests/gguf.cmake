# gguf.cmake — tests of the GGUF container (io/gguf*.c).
#   test_gguf      unit: known bytes from the spec, round trips, writer checks,
#                  atomic write failures (unwritable path, full disk).
#   test_gguf_bad  unit: every truncation of a valid file, corrupted fields.
#   gguf_ref   integration: a file from our writer read by @huggingface/gguf
#              (npm, installed by the npm_refs fixture of tests/hftok.cmake).
aq_test(NAME test_gguf SOURCES test_gguf.c LIBS aq_io)
aq_test(NAME test_gguf_bad SOURCES test_gguf_bad.c LIBS aq_io)

# Needs the npm_refs fixture (tests/hftok.cmake, tests/scripts/npm_refs.sh
# installs @huggingface/gguf with the JS tokenizers); skips (77) without it.
add_executable(test_gguf_ref ${CMAKE_CURRENT_SOURCE_DIR}/test_gguf_ref.c)
target_link_libraries(test_gguf_ref PRIVATE aq_testutil aq_io PkgConfig::JANSSON)
add_test(NAME gguf_ref COMMAND test_gguf_ref)
set_tests_properties(gguf_ref PROPERTIES LABELS integration TIMEOUT 120 SKIP_RETURN_CODE 77
  FIXTURES_REQUIRED npm_refs ENVIRONMENT "${AQ_TEST_ENV};${AQ_HFTOK_ENV};AQ_TEST_ASSETS=")

# gguf_native  integration: AdaQuant calibrated natively in llama.cpp's block
#              types and a wKgG group format (tests/test_gguf_native.py):
#              a reduced quantize under a byte budget, the independent reader
#              (ggml_ref.py for the blocks) against adaquant's dequantisation
#              bit for bit, eval --quantized, the GGUF export byte for byte,
#              and llama.cpp's log-probs (node-llama-cpp, fixture of export.cmake).
aq_script_test(NAME gguf_native
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_gguf_native.py
          $<TARGET_FILE:test_reader_dump> ${CMAKE_CURRENT_BINARY_DIR}/gguf_native ${AQ_LLAMACPP_NPM_DIR}
  LABELS integration TIMEOUT 300)
set_tests_properties(gguf_native PROPERTIES FIXTURES_REQUIRED npm_llamacpp)
set_property(TEST gguf_native APPEND PROPERTY ENVIRONMENT
  "AQ_TEST_ASSETS=models/stories260K/stories260K.bin:models/stories260K/tok512.bin:data/tinystories/validation.txt")

# gguf_kquant  integration: AdaQuant calibrated natively in the K-quants
#              Q2_K..Q6_K (tests/test_gguf_kquant.py): a 1-block dim-256 HF
#              Llama quantized with every K type pinned on some layer and
#              --out-format gguf; the independent reader bit for bit, eval
#              --quantized, the GGUF's K-quant rows byte for byte, and
#              llama.cpp's log-probs (node-llama-cpp, fixture of export.cmake).
#              ~10 s CPU (35 calibration tasks of 256-wide layers); 41 s wall
#              measured at load 18 on the 2 cores.
aq_script_test(NAME gguf_kquant
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_gguf_kquant.py
          $<TARGET_FILE:test_reader_dump> ${CMAKE_CURRENT_BINARY_DIR}/gguf_kquant ${AQ_LLAMACPP_NPM_DIR}
  LABELS integration TIMEOUT 300)
set_tests_properties(gguf_kquant PROPERTIES FIXTURES_REQUIRED npm_llamacpp)
set_property(TEST gguf_kquant APPEND PROPERTY ENVIRONMENT
  "AQ_TEST_ASSETS=models/stories260K/stories260K.bin:models/stories260K/tok512.bin:data/tinystories/validation.txt")

# gguf_budget  integration: quantize --out-format gguf --target-size BYTES
#              (tests/test_gguf_budget.py): model.gguf within the budget and
#              its size from its own layout equal to the report's, one byte
#              less re-solved under its bound, the smallest feasible size hit
#              exactly, options GGUF cannot store refused, llama.cpp's
#              log-probs against the float64 reader.
aq_script_test(NAME gguf_budget
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_gguf_budget.py
          ${CMAKE_CURRENT_BINARY_DIR}/gguf_budget ${AQ_LLAMACPP_NPM_DIR}
  LABELS integration TIMEOUT 300)
set_tests_properties(gguf_budget PROPERTIES FIXTURES_REQUIRED npm_llamacpp)
set_property(TEST gguf_budget APPEND PROPERTY ENVIRONMENT
  "AQ_TEST_ASSETS=models/stories260K/stories260K.bin:models/stories260K/tok512.bin:data/tinystories/validation.txt")

# gguf_refuse  integration (CLI only, no work runs): a --keep pin of a block
#              option on rows its block does not divide (q4_0 on stories260K's
#              172-wide down_proj, q4_k on 320-wide rows) and a K-quant menu
#              option no row fits are refused before any work, named
#              (tests/test_gguf_solve.py refuse).
aq_script_test(NAME gguf_refuse
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_gguf_solve.py refuse
          ${CMAKE_CURRENT_BINARY_DIR}/gguf_refuse
  LABELS integration TIMEOUT 120)
set_property(TEST gguf_refuse APPEND PROPERTY ENVIRONMENT
  "AQ_TEST_ASSETS=models/stories260K/stories260K.bin:models/stories260K/tok512.bin:data/tinystories/validation.txt")

# gguf_solve   integration: capture/calibrate/solve --out-format gguf write
#              quantize's model.gguf byte for byte at its predicted size;
#              eval --quantized FILE.gguf against a float64 reference built
#              from the file alone, and equal to eval of the OUTDIR
#              (tests/test_gguf_solve.py solve).
aq_script_test(NAME gguf_solve
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_gguf_solve.py solve
          ${CMAKE_CURRENT_BINARY_DIR}/gguf_solve
  LABELS integration TIMEOUT 300)
set_property(TEST gguf_solve APPEND PROPERTY ENVIRONMENT
  "AQ_TEST_ASSETS=models/stories260K/stories260K.bin:models/stories260K/tok512.bin:data/tinystories/validation.txt")
