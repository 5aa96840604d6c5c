# export.cmake — `adaquant export --format gguf` (mpi/cmd_export.c, docs/EXPORT.md).
#   export_gguf  integration: stories260K exported as F32 and Q8_0 is loaded by
#                llama.cpp itself (node-llama-cpp@3.21.1's prebuilt CPU build,
#                installed once into ${AQ_LLAMACPP_NPM_DIR} by the fixture
#                test npm_llamacpp, ~85 MB:
#                optional dependencies such as the CUDA builds are omitted);
#                its log-probs on 64 tokens against the float64 reference
#                (tests/scripts/model_ref.py), its tokenization against ours, and
#                the bad-input errors. Skips (77) without node/npm/registry.
# TIMEOUT: ~14 s of work once installed (node runs of ~1.5 s, a reduced
# quantize, the NumPy references); the npm install (fixture npm_llamacpp)
# takes ~1 min the first time, bounded at 900 s.
set(AQ_LLAMACPP_NPM_DIR ${CMAKE_BINARY_DIR}/npm-llamacpp)
# The npm install as a fixture, so that the two tests below never install into
# the same directory at once (ctest -j); a no-op once installed.
aq_script_test(NAME npm_llamacpp
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_export_gguf.py
          ${CMAKE_CURRENT_BINARY_DIR}/export_gguf ${AQ_LLAMACPP_NPM_DIR} --install
  LABELS integration TIMEOUT 1200)
set_tests_properties(npm_llamacpp PROPERTIES FIXTURES_SETUP npm_llamacpp)
aq_script_test(NAME export_gguf
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_export_gguf.py
          ${CMAKE_CURRENT_BINARY_DIR}/export_gguf ${AQ_LLAMACPP_NPM_DIR}
  LABELS integration TIMEOUT 1200)
set_tests_properties(export_gguf PROPERTIES FIXTURES_REQUIRED npm_llamacpp)
set_property(TEST export_gguf APPEND PROPERTY ENVIRONMENT
  "AQ_TEST_ASSETS=models/stories260K/stories260K.bin:models/stories260K/tok512.bin:data/tinystories/validation.txt")

# The K-quants (Q2_K..Q6_K) on a random 1-block HF Llama with 256-multiple rows
# (synth_model.py), against ggml_ref.py's K-quant weights in hf_ref.py's forward.
# Its own test so that it runs beside export_gguf; ~6 s.
aq_script_test(NAME export_gguf_kquants
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_export_gguf.py
          ${CMAKE_CURRENT_BINARY_DIR}/export_gguf_k ${AQ_LLAMACPP_NPM_DIR} --kquants
  LABELS integration TIMEOUT 1200)
set_tests_properties(export_gguf_kquants PROPERTIES FIXTURES_REQUIRED npm_llamacpp)
set_property(TEST export_gguf_kquants APPEND PROPERTY ENVIRONMENT
  "AQ_TEST_ASSETS=models/stories260K/stories260K.bin:models/stories260K/tok512.bin:data/tinystories/validation.txt")

# Byte-level BPE tokenizer.json vocabularies (tokenizer.ggml.model gpt2): the real
# Llama-3 and Qwen3 files of the npm_refs fixture (tests/hftok.cmake) on tiny
# random models of their vocabulary size; llama.cpp's tokenization against
# ours. ~12 s, mostly llama.cpp loading 128k/152k-token vocabularies.
aq_script_test(NAME export_gguf_bpe
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_export_gguf.py
          ${CMAKE_CURRENT_BINARY_DIR}/export_gguf_bpe ${AQ_LLAMACPP_NPM_DIR} --bpe
  LABELS integration TIMEOUT 1200)
set_tests_properties(export_gguf_bpe PROPERTIES FIXTURES_REQUIRED "npm_llamacpp;npm_refs")
set_property(TEST export_gguf_bpe APPEND PROPERTY ENVIRONMENT ${AQ_HFTOK_ENV}
  "AQ_TEST_ASSETS=models/stories260K/stories260K.bin:models/stories260K/tok512.bin:data/tinystories/validation.txt")
