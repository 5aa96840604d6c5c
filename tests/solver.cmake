# Tests of the bit-allocation program (solver/, mpi/cmd_allocate.c).
# CBC (CoinUtils) leaks a few small arrays; tests/lsan.supp (given to every
# test of a sanitizer build, tests/CMakeLists.txt) suppresses them.
aq_test(NAME test_solver SOURCES test_solver.c LIBS aq_solver LABELS unit TIMEOUT 120)
aq_test(NAME test_solver_table SOURCES test_solver_table.c LIBS aq_solver LABELS unit TIMEOUT 60)
aq_script_test(NAME solver_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/scripts/solver_cli.sh LABELS integration TIMEOUT 120)
