# `adaquant quantize MODEL.onnx` and `adaquant export OUTDIR --format onnx-qdq`
# (mpi/cmd_quantize_cnn.c, mpi/pipeline/cnn_*.c) on the zoo MNIST CNN, by
# tests/scripts/test_cnn_pipe.py (docs/CNN.md "Tests"). All integration (they
# run once; not `mpi`, which the kernel passes select): each mode starts several MPI jobs (bad: five runs that end in
# MPI_Abort, ~1-2 s each of MPI start-up and teardown, no computation).
set(cnn_pipe_py /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/scripts/test_cnn_pipe.py)
foreach(mode bad ranks resume seq size)
  aq_script_test(NAME cnn_pipe_${mode} LABELS integration TIMEOUT 300
    COMMAND ${cnn_pipe_py} ${mode} ${CMAKE_CURRENT_BINARY_DIR}/cnn_pipe_${mode})
endforeach()
# The export in onnxruntime-node (installed by the npm_onnxruntime fixture of
# tests/onnx.cmake into the same directory; skips, 77, without npm).
aq_script_test(NAME cnn_pipe_ort LABELS integration TIMEOUT 300
  COMMAND ${cnn_pipe_py} ort ${CMAKE_CURRENT_BINARY_DIR}/cnn_pipe_ort ${CMAKE_BINARY_DIR}/npm-onnxruntime)
set_tests_properties(cnn_pipe_ort PROPERTIES FIXTURES_REQUIRED npm_onnxruntime)
