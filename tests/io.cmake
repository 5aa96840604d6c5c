# io.cmake — tests of io/: tensors and dtypes, safetensors, atomic files,
# checkpoints (HF dirs, shards, config.json, llama2.c), the inspect CLI.

add_library(aq_malformed STATIC ${CMAKE_CURRENT_SOURCE_DIR}/malformed/malformed.c)
add_executable(aq_gen_malformed ${CMAKE_CURRENT_SOURCE_DIR}/malformed/gen_malformed.c)
target_link_libraries(aq_gen_malformed PRIVATE aq_malformed)

aq_test(NAME test_tensor SOURCES test_tensor.c LIBS aq_io)
aq_test(NAME test_safetensors SOURCES test_safetensors.c LIBS aq_io aq_malformed)
aq_test(NAME test_atomic_file SOURCES test_atomic_file.c LIBS aq_io)
aq_test(NAME test_checkpoint SOURCES test_checkpoint.c LIBS aq_io)
aq_test(NAME test_st_numpy SOURCES test_st_numpy.c LIBS aq_io)

# The inspect CLI on the malformed corpus: non-zero exit, message on stderr.
aq_script_test(NAME io_inspect_malformed LABELS unit
  COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/malformed/inspect_malformed.sh $<TARGET_FILE:aq_gen_malformed>)
# The inspect CLI on files it accepts: HF dirs, --json; and the real stories260K.bin.
aq_script_test(NAME io_inspect_cli LABELS unit
  COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/inspect_cli.sh)
aq_script_test(NAME io_inspect_shared_llama2c LABELS unit
  COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/inspect_shared_llama2c.sh)
