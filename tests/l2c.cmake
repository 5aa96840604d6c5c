# Tests of the llama2.c importer (io/llama2c.c), the tokenizer (src/text/tokenizer.c)
# and `adaquant convert` (mpi/cmd_convert.c).
aq_test(NAME test_llama2c SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_llama2c.c LIBS aq_io LABELS unit
        ASSETS models/stories260K/stories260K.bin models/stories260K/tok512.bin)
aq_test(NAME test_tokenizer SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizer.c LIBS aq_text LABELS unit
        ASSETS models/stories260K/tok512.bin data/tinystories/validation.txt)
# The independent Python port of run.c's tokenizer vs the C tokenizer.
aq_script_test(NAME tok_reference LABELS unit
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/scripts/tok_reference.py
          $<TARGET_FILE:test_tokenizer> ${AQ_SHARED_DIR}/models/stories260K/tok512.bin 512
          ${AQ_SHARED_DIR}/data/tinystories/validation.txt 1000)
# `adaquant convert`: CLI errors, then an independent numpy reader of the .bin and
# of the written safetensors/config (bit-identical), and the RoPE direction.
aq_script_test(NAME l2c_convert_check LABELS unit
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/scripts/l2c_convert_check.py
          ${AQ_SHARED_DIR}/models/stories260K/stories260K.bin ${AQ_SHARED_DIR}/models/stories260K/tok512.bin)
# `adaquant tokenize` on the whole validation text (stories260K and a
# character-level vocabulary) vs tok_reference.py; --decode round trip; errors.
aq_script_test(NAME test_tokenize_cli LABELS integration TIMEOUT 300
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenize_cli.py)
