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

# test_onnx_qdq writes RTN-quantized QDQ versions of the shared models (io/onnx_write.c);
# test_onnx_qdq.py checks them against its own RTN, runs them in onnxruntime-node
# (installed once by the npm_onnxruntime fixture, ~50 MB) and compares the logits
# with a float64 NumPy evaluation. Skips (77) without node/npm/registry.
add_executable(test_onnx_qdq ${CMAKE_CURRENT_SOURCE_DIR}/test_onnx_qdq.c)
target_link_libraries(test_onnx_qdq PRIVATE aq_io aq_quant)
# The writer's refusals (fractional zero point, bad scale, code range, unknown or
# non-weight node, unwritable path), without onnxruntime: a unit test.
aq_script_test(NAME onnx_qdq_bad LABELS unit
  COMMAND $<TARGET_FILE:test_onnx_qdq> --bad ${AQ_SHARED_DIR}/models/fashion-resnet/model.onnx
          ${CMAKE_CURRENT_BINARY_DIR}/onnx_qdq_bad)
set(AQ_ORT_NPM_DIR ${CMAKE_BINARY_DIR}/npm-onnxruntime)
aq_script_test(NAME npm_onnxruntime LABELS integration TIMEOUT 900
  COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/scripts/npm_onnxruntime.sh ${AQ_ORT_NPM_DIR})
set_tests_properties(npm_onnxruntime PROPERTIES FIXTURES_SETUP npm_onnxruntime)
aq_script_test(NAME onnx_qdq_ort LABELS integration
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/scripts/test_onnx_qdq.py $<TARGET_FILE:test_onnx_qdq>
          ${AQ_ORT_NPM_DIR})
set_tests_properties(onnx_qdq_ort PROPERTIES FIXTURES_REQUIRED npm_onnxruntime)
