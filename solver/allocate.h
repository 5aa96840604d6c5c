/* allocate.h — the bit-allocation program: choose one quantization option per
 * layer from a table of measured (layer, option) costs.
 *
 * The model (DESIGN.md "The bit-allocation program"): binary x[l,k], layer l
 * takes option k, sum_k x[l,k] = 1, and either
 *   (a) AQ_ALLOC_MIN_LOSS: minimise sum loss·x  s.t. sum size·x <= size budget
 *       [and sum bops·x <= BOPs budget], or
 *   (b) AQ_ALLOC_MIN_SIZE: minimise sum size·x  s.t. sum loss·x <= loss budget
 *       [and sum bops·x <= BOPs budget],
 * with pins (--keep), ties (--tie, --tie-act) and exclusions (--exclude).
 * Solved to proven optimality by COIN-OR CBC (see docs/ALLOCATE.md for the
 * formulation, the exact presolve and the numerics). solver/exact.h holds an
 * independent exact solver used to cross-check it in tests and benchmarks.
 *
 * Sizes and BOPs are exact integers (int64): the size of an option is
 * params·w_bits unless the row gives size_bits (which may then include scale
 * and zero-point overhead); BOPs = macs·w_bits·a_bits (a16 = activations kept
 * in full precision, counted as 16).
 *
 * Thread safety: the CBC library is not thread-safe, so never run two
 * aq_alloc_solve() calls at once in one process (separate processes are fine;
 * adaquant solves on rank 0 only). This code keeps no global state.
 * This folder uses only common/ and CBC. */
#ifndef AQ_SOLVER_ALLOCATE_H
#define AQ_SOLVER_ALLOCATE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../common/status.h"

/* ---------------------------------------------------------------- table -- */

/* One measured (layer, option) pair. */
typedef struct aq_alloc_row {
    char *layer;        /* layer name (owned by the table) */
    char *option;       /* option name, e.g. "w4a8" (owned by the table) */
    int64_t params;     /* weights in the layer, > 0, equal on all its rows */
    int w_bits;         /* weight bits, 2..32 (32 = an FP32 option) */
    int a_bits;         /* activation bits, 2..16 (16 = not quantized) */
    int64_t macs;       /* multiply-accumulates per inference, >= 0 */
    double loss;        /* measured loss increase, finite, >= 0 */
    int64_t size_bits;  /* stored size in bits; 0 = params·w_bits */
    long line;          /* CSV line number (1-based) or 0 if built in memory */
} aq_alloc_row;

/* The table: rows in any order; layers are reported in order of first
 * appearance. Invariants checked by aq_alloc_table_check(): no duplicate
 * (layer, option); one params value per layer; one (w_bits, a_bits) pair per
 * option name. Zero-initialise or call aq_alloc_table_init(). */
typedef struct aq_alloc_table {
    aq_alloc_row *rows;
    size_t n_rows, cap;
} aq_alloc_table;

void aq_alloc_table_init(aq_alloc_table *t);
/* Free every row and the array; the table is empty (re-usable) afterwards. */
void aq_alloc_table_free(aq_alloc_table *t);

/* Append one row (strings are copied). size_bits 0 = params·w_bits. line is
 * used in messages (0 = none). Checks the row on its own: NaN/Inf/negative
 * loss, params <= 0, w_bits outside 2..32, a_bits outside 2..16, macs < 0, size_bits < 0, empty
 * names, overflow of the size/BOPs in int64 -> AQ_ERR_ARG naming the row. */
aq_status aq_alloc_table_add(aq_alloc_table *t, const char *layer, const char *option, int64_t params,
                             int w_bits, int a_bits, int64_t macs, double loss, int64_t size_bits,
                             long line, aq_error *err);

/* Cross-row checks (duplicates name both line numbers/rows; inconsistent
 * params or option bits name both rows). aq_alloc_solve() calls it. */
aq_status aq_alloc_table_check(const aq_alloc_table *t, aq_error *err);

/* Size in bits of one row (size_bits, or params·w_bits) and its BOPs. */
int64_t aq_alloc_row_size(const aq_alloc_row *r);
int64_t aq_alloc_row_bops(const aq_alloc_row *r);

/* Read a CSV table (appending to t). Header row naming the columns
 * layer,option,params,w_bits,a_bits,macs,loss[,size_bits] in any order
 * (extra columns are ignored); '#' lines and blank lines are skipped; fields
 * may be double-quoted ("" escapes a quote). Errors name the file and line
 * ("t.csv: line 12: ...").
 * aq_alloc_table_read_csv_file reads from an open stream (name for messages). */
aq_status aq_alloc_table_read_csv(const char *path, aq_alloc_table *t, aq_error *err);
aq_status aq_alloc_table_read_csv_file(FILE *f, const char *name, aq_alloc_table *t, aq_error *err);

/* ----------------------------------------------------------------- spec -- */

typedef enum aq_alloc_objective {
    AQ_ALLOC_MIN_LOSS = 0, /* (a) least loss under a size (and/or BOPs) budget */
    AQ_ALLOC_MIN_SIZE = 1  /* (b) smallest size under a loss budget */
} aq_alloc_objective;

