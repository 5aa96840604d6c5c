# CNN quantization benchmark (bench/cnn_bench.sh): `adaquant quantize MODEL.onnx`
# on fashion-resnet and the MNIST CNN at P = 1 and 2 against issue 17's targets,
# then the allocation sweep and its Pareto plots (SCRATCH/pareto-*.svg).
# Run: cmake --build BUILD --target bench_cnn
add_custom_target(bench_cnn
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cnn_bench.sh $<TARGET_FILE:adaquant_cli> ${AQ_SHARED_DIR}
  DEPENDS adaquant_cli USES_TERMINAL)
