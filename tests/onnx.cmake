# onnx.cmake — tests of the ONNX reader (io/onnx_*.c, io/cnn_graph.c) and the
# idx image reader (io/idx.c).

# test_onnx_dump prints the graph the reader makes; test_onnx_read.py checks it
# against its own protobuf decoding and model.safetensors, and feeds it bad files.
add_executable(test_onnx_dump ${CMAKE_CURRENT_SOURCE_DIR}/test_onnx_dump.c)
target_link_libraries(test_onnx_dump PRIVATE aq_io)
aq_script_test(NAME onnx_read LABELS unit
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/scripts/test_onnx_read.py $<TARGET_FILE:test_onnx_dump>)

# test_idx_dump prints what io/idx.c reads; test_idx.py decodes the same MNIST and
# Fashion-MNIST files with gzip + struct and feeds it bad files.
add_executable(test_idx_dump ${CMAKE_CURRENT_SOURCE_DIR}/test_idx_dump.c)
target_link_libraries(test_idx_dump PRIVATE aq_io)
aq_script_test(NAME idx_read LABELS unit
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/scripts/test_idx.py $<TARGET_FILE:test_idx_dump>)

# test_onnx_qdq writes RTN-quantized QDQ versions of the shared models (io/onnx_write.c).
add_executable(test_onnx_qdq ${CMAKE_CURRENT_SOURCE_DIR}/test_onnx_qdq.c)
target_link_libraries(test_onnx_qdq PRIVATE aq_io aq_quant)
