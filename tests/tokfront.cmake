# Tests of the tokenizer front end with tokenizer.json files (src/text/tokenizer.c,
# tok_stream.c) and of `adaquant tokenize` against the JS reference tokenizers.
# The llama2.c side is tested in tests/l2c.cmake; the tokenizer.json backend and
# the AQ_TOKJSON_* / AQ_HFTOK_ENV variables are in tests/hftok.cmake.

# Known answers on small inline tokenizer.json files: no npm needed.
aq_test(NAME test_tok_front_hf SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_tok_front_hf.c LIBS aq_text
        LABELS unit)
# The real Llama-2/Llama-3/Qwen3 files: their EOS, streaming decode on TinyStories.
add_test(NAME tok_front_hf_real COMMAND test_tok_front_hf ${AQ_TOKJSON_LLAMA2} ${AQ_TOKJSON_LLAMA3}
         ${AQ_TOKJSON_QWEN3})
set_tests_properties(tok_front_hf_real PROPERTIES LABELS integration TIMEOUT 300 SKIP_RETURN_CODE 77
  FIXTURES_REQUIRED npm_refs
  ENVIRONMENT "${AQ_TEST_ENV};${AQ_HFTOK_ENV};AQ_TEST_ASSETS=data/tinystories/validation.txt")
# `adaquant tokenize` vs the JS tokenizers: ids, --bos, --decode, model directory.
aq_script_test(NAME test_tokenize_cli_hf LABELS integration TIMEOUT 300
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenize_cli_hf.py)
set_property(TEST test_tokenize_cli_hf APPEND PROPERTY ENVIRONMENT "${AQ_HFTOK_ENV}")
set_property(TEST test_tokenize_cli_hf PROPERTY FIXTURES_REQUIRED npm_refs)
# `adaquant generate` and `eval` with a tokenizer.json (written from tok512.bin's
# pieces; with and without BOS) on stories260K: same text as the .bin, no-BOS rules.
aq_script_test(NAME test_generate_eval_hf LABELS integration TIMEOUT 300
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_generate_eval_hf.py)
