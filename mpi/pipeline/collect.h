/* collect.h — the collectives of the pipeline around the bit-allocation
 * solve: gather every task's loss row to rank 0 in task order (MPI_Gatherv),
 * and broadcast the chosen assignment (one option per layer) back.
 * Rows travel as raw bytes: all ranks must share one binary layout (a
 * homogeneous cluster, one build of adaquant), which MPI jobs do anyway. */
#ifndef AQ_DIST_COLLECT_H
#define AQ_DIST_COLLECT_H

#include <stddef.h>

#include <mpi.h>

#include "../../common/status.h"
#include "../../io/resultfile.h"

/* Collective: every rank learns the lowest failing rank's status and message,
 * so no rank goes on alone. The failing rank keeps its own message; the others
 * get it prefixed with "rank R: ". Returns AQ_OK only if every rank passed AQ_OK. */
aq_status aq_dist_agree(MPI_Comm comm, aq_status st, aq_error *err);

/* Collective over comm. Each rank passes the k rows it holds with their task
 * indices (idx[j] in [0, n_tasks)); on `root`, table[n_tasks] receives row i
 * at position i (table is ignored elsewhere). The root checks that every task
 * arrives exactly once; on a gap or duplicate every rank returns
 * AQ_ERR_INTERNAL naming the first offending task (the status is broadcast,
 * so all ranks agree). */
aq_status aq_dist_gather_rows(MPI_Comm comm, int root, size_t n_tasks, const size_t *idx,
                              const aq_loss_row *rows, size_t k, aq_loss_row *table, aq_error *err);

/* Collective: broadcast choice[n_layers] (the option index chosen per layer)
 * from root. AQ_ERR_MPI if the broadcast fails. */
aq_status aq_dist_bcast_choice(MPI_Comm comm, int root, int *choice, size_t n_layers, aq_error *err);

#endif
