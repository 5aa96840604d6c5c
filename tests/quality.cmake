# Network-level sensitivity (src/model/sensitivity.h): KL(FP || one layer quantized)
# against a direct two-forward float64 computation, on a synthetic model and stories260K.
aq_test(NAME test_sensitivity SOURCES test_sensitivity.c LIBS aq_model)
