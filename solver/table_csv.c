/* table_csv.c — reading an allocation table from CSV (allocate.h).
 * Header row: layer,option,params,w_bits,a_bits,macs,loss[,size_bits], in
 * any order, extra columns ignored. Lines starting with '#' and blank lines
 * are skipped. Fields may be double-quoted ("" is a quote); quoted fields do
 * not span lines. An empty size_bits means params·w_bits. Every error names
 * file and line ("t.csv: line 12: ..."). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "allocate.h"

enum { C_LAYER, C_OPTION, C_PARAMS, C_WBITS, C_ABITS, C_MACS, C_LOSS, C_SIZE, C_N };
static const char *const col_names[C_N] = {"layer", "option", "params", "w_bits", "a_bits", "macs", "loss", "size_bits"};

#define MAX_FIELDS 64

/* Split line (modified in place) into at most MAX_FIELDS fields. */
static aq_status split(char *line, char **f, size_t *nf, aq_error *err)
{
    size_t n = 0;
    char *p = line;
    for (;;) {
        if (n == MAX_FIELDS) return aq_fail(err, AQ_ERR_FORMAT, "more than %d fields", MAX_FIELDS);
        while (*p == ' ' || *p == '\t') p++;
        char *w = p, *start = p;
        if (*p == '"') {
            p++;
            for (;;) {
                if (!*p) return aq_fail(err, AQ_ERR_FORMAT, "unterminated quoted field %zu", n + 1);
                if (*p == '"' && p[1] == '"') *w++ = '"', p += 2;
                else if (*p == '"') {
                    p++;
                    break;
                } else *w++ = *p++;
            }
            while (*p == ' ' || *p == '\t') p++;
            if (*p && *p != ',')
                return aq_fail(err, AQ_ERR_FORMAT, "unexpected text after the quoted field %zu", n + 1);
        } else {
            while (*p && *p != ',') *w++ = *p++;
            while (w > start && (w[-1] == ' ' || w[-1] == '\t')) w--;
        }
        char c = *p;
        *w = '\0';
        f[n++] = start;
        if (c != ',') break;
        p++;
    }
    *nf = n;
    return AQ_OK;
}

static aq_status parse_int(const char *s, const char *col, int64_t *out, aq_error *err)
{
    if (!*s) return aq_fail(err, AQ_ERR_FORMAT, "column '%s' is empty", col);
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end) { /* allow integral values written as reals, e.g. 1e6 or 4096.0 */
        double d = strtod(s, &end);
        if (*end || !isfinite(d) || d != floor(d) || fabs(d) > 9.0e15)
            return aq_fail(err, AQ_ERR_FORMAT, "column '%s': '%s' is not an integer", col, s);
        v = (long long)d;
    } else if (errno == ERANGE)
        return aq_fail(err, AQ_ERR_FORMAT, "column '%s': '%s' is out of range", col, s);
    *out = v;
    return AQ_OK;
}

static aq_status parse_row(char **f, size_t nf, const int *col, aq_alloc_table *t, long line, aq_error *err)
{
    int need = 0;
    for (int c = 0; c < C_N; c++)
        if (col[c] >= need) need = col[c] + 1;
    if ((int)nf < need)
        return aq_fail(err, AQ_ERR_FORMAT, "%zu fields, the header needs at least %d", nf, need);
    int64_t v[C_N] = {0};
    for (int c = C_PARAMS; c < C_N; c++) {
        if (c == C_LOSS || col[c] < 0) continue;
        if (c == C_SIZE && !*f[col[c]]) continue; /* empty size_bits = params·w_bits */
        AQ_TRY(parse_int(f[col[c]], col_names[c], &v[c], err));
    }
    if (v[C_WBITS] < -1000 || v[C_WBITS] > 1000 || v[C_ABITS] < -1000 || v[C_ABITS] > 1000)
        return aq_fail(err, AQ_ERR_FORMAT, "bits out of range (w_bits 2..32, a_bits 2..16; w_bits '%s', a_bits '%s')", f[col[C_WBITS]],
                       f[col[C_ABITS]]);
    const char *ls = f[col[C_LOSS]];
    char *end;
    double loss = strtod(ls, &end);
    if (!*ls || *end) return aq_fail(err, AQ_ERR_FORMAT, "column 'loss': '%s' is not a number", ls);
    aq_status st = aq_alloc_table_add(t, f[col[C_LAYER]], f[col[C_OPTION]], v[C_PARAMS], (int)v[C_WBITS],
                                      (int)v[C_ABITS], v[C_MACS], loss, v[C_SIZE], 0, err);
    return st;
}

static aq_status parse_header(char **f, size_t nf, int *col, aq_error *err)
{
    for (int c = 0; c < C_N; c++) col[c] = -1;
    for (size_t i = 0; i < nf; i++)
        for (int c = 0; c < C_N; c++)
            if (!strcmp(f[i], col_names[c])) {
                if (col[c] >= 0) return aq_fail(err, AQ_ERR_FORMAT, "header names column '%s' twice", col_names[c]);
                col[c] = (int)i;
            }
    for (int c = 0; c < C_SIZE; c++)
        if (col[c] < 0)
            return aq_fail(err, AQ_ERR_FORMAT,
                           "header lacks column '%s' (need layer,option,params,w_bits,a_bits,macs,loss[,size_bits])",
                           col_names[c]);
    return AQ_OK;
}

aq_status aq_alloc_table_read_csv_file(FILE *in, const char *name, aq_alloc_table *t, aq_error *err)
{
    char *line = NULL, *fields[MAX_FIELDS];
    size_t cap = 0, nf = 0;
    long lineno = 0;
    int col[C_N], have_header = 0;
    aq_status st = AQ_OK;
    ssize_t len;
    while ((len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        if ((size_t)len != strlen(line)) {
            st = aq_fail(err, AQ_ERR_FORMAT, "NUL byte in the line");
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        char *s = line;
        if (lineno == 1 && !strncmp(s, "\xEF\xBB\xBF", 3)) s += 3; /* UTF-8 BOM */
        char *q = s;
        while (*q == ' ' || *q == '\t') q++;
        if (!*q || *q == '#') continue;
        if ((st = split(s, fields, &nf, err)) != AQ_OK) break;
        if (!have_header) {
            if ((st = parse_header(fields, nf, col, err)) != AQ_OK) break;
            have_header = 1;
            continue;
        }
        if ((st = parse_row(fields, nf, col, t, lineno, err)) != AQ_OK) break;
        t->rows[t->n_rows - 1].line = lineno;
    }
    if (st == AQ_OK && ferror(in)) st = aq_fail(err, AQ_ERR_IO, "read error");
    free(line);
    if (st != AQ_OK) {
        aq_error_prefix(err, "%s: line %ld", name, lineno);
        return st;
    }
    if (!have_header) return aq_fail(err, AQ_ERR_FORMAT, "%s: no header row (empty file?)", name);
    return AQ_OK;
}

aq_status aq_alloc_table_read_csv(const char *path, aq_alloc_table *t, aq_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f) return aq_fail(err, AQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    aq_status st = aq_alloc_table_read_csv_file(f, path, t, err);
    fclose(f);
    return st;
}
