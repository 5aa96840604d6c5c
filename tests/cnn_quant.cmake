# The CNN quantizer (src/cnn/cnn_quant.h, issue 17 item 3). The models test
# runs the zoo MNIST CNN at w8a8 and w2a8 (RTN vs AdaQuant); run its binary
# with `fashion` (from the source root) for the fashion-resnet figures.
aq_test(NAME test_cnn_quant_models SOURCES test_cnn_quant_models.c LIBS aq_cnn aq_adaquant aq_quant
  LABELS integration TIMEOUT 120
  ASSETS models/mnist-cnn/model.onnx data/mnist/t10k-images-idx3-ubyte.gz data/mnist/t10k-labels-idx1-ubyte.gz)
# The library parts on a tiny CNN built in the test (unit, < 1 s).
aq_test(NAME test_cnn_quant SOURCES test_cnn_quant.c test_cnn_build.c LIBS aq_cnn aq_adaquant aq_quant TIMEOUT 60)
