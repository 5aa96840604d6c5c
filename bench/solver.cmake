# Benchmark of the bit-allocation program (solver/).
aq_bench(NAME bench_solver SOURCES bench_solver.c LIBS aq_solver m)
