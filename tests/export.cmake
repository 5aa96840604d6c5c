# export.cmake — `adaquant export --format gguf|gptq` (mpi/cmd_export.c, docs/EXPORT.md).
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

# aq_export_test(NAME DIR [MODE FLAG] [FIXTURES f;...] [ENV ...]): test_export_gguf.py
# in its own work directory, after the node-llama-cpp install.
function(aq_export_test name dir)
  cmake_parse_arguments(E "" "MODE" "FIXTURES;ENV" ${ARGN})
  aq_script_test(NAME ${name}
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_export_gguf.py
            ${CMAKE_CURRENT_BINARY_DIR}/${dir} ${AQ_LLAMACPP_NPM_DIR} ${E_MODE}
    LABELS integration TIMEOUT 1200)
  set(fixtures npm_llamacpp ${E_FIXTURES})
  set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED "${fixtures}")
  set_property(TEST ${name} APPEND PROPERTY ENVIRONMENT ${E_ENV}
    "AQ_TEST_ASSETS=models/stories260K/stories260K.bin:models/stories260K/tok512.bin:data/tinystories/validation.txt")
endfunction()
aq_export_test(export_gguf export_gguf)

# The K-quants (Q2_K..Q6_K) on a random 1-block HF Llama with 256-multiple rows
# (synth_model.py), against ggml_ref.py's K-quant weights in hf_ref.py's forward.
# Its own test so that it runs beside export_gguf; ~6 s.
aq_export_test(export_gguf_kquants export_gguf_k MODE --kquants)

# Byte-level BPE tokenizer.json vocabularies (tokenizer.ggml.model gpt2): the real
# Llama-3 and Qwen3 files of the npm_refs fixture (tests/hftok.cmake) on tiny
# random models of their vocabulary size; llama.cpp's tokenization against
# ours. ~12 s, mostly llama.cpp loading 128k/152k-token vocabularies.
aq_export_test(export_gguf_bpe export_gguf_bpe MODE --bpe FIXTURES npm_refs ENV ${AQ_HFTOK_ENV})

# `adaquant export OUTDIR --format gptq` (mpi/export_gptq.c, docs/EXPORT.md "GPTQ
# checkpoints"): tests/test_export_gptq.py's GPTQ reader, written from the doc,
# against adaquant's own dequantized weights (test_reader_dump, tests/reader.cmake)
# and OUTDIR as pipe_reader.py decodes it; one reduced quantize (~1.5 s CPU),
# the rest derived from it with NumPy. No node/npm needed. ~4 s CPU; the
# timeout leaves room for a loaded 2-core machine (measured 15-20 s wall at load 8).
aq_script_test(NAME export_gptq
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_export_gptq.py
          $<TARGET_FILE:test_reader_dump> ${CMAKE_CURRENT_BINARY_DIR}/export_gptq
  LABELS integration TIMEOUT 300)
set_property(TEST export_gptq APPEND PROPERTY ENVIRONMENT
  "AQ_TEST_ASSETS=models/stories260K/stories260K.bin:models/stories260K/tok512.bin:data/tinystories/validation.txt")
