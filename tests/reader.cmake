# The independent reader of the quantized output (docs/FORMAT.md is exact).
# tests/test_reader.py runs `adaquant quantize` with reduced settings for
# w4a16 asymmetric, a w8a8,w4a8 menu and a symmetric w4a16s,w3a16s menu, and
# checks tests/scripts/pipe_reader.py (written from docs/FORMAT.md alone)
# against adaquant: dequantised weights and activation quantizers bit for bit,
# evaluation perplexity within the tolerances argued in test_reader.py.

# adaquant's own dequantisation and activation quantizer, dumped for the reader
add_executable(test_reader_dump ${CMAKE_CURRENT_SOURCE_DIR}/test_reader_dump.c)
target_link_libraries(test_reader_dump PRIVATE adaquant)

# TIMEOUT: the work is ~19 CPU-seconds (three single-process quantize runs of
# 1-3 s CPU each, ~15 reader evaluations of ~0.6 s); measured 55-80 s wall on
# this 2-core machine at load average 14, so 240 s is 3x the worst seen.
aq_script_test(NAME reader_formats
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_reader.py
          $<TARGET_FILE:test_reader_dump> ${CMAKE_CURRENT_BINARY_DIR}/reader
  LABELS integration TIMEOUT 240)

# The whole quantize -> eval -> generate pipeline at P = 2 on a random Qwen2-shaped
# and a Llama-3.1-shaped checkpoint with the real tokenizer.json of each family
# (from the npm_refs fixture), checked by the independent reader, hf_ref.py and
# the JS reference tokenizers (test_hf_e2e.py says how).
aq_script_test(NAME hf_e2e
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_hf_e2e.py
          $<TARGET_FILE:test_reader_dump> ${CMAKE_CURRENT_BINARY_DIR}/hf_e2e
  LABELS integration TIMEOUT 600)
set_property(TEST hf_e2e APPEND PROPERTY ENVIRONMENT "${AQ_HFTOK_ENV};AQ_TEST_ASSETS=data/tinystories/validation.txt")
set_tests_properties(hf_e2e PROPERTIES FIXTURES_REQUIRED npm_refs)
