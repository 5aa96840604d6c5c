/* collect.c — gather of loss rows and broadcast of the assignment (collect.h). */
#include "collect.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

aq_status aq_dist_agree(MPI_Comm comm, aq_status st, aq_error *err)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int mine = st != AQ_OK ? rank : size, first;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
    if (first == size) return AQ_OK;
    aq_error tmp = {0};
    if (rank == first && err) tmp = *err;
    tmp.code = st;
    MPI_Bcast(&tmp, (int)sizeof tmp, MPI_BYTE, first, comm);
    if (rank == first) return st;
    return aq_fail(err, tmp.code, "rank %d: %s", first, tmp.msg);
}

/* Root side: place the received rows, checking coverage. */
static aq_status place_rows(size_t n_tasks, const int64_t *all_idx, const aq_loss_row *all_rows, size_t total,
                            aq_loss_row *table, aq_error *err)
{
    unsigned char *seen = calloc(n_tasks ? n_tasks : 1, 1);
    if (!seen) return aq_fail_nomem(err, "gather coverage map", n_tasks);
    aq_status st = AQ_OK;
    for (size_t j = 0; j < total && st == AQ_OK; j++) {
        int64_t i = all_idx[j];
        if (i < 0 || (uint64_t)i >= n_tasks)
            st = aq_fail(err, AQ_ERR_INTERNAL, "gather: task index %lld out of range", (long long)i);
        else if (seen[i]++)
            st = aq_fail(err, AQ_ERR_INTERNAL, "gather: task %lld was reported twice", (long long)i);
        else
            table[i] = all_rows[j];
    }
    for (size_t i = 0; i < n_tasks && st == AQ_OK; i++)
        if (!seen[i]) st = aq_fail(err, AQ_ERR_INTERNAL, "gather: no rank holds the row of task %zu", i);
    free(seen);
    return st;
}

aq_status aq_dist_gather_rows(MPI_Comm comm, int root, size_t n_tasks, const size_t *idx,
                              const aq_loss_row *rows, size_t k, aq_loss_row *table, aq_error *err)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    if (n_tasks > (size_t)INT_MAX / sizeof(aq_loss_row))
        return aq_fail(err, AQ_ERR_ARG, "gather: %zu tasks exceed the MPI count range", n_tasks);
    int kk = (int)k;
    int *counts = NULL, *displs = NULL, *bcounts = NULL, *bdispls = NULL;
    int64_t *my_idx = malloc((k ? k : 1) * sizeof *my_idx), *all_idx = NULL;
    aq_loss_row *all_rows = NULL;
    aq_status st = my_idx ? AQ_OK : aq_fail_nomem(err, "gather indices", k * 8);
    for (size_t j = 0; my_idx && j < k; j++) my_idx[j] = (int64_t)idx[j];
    if (rank == root) {
        counts = calloc((size_t)size, sizeof *counts);
        displs = calloc((size_t)size, sizeof *displs);
        bcounts = calloc((size_t)size, sizeof *bcounts);
        bdispls = calloc((size_t)size, sizeof *bdispls);
        if (!counts || !displs || !bcounts || !bdispls) st = aq_fail_nomem(err, "gather counts", (size_t)size * 16);
    }
    MPI_Gather(&kk, 1, MPI_INT, counts, 1, MPI_INT, root, comm);
    size_t total = 0;
    if (rank == root && st == AQ_OK) {
        for (int r = 0; r < size; r++) {
            displs[r] = (int)total;
            bcounts[r] = counts[r] * (int)sizeof(aq_loss_row);
            bdispls[r] = (int)(total * sizeof(aq_loss_row));
            total += (size_t)counts[r];
            if (total > n_tasks) break; /* a duplicate somewhere; caught below */
        }
        if (total > n_tasks)
            st = aq_fail(err, AQ_ERR_INTERNAL, "gather: ranks hold more rows than the %zu tasks", n_tasks);
        all_idx = malloc((total ? total : 1) * sizeof *all_idx);
        all_rows = malloc((total ? total : 1) * sizeof *all_rows);
        if (st == AQ_OK && (!all_idx || !all_rows)) st = aq_fail_nomem(err, "gathered rows", total * 88);
    }
    st = aq_dist_agree(comm, st, err);
    if (st == AQ_OK) {
        MPI_Gatherv(my_idx, kk, MPI_INT64_T, all_idx, counts, displs, MPI_INT64_T, root, comm);
        MPI_Gatherv(rows, kk * (int)sizeof(aq_loss_row), MPI_BYTE, all_rows, bcounts, bdispls, MPI_BYTE, root,
                    comm);
        if (rank == root) st = place_rows(n_tasks, all_idx, all_rows, total, table, err);
        st = aq_dist_agree(comm, st, err);
    }
    free(my_idx);
    free(all_idx);
    free(all_rows);
    free(counts);
    free(displs);
    free(bcounts);
    free(bdispls);
    return st;
}

aq_status aq_dist_bcast_choice(MPI_Comm comm, int root, int *choice, size_t n_layers, aq_error *err)
{
    if (n_layers > (size_t)INT_MAX) return aq_fail(err, AQ_ERR_ARG, "broadcast: %zu layers", n_layers);
    int rc = MPI_Bcast(choice, (int)n_layers, MPI_INT, root, comm);
    if (rc != MPI_SUCCESS) return aq_fail(err, AQ_ERR_MPI, "broadcast of the layer assignment failed (%d)", rc);
    return AQ_OK;
}
