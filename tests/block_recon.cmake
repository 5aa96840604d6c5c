# Block-wise tuning quality (issue 13, owner: btune; tests/test_block_recon.py):
# a tiny stories260K quantization untuned and block-tuned (P = 1), and the
# independent float64 reader (scripts/pipe_reader.py) measuring a lower KL to
# the FP model after block-wise tuning. 4.1 s of CPU; 18-65 s wall at load 20 (a capture,
# two quantizes, two float64 Python forwards): integration, once per CI run.
aq_script_test(NAME block_recon COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_block_recon.py
               ${CMAKE_CURRENT_BINARY_DIR}/block_recon LABELS integration TIMEOUT 600)
