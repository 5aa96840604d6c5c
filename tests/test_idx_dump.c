/* test_idx_dump.c — `test_idx_dump images|labels|any FILE`: print what
 * io/idx.c reads from FILE as JSON (dims, the byte sum, the first 32 bytes,
 * per-item sums of the first and last item), for tests/scripts/test_idx.py,
 * which decodes the same files with Python's gzip + struct. On a reader
 * error: the message on stderr, exit 1. */
#include <stdio.h>
#include <string.h>

#include "../io/idx.h"

static long long item_sum(const aq_idx *x, int64_t i)
{
    int64_t sz = x->rows * x->cols;
    long long s = 0;
    for (int64_t k = 0; k < sz; k++)
        s += x->data[i * sz + k];
    return s;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s images|labels|any FILE\n", argv[0]);
        return 2;
    }
    aq_idx x;
    aq_error err = {0};
    aq_status st = !strcmp(argv[1], "images")   ? aq_idx_read_images(argv[2], &x, &err)
                   : !strcmp(argv[1], "labels") ? aq_idx_read_labels(argv[2], 10, &x, &err)
                                                : aq_idx_read(argv[2], &x, &err);
    if (st != AQ_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int64_t total = x.n * x.rows * x.cols;
    long long sum = 0;
    for (int64_t i = 0; i < total; i++)
        sum += x.data[i];
    printf("{\"ndim\":%d,\"n\":%lld,\"rows\":%lld,\"cols\":%lld,\"sum\":%lld,\"first\":[", x.ndim,
           (long long)x.n, (long long)x.rows, (long long)x.cols, sum);
    for (int64_t i = 0; i < total && i < 32; i++)
        printf("%s%d", i ? "," : "", x.data[i]);
    printf("],\"item_sums\":[%lld,%lld]}\n", x.n ? item_sum(&x, 0) : 0,
           x.n ? item_sum(&x, x.n - 1) : 0);
    aq_idx_free(&x);
    return 0;
}
