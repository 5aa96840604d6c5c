# Tests of ggml's block formats in the quantizer core (src/quant/ggml_*).
# test_ggml_blocks runs tests/scripts/ggml_ref.py (NumPy) as its reference.
aq_test(NAME test_ggml_blocks SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_ggml_blocks.c LIBS aq_quant LABELS unit)
