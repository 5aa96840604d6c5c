# The data options of quantize and eval (docs/DATA.md) end to end
# (tests/test_data_cli.py): --calib/--eval sources in JSONL, pre-tokenized and
# glob form give the bytes and perplexities of the --text half split; changed
# data is refused; the default tokenizer of a model directory. Label
# integration: it runs once, not in every BLAS-kernel or sanitizer pass.
# Measured 21 s on a 2-core machine at load ~3, 32-43 s at load ~6.5 (3
# quantize runs of ~5 s with reduced settings, ~15 small runs < 1 s each); the
# timeout leaves a factor ~10, and each run has its own 300 s timeout.
aq_script_test(NAME data_cli LABELS integration TIMEOUT 400
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_data_cli.py ${CMAKE_CURRENT_BINARY_DIR}/data_cli)
