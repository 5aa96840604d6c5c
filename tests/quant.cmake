# Tests of the quantizer kernels (src/quant) and GPTQ (src/adaquant/gptq.c).
aq_test(NAME test_quant SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_quant.c LIBS aq_quant LABELS unit)
aq_test(NAME test_pack SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_pack.c LIBS aq_quant LABELS unit)
# gptq.c is compiled into the test directly so that the test does not depend
# on the rest of src/adaquant building at the same moment.
aq_test(NAME test_gptq
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_gptq.c ${CMAKE_SOURCE_DIR}/src/adaquant/gptq.c
  LIBS aq_quant aq_blas LABELS unit)
# AdaQuant in the group formats (src/adaquant/group.c): losses against a row
# sum of the decoded bytes, llama.cpp's RTN start, brute-force local
# optimality, fp16 constraints, the qlayer round trip, option strings. ~0.2 s.
aq_test(NAME test_adaquant_group SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_adaquant_group.c LIBS aq_adaquant LABELS unit)
# The K-quants Q2_K..Q6_K (src/adaquant/group_k.c): losses against long double
# row sums, RTN start = llama.cpp's bytes, brute-force local optimality of the
# codes, sub-block codes and fp16 (d, dmin), the qlayer round trip. ~0.5 s.
aq_test(NAME test_adaquant_kquant SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_adaquant_kquant.c LIBS aq_adaquant LABELS unit)
