# Tests of the bit-allocation program (solver/, mpi/cmd_allocate.c).
# CBC (CoinUtils) leaks a few small arrays; tests/lsan.supp (given to every
# test of a sanitizer build, tests/CMakeLists.txt) suppresses them.
# TIMEOUT 600: brute-force/DP references over 300 random tables (our code, slowed
# ~5x by the sanitizers). Measured with ctest -j2 on a 2-core machine loaded by
# parallel builds (load 10): 17 s in Release, 87 s under ASan+UBSan (40 s at
# load 4); the 120 s it had was hit once. 600 s is ~7x the slowest run.
aq_test(NAME test_solver SOURCES test_solver.c LIBS aq_solver LABELS unit TIMEOUT 600)
aq_test(NAME test_solver_table SOURCES test_solver_table.c LIBS aq_solver LABELS unit TIMEOUT 60)
aq_script_test(NAME solver_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/scripts/solver_cli.sh LABELS integration TIMEOUT 120)
# Budgets in file bytes (AQ_SIZE_BYTES) against brute force, and the
# --target-size syntax (aq_pipe_parse_size, hence aq_dist). ~0.5 s.
aq_test(NAME test_alloc_bytes SOURCES test_alloc_bytes.c LIBS aq_solver aq_dist LABELS unit TIMEOUT 120)
