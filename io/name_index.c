/* name_index.c — the sorted name index of name_index.h. */
#include <stdlib.h>
#include <string.h>

#include "name_index.h"

typedef struct name_idx {
    const char *name;
    size_t idx;
} name_idx;

static int name_idx_cmp(const void *a, const void *b)
{
    return strcmp(((const name_idx *)a)->name, ((const name_idx *)b)->name);
}

aq_status aq_name_index_build(size_t *byname, size_t n, aq_name_of_fn name_of, const void *ctx, aq_error *err)
{
    /* qsort cannot pass ctx to its comparator: sort (name, index) pairs */
    name_idx *tmp = calloc(n ? n : 1, sizeof *tmp);
    if (!tmp) return aq_fail_nomem(err, "tensor name index", n * sizeof *tmp);
    for (size_t i = 0; i < n; i++)
        tmp[i] = (name_idx){name_of(ctx, i), i};
    qsort(tmp, n, sizeof *tmp, name_idx_cmp);
    for (size_t i = 0; i < n; i++)
        byname[i] = tmp[i].idx;
    free(tmp);
    return AQ_OK;
}

size_t aq_name_index_find(const size_t *byname, size_t n, aq_name_of_fn name_of, const void *ctx, const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, name_of(ctx, byname[mid]));
        if (!c) return byname[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return (size_t)-1;
}
