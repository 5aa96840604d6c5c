/* stage_solve.h — stage 3 of the pipeline: the allocation of options to
 * layers (rank 0): the loss table of the results, CBC's solution under the
 * budget, the chosen option per layer (stage_solve.c, docs/ALLOCATE.md). */
#ifndef AQ_PIPELINE_STAGE_SOLVE_H
#define AQ_PIPELINE_STAGE_SOLVE_H

#include "../../solver/allocate.h"
#include "pipeline.h"

/* Stage 3 (rank 0 only, no MPI): rows == NULL: read every result (missing
 * ones -> AQ_ERR_NOTFOUND listing the shards and the resubmit command).
 * Solve; choice[n_layers] receives the option index per layer. */
aq_status aq_pipe_solve(const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_pipe_budget *b,
                        const aq_loss_row *rows, aq_loss_row **rows_out, int *choice, aq_error *err);

/* The allocation table of the rows (size = params x w_bits; under a budget in
 * bytes, every task's bytes in the model files) and its solution
 * under budget b (rank 0). On success the caller frees *t and *sol. */
aq_status aq_pipe_alloc(const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_pipe_budget *b,
                        const aq_loss_row *rows, aq_alloc_table *t, aq_alloc_solution *sol, aq_error *err);

/* The option index per layer of a solution (choice[n_layers + n_extra]; an
 * extra not in the table: -1, kept F32). */
void aq_pipe_choice_of(const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_alloc_solution *sol, int *choice);

#endif
