/* capture_sample.c — the deterministic row sample of a capture point: the
 * sample_cap rows with the smallest key hash(seed, window, position), ties by
 * (window, position). A bottom-k set is the same whatever order rows arrive in
 * and however windows are split into chunks, so merged partial samples equal
 * the sample of a single run. */
#include <stdlib.h>
#include <string.h>

#include "capture_internal.h"

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The row's sample key: a splitmix64 hash of (seed, window, position). */
static uint64_t row_key(uint64_t seed, uint32_t win, uint32_t pos)
{
    return mix64(seed ^ mix64(((uint64_t)win << 32) | pos));
}

/* Lexicographic (key, win, pos) comparison: -1, 0, 1. */
static int cmp_entry(uint64_t ka, uint32_t wa, uint32_t pa, uint64_t kb, uint32_t wb, uint32_t pb)
{
    if (ka != kb) return ka < kb ? -1 : 1;
    if (wa != wb) return wa < wb ? -1 : 1;
    return pa < pb ? -1 : pa > pb;
}

static uint64_t key_of(const aq_capstat *s, uint64_t seed, int i)
{
    return row_key(seed, s->sample_win[i], s->sample_pos[i]);
}

/* 1 if entry i orders after entry j. */
static int after(const aq_capstat *s, uint64_t seed, int i, int j)
{
    return cmp_entry(key_of(s, seed, i), s->sample_win[i], s->sample_pos[i], key_of(s, seed, j),
                     s->sample_win[j], s->sample_pos[j]) > 0;
}

static void swap_rows(float *a, int d, int i, int j)
{
    for (int k = 0; k < d; k++) {
        float t = a[(size_t)i * d + k];
        a[(size_t)i * d + k] = a[(size_t)j * d + k];
        a[(size_t)j * d + k] = t;
    }
}

static void swap_entries(aq_capstat *s, int i, int j)
{
    uint32_t t = s->sample_win[i];
    s->sample_win[i] = s->sample_win[j];
    s->sample_win[j] = t;
    t = s->sample_pos[i];
    s->sample_pos[i] = s->sample_pos[j];
    s->sample_pos[j] = t;
    swap_rows(s->sample, s->d, i, j);
    if (s->sample_q) swap_rows(s->sample_q, s->d, i, j);
}

static void sift_down(aq_capstat *s, uint64_t seed, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, big = i;
        if (l < s->n_sample && after(s, seed, l, big)) big = l;
        if (r < s->n_sample && after(s, seed, r, big)) big = r;
        if (big == i) return;
        swap_entries(s, i, big);
        i = big;
    }
}

void aq_sample_heapify(aq_capstat *s, uint64_t seed)
{
    for (int i = s->n_sample / 2 - 1; i >= 0; i--)
        sift_down(s, seed, i);
}

/* The sample is a max-heap on (key, win, pos) while rows are offered (see
 * aq_sample_heapify); aq_sample_sort puts it in (window, position) order. */
void aq_sample_offer(aq_capstat *s, uint64_t seed, uint32_t win, uint32_t pos, const float *x,
                     const float *xq)
{
    if (s->sample_cap <= 0) return;
    int slot;
    if (s->n_sample < s->sample_cap) {
        slot = s->n_sample++;
    } else {
        uint64_t k = row_key(seed, win, pos);
        if (cmp_entry(k, win, pos, key_of(s, seed, 0), s->sample_win[0], s->sample_pos[0]) >= 0)
            return;
        slot = 0;
    }
    s->sample_win[slot] = win;
    s->sample_pos[slot] = pos;
    memcpy(s->sample + (size_t)slot * s->d, x, (size_t)s->d * sizeof(float));
    if (xq && s->sample_q)
        memcpy(s->sample_q + (size_t)slot * s->d, xq, (size_t)s->d * sizeof(float));
    if (slot == 0) {
        sift_down(s, seed, 0);
    } else {
        for (int i = slot; i > 0 && after(s, seed, i, (i - 1) / 2); i = (i - 1) / 2)
            swap_entries(s, i, (i - 1) / 2);
    }
}

typedef struct {
    uint32_t win, pos;
    int idx;
} sort_item;

static int cmp_item(const void *a, const void *b)
{
    const sort_item *x = a, *y = b;
    if (x->win != y->win) return x->win < y->win ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

void aq_sample_sort(aq_capstat *s)
{
    int n = s->n_sample, d = s->d;
    if (n < 2) return;
    sort_item *it = malloc((size_t)n * sizeof *it);
    float *tmp = malloc((size_t)n * d * sizeof(float));
    if (!it || !tmp) { /* sorting is cosmetic for correctness of sums; keep order on OOM */
        free(it);
        free(tmp);
        return;
    }
    for (int i = 0; i < n; i++)
        it[i] = (sort_item){s->sample_win[i], s->sample_pos[i], i};
    qsort(it, (size_t)n, sizeof *it, cmp_item);
    for (float *arr = s->sample; arr; arr = (arr == s->sample ? s->sample_q : NULL)) {
        for (int i = 0; i < n; i++)
            memcpy(tmp + (size_t)i * d, arr + (size_t)it[i].idx * d, (size_t)d * sizeof(float));
        memcpy(arr, tmp, (size_t)n * d * sizeof(float));
    }
    for (int i = 0; i < n; i++) {
        s->sample_win[i] = it[i].win;
        s->sample_pos[i] = it[i].pos;
    }
    free(it);
    free(tmp);
}
