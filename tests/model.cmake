# Tests of the transformer engine (src/model) and the text data (src/text/textdata).
aq_test(NAME test_model SOURCES test_model.c LIBS aq_model ASSETS models/stories260K/stories260K.bin)
aq_test(NAME test_model_eval SOURCES test_model_eval.c LIBS aq_model LABELS integration TIMEOUT 120
        ASSETS models/stories260K/stories260K.bin models/stories260K/tok512.bin data/tinystories/validation.txt)
aq_test(NAME test_model_capture SOURCES test_model_capture.c LIBS aq_model ASSETS models/stories260K/stories260K.bin)
# The same documents in other containers (JSONL, globs, pre-tokenized ids) are
# written by an independent Python writer (fixture, ~1 s) for test_textdata.
aq_script_test(NAME textdata_files LABELS unit TIMEOUT 120
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/scripts/write_data.py
          ${AQ_SHARED_DIR}/models/stories260K/tok512.bin 512 ${AQ_SHARED_DIR}/data/tinystories/validation.txt
          ${CMAKE_CURRENT_BINARY_DIR}/textdata)
set_tests_properties(textdata_files PROPERTIES FIXTURES_SETUP textdata_files)
aq_test(NAME test_textdata SOURCES test_textdata.c LIBS aq_text ASSETS models/stories260K/tok512.bin data/tinystories/validation.txt
        ARGS ${CMAKE_CURRENT_BINARY_DIR}/textdata)
set_tests_properties(test_textdata PROPERTIES FIXTURES_REQUIRED textdata_files)
aq_test(NAME test_model_quant SOURCES test_model_quant.c LIBS aq_model aq_adaquant ASSETS models/stories260K/stories260K.bin)
aq_test(NAME test_model_hf SOURCES test_model_hf.c LIBS aq_model ASSETS models/stories260K/stories260K.bin)
aq_script_test(NAME model_cli COMMAND /usr/bin/python3 ${CMAKE_SOURCE_DIR}/tests/scripts/model_cli.py TIMEOUT 300)
aq_test(NAME test_model_grad SOURCES test_model_grad.c LIBS aq_model aq_adaquant)
aq_test(NAME test_tune SOURCES test_tune.c LIBS aq_model aq_adaquant ASSETS models/stories260K/stories260K.bin)
# The architectures of config.json (Llama 1/2/3.x rope scalings, Mistral, Qwen2,
# Qwen3, SmolLM, biases, head_dim): the engine against tests/scripts/hf_ref.py,
# an independent float64 NumPy implementation, on random checkpoints written by
# tests/scripts/synth_model.py; plus the bad-input errors.
# ~35 Python runs of ~0.25 s: 10 s wall, so integration (once per CI run); the
# numbers were checked under the generic, haswell and skx BLIS kernels by hand.
aq_test(NAME test_arch SOURCES test_arch.c LIBS aq_model LABELS integration TIMEOUT 120)
# The backward pass on the variants (q/k norm, biases, head_dim, llama3 RoPE):
# gradients vs finite differences of the engine's forward (itself checked by
# test_arch against hf_ref.py).
aq_test(NAME test_arch_grad SOURCES test_arch_grad.c LIBS aq_model)
