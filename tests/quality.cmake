# Network-level sensitivity (src/model/sensitivity.h): KL(FP || one layer quantized)
# against a direct two-forward float64 computation, on a synthetic model and stories260K.
aq_test(NAME test_sensitivity SOURCES test_sensitivity.c LIBS aq_model)
# The re-linearised allocation (mpi/pipeline/refine.h) against a direct full-forward
# reimplementation, on a small real quantize run (needs the CLI and stories260K).
aq_test(NAME test_refine SOURCES test_refine.c LIBS aq_dist LABELS integration TIMEOUT 180
        ASSETS models/stories260K/stories260K.bin models/stories260K/tok512.bin data/tinystories/validation.txt)
