/* table.h — internal to solver/: the cost table's layer index, built by
 * table.c with the cross-row checks (duplicate rows, inconsistent params,
 * an option meaning different bits in two rows). The problem (problem.h) is
 * built on it; table.c needs nothing from the problem, so the dependency
 * runs one way: problem -> table. */
#ifndef AQ_SOLVER_TABLE_H
#define AQ_SOLVER_TABLE_H

#include "allocate.h"

/* Rows grouped by layer (layers in order of first appearance). */
typedef struct aq_alloc_index {
    size_t n_layers;
    size_t *start; /* n_layers + 1 offsets into rows */
    size_t *rows;  /* table rows of each layer, in table order */
} aq_alloc_index;

/* Group rows by layer and run the cross-row checks of aq_alloc_table_check. */
aq_status aq_alloc_index_build(const aq_alloc_table *t, aq_alloc_index *ix, aq_error *err);
void aq_alloc_index_free(aq_alloc_index *ix);
void aq_alloc_row_where(const aq_alloc_table *t, size_t i, char *buf, size_t n);

#endif
