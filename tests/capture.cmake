# The streaming capture (issue 13 item 2; tests/test_capture_stream.py): P = 1,
# 2, 4 give the same statistics bytes; a capture killed before block 3 resumes
# there (at another P), also from the older checkpoint generation when the
# newer is damaged; a capture killed between a block's statistics files
# (the background writer, AQ_FAIL_AT=capture_write) resumes at that block.
# 10 `adaquant capture` runs of ~1 s each on an idle machine (16-33 s at load
# 14-20): integration + mpi (once per CI run).
aq_script_test(NAME capture_stream COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_capture_stream.py
               ${CMAKE_CURRENT_BINARY_DIR}/capture_stream LABELS integration mpi TIMEOUT 300)
