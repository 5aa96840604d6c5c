# BN folding/re-estimation, bias correction and bias tuning of quantized CNNs
# (src/cnn/cnn_tune.h, issue 17 item 3). Run the models binary with
# `fashion [rtn|ada] [ends8|all4] [nofold]` from the source root for the
# fashion-resnet figures (minutes).
aq_test(NAME test_cnn_tune_models SOURCES test_cnn_tune_models.c LIBS aq_cnn aq_adaquant aq_quant
  LABELS integration TIMEOUT 120
  ASSETS models/fashion-resnet/model.onnx models/mnist-cnn/model.onnx data/mnist/t10k-images-idx3-ubyte.gz data/mnist/t10k-labels-idx1-ubyte.gz)
# The library on a small residual CNN built in the test (unit, < 1 s).
find_package(Threads REQUIRED) # test_cnn_tune: threads stand in for the ranks of a split
aq_test(NAME test_cnn_tune SOURCES test_cnn_tune.c test_cnn_build.c LIBS aq_cnn aq_adaquant aq_quant Threads::Threads TIMEOUT 60)
