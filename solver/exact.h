/* exact.h — an exact solver for the bit-allocation program, independent of
 * CBC, for cross-checking aq_alloc_solve in tests and benchmarks.
 *
 * It shares only the resolution of pins/ties/exclusions (problem.c) with the
 * CBC path. Tiny instances are enumerated (brute force); larger ones are
 * solved by dynamic programming over the integer sizes (divided by their
 * GCD), computing the least loss for every reachable size — and, when a BOPs
 * budget is given, for every reachable (size, BOPs) pair (2-D, small
 * instances only). Objective (b) then takes the smallest size whose least
 * loss meets the loss budget, which is exact: no loss discretisation. */
#ifndef AQ_SOLVER_EXACT_H
#define AQ_SOLVER_EXACT_H

#include "allocate.h"

typedef enum aq_alloc_exact_method {
    AQ_EXACT_AUTO = 0, /* brute force up to 2^20 combinations, else DP */
    AQ_EXACT_BRUTE,
    AQ_EXACT_DP
} aq_alloc_exact_method;

typedef struct aq_alloc_exact_result {
    int feasible;        /* the spec's program has a solution */
    double objective;    /* its optimum: loss (a) or size bits (b) */
    double min_size;     /* least size (bits) subject to the BOPs budget if any */
    double min_size_any; /* least size (bits) with no budget at all */
    double min_bops;     /* least BOPs with no budget (NAN without a BOPs budget) */
    double min_loss;     /* least loss subject to the size/BOPs budgets (INFINITY if none fit) */
    double work;         /* combinations or DP cell updates */
    int used_brute;      /* 1 if enumerated */
} aq_alloc_exact_result;

/* Solve spec on t exactly. max_cells bounds the DP table (states per layer
 * step) and the enumeration; above it -> AQ_ERR_ARG "too large". Rule
 * conflicts -> AQ_ERR_ARG as in aq_alloc_solve. An infeasible program is not
 * an error: r->feasible = 0. Single-threaded, no CBC. */
aq_status aq_alloc_exact(const aq_alloc_table *t, const aq_alloc_spec *spec, aq_alloc_exact_method method,
                         double max_cells, aq_alloc_exact_result *r, aq_error *err);

#endif
