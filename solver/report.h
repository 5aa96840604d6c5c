/* report.h — budget sweeps and the text outputs of the allocation program:
 * per-layer CSV/JSON of a solution, the Pareto table (CSV/JSON) of a sweep,
 * and two SVG plots (loss vs average bits; bits per layer). Writers take an
 * open FILE* (the caller owns it and makes the write atomic: solver/ does not
 * do file I/O of its own). */
#ifndef AQ_SOLVER_REPORT_H
#define AQ_SOLVER_REPORT_H

#include "allocate.h"

/* One budget of a sweep. */
typedef struct aq_alloc_point {
    double budget;      /* average bits per weight */
    int feasible;       /* 0: below the smallest feasible budget */
    int pareto;         /* 1: no other point is at most as large and as lossy, and better in one */
    aq_alloc_result status;
    double loss, avg_bits, gap, seconds;
    int64_t size_bits, bops;
} aq_alloc_point;

typedef struct aq_alloc_sweep {
    size_t n;
    aq_alloc_point *pt;
    double min_feasible; /* smallest feasible bits/weight (NAN if every point was feasible) */
} aq_alloc_sweep;

/* Solve spec (objective a; its size budget is replaced) for every average
 * bit budget lo, lo+step, ... <= hi (+1e-9). At most 10000 points. Infeasible
 * budgets become points with feasible = 0; other errors stop the sweep.
 * out owns its array (aq_alloc_sweep_free). */
aq_status aq_alloc_sweep_run(const aq_alloc_table *t, const aq_alloc_spec *spec, double lo, double hi,
                             double step, aq_alloc_sweep *out, aq_error *err);
void aq_alloc_sweep_free(aq_alloc_sweep *s);
/* Index of the knee of the feasible Pareto points (largest distance below the
 * chord between the first and last, in axes normalised to [0,1]); -1 if none. */
long aq_alloc_sweep_knee(const aq_alloc_sweep *s);

/* Per-layer table: layer,option,params,w_bits,a_bits,size_bits,bits_per_weight,bops,loss. */
void aq_alloc_write_solution_csv(FILE *f, const aq_alloc_table *t, const aq_alloc_solution *s);
/* The solution as one JSON object: totals, budgets, solver status and "layers". */
void aq_alloc_write_solution_json(FILE *f, const aq_alloc_table *t, const aq_alloc_solution *s);
/* The sweep: budget,feasible,pareto,status,avg_bits,size_bits,bops,loss,gap,seconds. */
void aq_alloc_write_sweep_csv(FILE *f, const aq_alloc_sweep *s);
/* The sweep as JSON {"points": [...], "chosen": {...} or null}. chosen may be NULL. */
void aq_alloc_write_sweep_json(FILE *f, const aq_alloc_sweep *s, const aq_alloc_solution *chosen);
/* SVG: loss vs average bits of the feasible points, Pareto points joined,
 * the chosen solution (may be NULL) marked in red; round axis ticks and the
 * legend in a band above the plot (svg.h). */
void aq_alloc_write_sweep_svg(FILE *f, const aq_alloc_sweep *s, const aq_alloc_solution *chosen);
/* SVG of the bits of each layer of s: up to AQ_SVG_BARS_MAX layers a bar per
 * layer (bits per weight, colour = activation bits, labelled); above, a heat
 * map of blocks x linear types (colour = weight bits) when the layer names
 * are PREFIX.BLOCK.TYPE, else unlabelled bars. */
void aq_alloc_write_bits_svg(FILE *f, const aq_alloc_table *t, const aq_alloc_solution *s);

#endif
