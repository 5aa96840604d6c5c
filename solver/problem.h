/* problem.h — internal to solver/: the program in solver form. A table plus
 * a spec is resolved into "units" (a unit is a set of tied layers that take
 * one option together; an untied layer is a unit of one), each with the
 * options still allowed after pins and exclusions, their summed integer size
 * and BOPs and summed loss, and the tie-act group the unit belongs to.
 * Both the CBC path (mip.c) and the exact solver (exact.c) start from it. */
#ifndef AQ_SOLVER_PROBLEM_H
#define AQ_SOLVER_PROBLEM_H

#include "allocate.h"
#include "table.h"

typedef struct aq_alloc_opt {
    int64_t size, bops; /* summed over the unit's members */
    double loss;
    int a_bits;
    size_t rows; /* offset in prob.member_rows: one table row per member */
} aq_alloc_opt;

typedef struct aq_alloc_unit {
    size_t first_member, n_members; /* into prob.members (layer indices) */
    size_t first_opt, n_opts;       /* into prob.opts */
    int act_group;                  /* tie-act group, -1 = none */
} aq_alloc_unit;

typedef struct aq_alloc_prob {
    const aq_alloc_table *t;
    aq_alloc_index ix;
    size_t n_units, n_opts, n_act_groups;
    aq_alloc_unit *units;
    size_t *members;     /* layer indices, grouped by unit */
    aq_alloc_opt *opts;
    size_t *member_rows;
    size_t n_member_rows;
    int64_t total_params;
} aq_alloc_prob;

/* Resolve pins, exclusions, ties and tie-acts. Conflicts -> AQ_ERR_ARG naming
 * the layers and rules. p owns its arrays (aq_alloc_prob_free). */
aq_status aq_alloc_prob_build(const aq_alloc_table *t, const aq_alloc_spec *spec, aq_alloc_prob *p,
                              aq_error *err);
void aq_alloc_prob_free(aq_alloc_prob *p);

/* The three resources of an option. */
typedef enum aq_alloc_res { AQ_RES_LOSS = 0, AQ_RES_SIZE = 1, AQ_RES_BOPS = 2 } aq_alloc_res;

/* A solver goal: minimise one resource with optional upper bounds on the
 * others. max_loss already includes the loss tolerance (aq_alloc_loss_cap). */
typedef struct aq_alloc_goal {
    aq_alloc_res minimise;
    int has_max[3];
    double max_loss;
    int64_t max_size, max_bops;
} aq_alloc_goal;

/* The budgets of spec as a goal (size/BOPs rounded to integers as documented
 * in docs/ALLOCATE.md). */
aq_status aq_alloc_goal_from_spec(const aq_alloc_prob *p, const aq_alloc_spec *spec, aq_alloc_goal *g,
                                  aq_error *err);
/* An integer budget from a real one: round if within 1e-9 relative of an
 * integer (so 4.2·1000 is 4200), else floor. */
int64_t aq_alloc_int_budget(double v);
/* The loss budget with its relative tolerance 1e-9 applied. */
double aq_alloc_loss_cap(double max_loss);
double aq_alloc_opt_res(const aq_alloc_opt *o, aq_alloc_res r);

/* Result of a generic solve: option (0..n_opts-1 of the unit) per unit. */
typedef struct aq_alloc_pick {
    size_t *choice;
    double objective, bound;
    int optimal;
    size_t core_units;
} aq_alloc_pick;

/* Solve goal g with CBC (after the exact presolve unless no_presolve).
 * Returns AQ_ERR_INFEASIBLE (proven, message generic) or AQ_ERR_SOLVER (limit
 * without a solution). pick->choice is allocated on success. */
aq_status aq_alloc_mip_solve(const aq_alloc_prob *p, const aq_alloc_goal *g, double time_limit,
                             int no_presolve, aq_alloc_pick *pick, aq_error *err);

/* The exact presolve (presolve.c): sets keep[o] = 0 for options of p->opts that
 * cannot be in an optimal solution of g (dominated, or reduced cost above the
 * gap). incumbent (per unit, may be NULL) receives a feasible solution when
 * one was found (*have_inc = 1) with value *inc_obj and Lagrangian bound *lb.
 * Returns AQ_ERR_INFEASIBLE if the presolve proves infeasibility. */
aq_status aq_alloc_presolve(const aq_alloc_prob *p, const aq_alloc_goal *g, unsigned char *keep,
                            size_t *incumbent, int *have_inc, double *inc_obj, double *lb,
                            aq_error *err);

/* Improve a feasible solution (global option index per unit, pos) of
 * "minimise c subject to sum a <= B" by re-optimising the units with the
 * cheapest alternatives exactly (incumbent.c). pos changes only to a
 * feasible, strictly better solution. lambda and bu (per-unit minimum of
 * c + lambda·a) come from the Lagrangian relaxation. */
aq_status aq_alloc_improve_incumbent(const aq_alloc_prob *p, aq_alloc_res c, aq_alloc_res a, double B,
                                     const unsigned char *keep, double lambda, const double *bu, size_t *pos,
                                     aq_error *err);

#endif