/* The unit the size budget is given in (also used in messages). */
typedef enum aq_alloc_size_unit {
    AQ_SIZE_NONE = 0,      /* no size budget */
    AQ_SIZE_AVG_BITS,      /* average bits per weight: budget = v·total params */
    AQ_SIZE_FP32_FRACTION, /* fraction of the FP32 size: budget = v·32·total params */
    AQ_SIZE_BITS,          /* absolute, in bits */
    AQ_SIZE_BYTES          /* a whole file in bytes: budget = 8·v − size_fixed_bits for the
                              table's rows (the file's part outside the table is fixed) */
} aq_alloc_size_unit;

/* A (regex, option) rule of --keep / --exclude. The regex is POSIX extended,
 * searched (unanchored: use ^...$ to anchor) in each layer name. */
typedef struct aq_alloc_rule {
    const char *regex;
    const char *option;
} aq_alloc_rule;

/* What to solve. Zero-initialise, then set the fields you need. Borrowed
 * pointers: the caller keeps them alive during the call. */
typedef struct aq_alloc_spec {
    aq_alloc_objective objective;
    aq_alloc_size_unit size_unit; /* size budget (objective a); NONE = no size limit */
    double size_budget;           /* in size_unit */
    int64_t size_fixed_bits;      /* AQ_SIZE_BYTES: bits of the file that no row pays
                                     (non-allocated tensors, headers, side files), >= 0 */
    int has_max_bops;             /* BOPs budget (either objective) */
    double max_bops;
    double max_loss;              /* loss budget (objective b), >= 0 */
    const aq_alloc_rule *keep;    /* pins: matching layers forced to the option */
    size_t n_keep;
    const aq_alloc_rule *exclude; /* matching layers may not take the option */
    size_t n_exclude;
    const char *const *tie;       /* matching layers take the same option; grouped by
                                     the regex's first capture group if it has one */
    size_t n_tie;
    const char *const *tie_act;   /* same, for the activation bits only */
    size_t n_tie_act;
    double time_limit;            /* elapsed seconds for CBC; <= 0 = none */
    int no_presolve;              /* 1: hand CBC the whole model (tests/benchmarks) */
} aq_alloc_spec;

/* ------------------------------------------------------------- solution -- */

typedef enum aq_alloc_result {
    AQ_ALLOC_OPTIMAL = 0,  /* proven optimal */
    AQ_ALLOC_FEASIBLE = 1  /* time limit hit: best found, gap > 0 */
} aq_alloc_result;

/* Which budget an infeasible problem violates (aq_alloc_solution.infeasible). */
typedef enum aq_alloc_budget {
    AQ_BUDGET_NONE = 0,
    AQ_BUDGET_SIZE,
    AQ_BUDGET_BOPS,
    AQ_BUDGET_LOSS,
    AQ_BUDGET_RULES /* pins/ties/exclusions alone conflict */
} aq_alloc_budget;

/* A solved allocation. Owns its arrays: free with aq_alloc_solution_free. */
typedef struct aq_alloc_solution {
    size_t n_layers;
    char **layer;           /* layer names, table order of first appearance */
    size_t *row;            /* chosen table row per layer */
    int64_t total_params;   /* of all layers in the table */
    int64_t size_bits;      /* totals of the chosen options */
    int64_t bops;
    double loss;
    double avg_bits;        /* size_bits / total_params */
    int64_t size_budget_bits; /* effective integer budgets; -1 = none */
    int64_t bops_budget;
    double loss_budget;     /* objective b; NAN otherwise */
    aq_alloc_result status;
    double objective;       /* loss (a) or size bits (b) */
    double bound;           /* best proven bound on the objective */
    double gap;             /* (objective - bound) / max(|objective|, 1e-12) */
    double seconds;         /* wall time of the whole solve */
    size_t core_layers;     /* tie units left for CBC after the exact presolve */
    /* Filled when aq_alloc_solve returns AQ_ERR_INFEASIBLE: */
    aq_alloc_budget infeasible;
    double min_feasible;    /* smallest feasible budget, in the user's unit */
    double min_feasible_raw;/* the same in bits / BOPs / loss */
} aq_alloc_solution;

void aq_alloc_solution_free(aq_alloc_solution *s);

/* Solve the program. sol is overwritten (free a previous one first).
 * Errors: table/spec problems and rule conflicts -> AQ_ERR_ARG naming the
 * rows, rules and layers; budgets that cannot be met -> AQ_ERR_INFEASIBLE with
 * a message naming the smallest feasible budget in the user's unit (also in
 * sol->infeasible / min_feasible); a time limit with no solution found ->
 * AQ_ERR_SOLVER. Not thread-safe (CBC): one solve at a time per process. */
aq_status aq_alloc_solve(const aq_alloc_table *t, const aq_alloc_spec *spec, aq_alloc_solution *sol,
                         aq_error *err);

/* Total params of the table's layers (each layer counted once), or -1 if the
 * table fails aq_alloc_table_check (err says why). */
int64_t aq_alloc_total_params(const aq_alloc_table *t, aq_error *err);

/* Human text for a size budget in its unit ("4.25 bits/weight", "13% of FP32",
 * "123456 bits") into buf. */
void aq_alloc_format_size(char *buf, size_t n, aq_alloc_size_unit unit, double value);

#endif
