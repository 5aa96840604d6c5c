# Benchmarks of the distribution layer (run under mpirun; see bench_dist.c).
# Compiled from the layer's own sources so it builds independently of the
# numeric core and the pipeline stages.
set(AQ_DIST_BENCH_SRCS ${CMAKE_SOURCE_DIR}/mpi/pipeline/tasks.c ${CMAKE_SOURCE_DIR}/mpi/pipeline/progress.c
    ${CMAKE_SOURCE_DIR}/mpi/pipeline/driver.c ${CMAKE_SOURCE_DIR}/mpi/pipeline/collect.c
    ${CMAKE_SOURCE_DIR}/mpi/pipeline/ordered_sum.c)
aq_bench(NAME bench_dist SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/bench_dist.c ${AQ_DIST_BENCH_SRCS}
         LIBS aq_io MPI::MPI_C)
