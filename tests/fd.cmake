# fd.cmake — the shared finite-difference gradient check (tests/fdcheck.c, used
# by test_tune, test_model_grad, test_adaquant) and its own test: a probe whose
# stencil straddles a rounding boundary is detected and moved, a wrong
# derivative fails, the noise estimate recovers a known noise level.
target_sources(aq_testutil PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/fdcheck.c)
aq_test(NAME test_fdcheck SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_fdcheck.c LABELS unit)
