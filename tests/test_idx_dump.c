/* test_idx_dump.c — `test_idx_dump MODE FILE [MODE FILE]...` (MODE images,
 * labels or any): print, one JSON line per file, what
 * io/idx.c reads from FILE as JSON (dims, the byte sum, the first 32 bytes,
 * per-item sums of the first and last item), for tests/scripts/test_idx.py,
 * which decodes the same files with Python's gzip + struct. On a reader
 * error the line is {"error": message}. One process for many files: start-up
 * dominates under ASan. */
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

/* One JSON line for FILE read as `mode`: the summary, or {"error": message}. */
static void dump_file(const char *mode, const char *path)
{
    aq_idx x;
    aq_error err = {0};
    aq_status st = !strcmp(mode, "images")   ? aq_idx_read_images(path, &x, &err)
                   : !strcmp(mode, "labels") ? aq_idx_read_labels(path, 10, &x, &err)
                                             : aq_idx_read(path, &x, &err);
    if (st != AQ_OK) {
        printf("{\"error\":\"");
        for (const char *c = err.msg; *c; c++)
            if (*c == '"' || *c == '\\')
                printf("\\%c", *c);
            else if ((unsigned char)*c >= 0x20)
                putchar(*c);
        printf("\"}\n");
        return;
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
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc % 2 == 0) {
        fprintf(stderr, "usage: %s images|labels|any FILE [MODE FILE]...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i + 1 < argc; i += 2)
        dump_file(argv[i], argv[i + 1]);
    return 0;
}
