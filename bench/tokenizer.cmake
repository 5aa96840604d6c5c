# Encoding throughput of the tokenizer.json backend (Llama-3 on TinyStories) vs
# the JS reference in the same run; the npm packages are those the npm_refs
# test fixture installs (tests/hftok.cmake).
aq_bench(NAME bench_tokenizer SOURCES bench_tokenizer.c LIBS aq_text aq_blas)
target_compile_definitions(bench_tokenizer PRIVATE AQ_BENCH_NPM_DIR="${CMAKE_BINARY_DIR}/npm"
  AQ_BENCH_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
