# Tests of the distribution layer: result files and fingerprints (io/), and
# mpi/pipeline (scheduling, driver, resume, failure, deterministic reductions).
aq_test(NAME test_resultfile SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_resultfile.c LIBS aq_io ZLIB::ZLIB LABELS unit)
# The tests compile the distribution sources they exercise directly (instead
# of linking aq_dist, which also pulls in the model/AdaQuant components), so
# they build and run independently of the numeric core.
set(AQ_DIST_CORE_SRCS ${CMAKE_SOURCE_DIR}/mpi/pipeline/tasks.c ${CMAKE_SOURCE_DIR}/mpi/pipeline/progress.c
    ${CMAKE_SOURCE_DIR}/mpi/pipeline/driver.c ${CMAKE_SOURCE_DIR}/mpi/pipeline/collect.c
    ${CMAKE_SOURCE_DIR}/mpi/pipeline/ordered_sum.c)
aq_test(NAME test_dist_lpt SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_dist_lpt.c ${CMAKE_SOURCE_DIR}/mpi/pipeline/tasks.c
        LIBS aq_io LABELS unit)

# TIMEOUT 180 for the MPI programs: a few seconds normally; under ASan+UBSan
# (with the slow unwinder the MPI tests need, tests/CMakeLists.txt) up to 24 s
# with ctest -j2 on a 2-core machine at load 10, so 180 s is a 7x margin.
# One executable per MPI program, run under several rank counts.
function(aq_dist_np_tests name)
  foreach(np 2 4)
    add_test(NAME ${name}_np${np} COMMAND ${AQ_MPIRUN} -np ${np} $<TARGET_FILE:${name}>)
    set_tests_properties(${name}_np${np} PROPERTIES LABELS mpi TIMEOUT 180 SKIP_RETURN_CODE 77
      ENVIRONMENT "${AQ_TEST_ENV}")
    aq_test_mpi_env(${name}_np${np} mpi)
  endforeach()
endfunction()

aq_test(NAME test_dist_driver SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_dist_driver.c ${AQ_DIST_CORE_SRCS}
        LIBS aq_io MPI::MPI_C NP 1
        LABELS mpi TIMEOUT 180)
aq_dist_np_tests(test_dist_driver)
aq_test(NAME test_dist_reduce SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_dist_reduce.c ${AQ_DIST_CORE_SRCS}
        LIBS aq_io MPI::MPI_C NP 1
        LABELS mpi TIMEOUT 180)
aq_dist_np_tests(test_dist_reduce)

# Injected failures, SIGKILL and resume, driven from outside mpirun: 16 mpirun
# launches of ~1 s each idle, ~5 s each on a 2-core machine loaded 5x (ctest -j2
# next to other MPI tests): 300 s is 4x that; a hang trips each launch's own
# 120 s timeout in dist_failure.py first. Under ASan+UBSan it took 60 s with
# ctest -j2 on this machine at load 10 (21 s in the normal build).
aq_script_test(NAME test_dist_failure LABELS mpi TIMEOUT 300
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/dist_failure.py $<TARGET_FILE:test_dist_driver>)
