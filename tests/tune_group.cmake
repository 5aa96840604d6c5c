# Global tuning of group-format layers (issue 16 item 1; src/model/tune_group.h).
# test_tune_group (unit): the per-group gradient against the float64 chain rule
# for every ggml type and wKgG, re-quantized values exactly stored and decoded
# (32-blocks from ggml's byte layout), and the tuner's gradient against
# five-point differences of the engine's KL on stories260K.
aq_test(NAME test_tune_group SOURCES test_tune_group.c LIBS aq_model aq_adaquant aq_quant
        ASSETS models/stories260K/stories260K.bin)
# tune_group_ranks (integration, once per CI run): quantize --out-format gguf with tuning
# gives the same model.gguf at P = 1 and P = 2, and moves the block tensors'
# bytes, and llama.cpp runs it (tests/test_tune_group_ranks.py: one tiny
# calibration, then --resume).
aq_script_test(NAME tune_group_ranks COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_tune_group_ranks.py
               ${CMAKE_CURRENT_BINARY_DIR}/tune_group_ranks ${AQ_LLAMACPP_NPM_DIR} LABELS integration TIMEOUT 300)
set_tests_properties(tune_group_ranks PROPERTIES FIXTURES_REQUIRED npm_llamacpp)
set_property(TEST tune_group_ranks APPEND PROPERTY ENVIRONMENT
  "AQ_TEST_ASSETS=models/stories260K/stories260K.bin:models/stories260K/tok512.bin:data/tinystories/validation.txt")
