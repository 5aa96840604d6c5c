# The CNN engine (src/cnn, issue 17): every operator against float64 NumPy
# references written by tests/scripts/cnn_ref.py (one Python run), small
# networks batched vs one image at a time, bad graphs, and the evaluation
# helpers on a graph with a known answer.
aq_test(NAME test_cnn SOURCES test_cnn.c test_cnn_bad.c test_cnn_build.c LIBS aq_cnn aq_adaquant TIMEOUT 60)
# End to end through `adaquant eval MODEL.onnx` against a float64 NumPy
# interpreter of the shared models (tests/scripts/cnn_ref_models.py, graph
# decoded by tests/scripts/onnx_pb.py): MNIST's test_data_*.npz, its 99.52% on
# images 5000..9999 and the CLI's bad-input errors (~2 s CPU); fashion-resnet's
# exact 9122/10000 on Fashion-MNIST t10k (~7 s CPU: all 10000 images).
foreach(m mnist fashion)
  aq_script_test(NAME cnn_models_${m} LABELS integration TIMEOUT 300
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/scripts/cnn_ref_models.py ${m})
endforeach()
