/* datasrc.c — the data sources of textdata.h: the source list a user gives
 * (files and globs, split / calibration / evaluation), their expansion into
 * files, the readers of the three formats (plain text, JSONL, pre-tokenized
 * ids: docs/DATA.md) and the content fingerprint that ties a work directory
 * to its data. */
#include <glob.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "docs_build.h"
#include "textdata.h"

static const char *const format_names[] = {"auto", "text", "jsonl", "tokens"};
static const char *const role_opts[] = {"--text", "--calib", "--eval"};

int aq_data_format_parse(const char *name)
{
    for (int k = 0; k < 4; k++)
        if (!strcmp(name, format_names[k])) return k;
    return -1;
}

const char *aq_data_format_name(int format)
{
    return format >= 0 && format < 4 ? format_names[format] : "?";
}

int aq_data_spec_roles(const aq_data_spec *s)
{
    int r = 0;
    for (int i = 0; i < s->n; i++)
        r |= 1 << s->src[i].role;
    return r;
}

aq_status aq_data_spec_add(aq_data_spec *s, aq_data_role role, const char *path, aq_error *err)
{
    if (s->n == AQ_DATA_MAX_SOURCES)
        return aq_fail(err, AQ_ERR_ARG, "%s %s: more than %d data sources (use a glob)", role_opts[role], path,
                       AQ_DATA_MAX_SOURCES);
    if (!*path || strlen(path) >= AQ_DATA_PATH)
        return aq_fail(err, AQ_ERR_ARG, "%s: empty or too long path", role_opts[role]);
    int roles = aq_data_spec_roles(s) | 1 << role;
    if ((roles & 1 << AQ_DATA_SPLIT) && roles != 1 << AQ_DATA_SPLIT)
        return aq_fail(err, AQ_ERR_ARG,
                       "--text (split in halves) and --calib/--eval (one side each) cannot be combined");
    s->src[s->n].role = (int)role;
    strcpy(s->src[s->n].path, path);
    s->n++;
    return AQ_OK;
}

void aq_data_spec_describe(const aq_data_spec *s, char *out, size_t n)
{
    if (n == 0) return;
    out[0] = '\0';
    if (s->n == 1 && s->src[0].role == AQ_DATA_SPLIT) {
        snprintf(out, n, "%s", s->src[0].path);
        return;
    }
    size_t len = 0;
    for (int i = 0; i < s->n && len < n; i++) {
        int w = snprintf(out + len, n - len, "%s%s %s", i ? " " : "", role_opts[s->src[i].role], s->src[i].path);
        if (w < 0) break;
        len += (size_t)w;
    }
}

static int by_extension(const char *path)
{
    size_t n = strlen(path);
    if (n >= 6 && !strcmp(path + n - 6, ".jsonl")) return AQ_DATA_JSONL;
    if (n >= 4 && !strcmp(path + n - 4, ".tok")) return AQ_DATA_TOKENS;
    return AQ_DATA_TEXT;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static aq_status add_file(aq_data_file **f, size_t *n, size_t *cap, const char *path, int role, int format,
                          aq_error *err)
{
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 16;
        aq_data_file *g = realloc(*f, c * sizeof *g);
        if (!g) return aq_fail_nomem(err, "data file list", c * sizeof *g);
        *f = g;
        *cap = c;
    }
    char *p = strdup(path);
    if (!p) return aq_fail_nomem(err, "data file list", strlen(path));
    (*f)[*n].path = p;
    (*f)[*n].role = role;
    (*f)[*n].format = format != AQ_DATA_AUTO ? format : by_extension(path);
    ++*n;
    return AQ_OK;
}

/* The files of one source: the path itself, or a glob's matches sorted bytewise. */
static aq_status expand(const char *pat, int role, int format, aq_data_file **f, size_t *n, size_t *cap,
                        aq_error *err)
{
    if (!strpbrk(pat, "*?[")) return add_file(f, n, cap, pat, role, format, err);
    glob_t g;
    int rc = glob(pat, GLOB_ERR, NULL, &g);
    if (rc == GLOB_NOMATCH) {
        globfree(&g);
        return aq_fail(err, AQ_ERR_ARG, "%s %s: no file matches this pattern", role_opts[role], pat);
    }
    if (rc != 0) {
        globfree(&g);
        return aq_fail(err, AQ_ERR_IO, "%s %s: cannot expand the pattern (read error)", role_opts[role], pat);
    }
    /* glob(3) sorts with the locale's collation: sort bytewise so that the order
     * (and so the documents) never depends on the environment */
    qsort(g.gl_pathv, g.gl_pathc, sizeof *g.gl_pathv, cmp_str);
    aq_status st = AQ_OK;
    for (size_t i = 0; i < g.gl_pathc && st == AQ_OK; i++)
        st = add_file(f, n, cap, g.gl_pathv[i], role, format, err);
    globfree(&g);
    return st;
}

aq_status aq_data_files(const aq_data_spec *s, aq_data_file **files, size_t *n, aq_error *err)
{
    *files = NULL;
    *n = 0;
    size_t cap = 0;
    aq_status st = AQ_OK;
    /* calibration side first: split and calib sources, then eval ones */
    static const int order[3] = {AQ_DATA_SPLIT, AQ_DATA_CALIB, AQ_DATA_EVAL};
    for (int r = 0; r < 3 && st == AQ_OK; r++)
        for (int i = 0; i < s->n && st == AQ_OK; i++)
            if (s->src[i].role == order[r]) st = expand(s->src[i].path, order[r], s->format, files, n, &cap, err);
    if (st != AQ_OK) {
        aq_data_files_free(*files, *n);
        *files = NULL;
        *n = 0;
    }
    return st;
}

void aq_data_files_free(aq_data_file *f, size_t n)
{
    for (size_t i = 0; f && i < n; i++)
        free(f[i].path);
    free(f);
}

aq_status aq_data_fingerprint(const aq_data_spec *s, aq_fingerprint *fp, uint64_t *size, aq_error *err)
{
    aq_data_file *f;
    size_t n;
    AQ_TRY(aq_data_files(s, &f, &n, err));
    aq_fp_builder b;
    aq_fp_init(&b);
    aq_fp_add_i64(&b, "format", s->format);
    aq_fp_add_str(&b, "text_field", s->text_field[0] ? s->text_field : "text");
    aq_status st = AQ_OK;
    *size = 0;
    for (size_t i = 0; i < n && st == AQ_OK; i++) {
        aq_fingerprint one;
        uint64_t sz = 0;
        st = aq_fp_file(f[i].path, &one, &sz, err);
        aq_fp_add_i64(&b, "role", f[i].role);
        aq_fp_add_i64(&b, "file_format", f[i].format);
        aq_fp_add_fp(&b, "file", &one, sz);
        *size += sz;
    }
    aq_data_files_free(f, n);
    *fp = aq_fp_final(&b);
    return st;
}

/* ---- readers: each appends the documents of one file to d ---- */

static aq_status read_text(aq_docs *d, const char *path, int src, aq_error *err)
{
    char *buf;
    size_t len;
    AQ_TRY(aq_docs_read_file(path, &buf, &len, err));
    AQ_TRY(aq_docs_own(d, buf, err));
    return aq_docs_split_into(d, buf, len, src, err);
}

/* One JSONL line (number ln, 1-based): its field, stripped, copied to *arena. */
static aq_status jsonl_line(aq_docs *d, const char *path, size_t ln, const char *line, size_t len,
                            const char *field, char **arena, int src, aq_error *err)
{
    json_error_t je;
    json_t *o = json_loadb(line, len, JSON_DECODE_ANY, &je);
    if (!o) return aq_fail(err, AQ_ERR_FORMAT, "%s:%zu: not valid JSON (column %d: %s)", path, ln, je.column, je.text);
    aq_status st = AQ_OK;
    json_t *v = json_object_get(o, field);
    if (!json_is_object(o))
        st = aq_fail(err, AQ_ERR_FORMAT, "%s:%zu: not a JSON object (each line must be one)", path, ln);
    else if (!v)
        st = aq_fail(err, AQ_ERR_FORMAT, "%s:%zu: no \"%s\" field (choose the field with --text-field)", path, ln,
                     field);
    else if (!json_is_string(v))
        st = aq_fail(err, AQ_ERR_FORMAT, "%s:%zu: field \"%s\" is not a string", path, ln, field);
    if (st == AQ_OK) {
        /* a decoded string is never longer than its escaped form, so the arena
         * (the file's size) holds every document and its NUL */
        const char *t = json_string_value(v);
        size_t a = 0, b = json_string_length(v);
        aq_docs_strip(t, &a, &b);
        if (b > a) {
            memcpy(*arena, t + a, b - a);
            (*arena)[b - a] = '\0';
            st = aq_docs_push(d, *arena, NULL, 0, src, ln, err);
            *arena += b - a + 1;
        }
    }
    json_decref(o);
    return st;
}

static aq_status read_jsonl(aq_docs *d, const char *path, const char *field, int src, aq_error *err)
{
    char *buf, *arena;
    size_t len;
    AQ_TRY(aq_docs_read_file(path, &buf, &len, err));
    if (!(arena = malloc(len + 1))) {
        free(buf);
        return aq_fail_nomem(err, path, len + 1);
    }
    aq_status st = aq_docs_own(d, arena, err);
    size_t ln = 0;
    for (size_t i = 0; i < len && st == AQ_OK;) {
        const char *nl = memchr(buf + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - buf) : len, a = i, b = end;
        ln++;
        aq_docs_strip(buf, &a, &b);
        if (b > a) st = jsonl_line(d, path, ln, buf + a, b - a, field, &arena, src, err);
        i = end + 1;
    }
    free(buf);
    return st;
}

static uint64_t le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int k = bytes - 1; k >= 0; k--)
        v = v << 8 | p[k];
    return v;
}

/* The header of a pre-tokenized file (docs/DATA.md): *w bytes per id, *nd
 * documents, *nt ids; the offsets table follows at byte 32. */
static aq_status tok_header(const char *path, const unsigned char *b, size_t len, int *w, uint64_t *nd,
                            uint64_t *nt, aq_error *err)
{
    if (len < 32)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: truncated pre-tokenized file (%zu bytes, the header has 32)", path,
                       len);
    if (memcmp(b, AQ_DATA_TOK_MAGIC, 8))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: not a pre-tokenized file (no \"%s\" magic at byte 0)", path,
                       AQ_DATA_TOK_MAGIC);
    uint64_t ver = le(b + 8, 4), dt = le(b + 12, 4);
    if (ver != AQ_DATA_TOK_VERSION)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: pre-tokenized format version %" PRIu64 ", this adaquant reads %d",
                       path, ver, AQ_DATA_TOK_VERSION);
    if (dt != 2 && dt != 4)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: id width %" PRIu64 " bytes (byte 12) is not 2 or 4", path, dt);
    *w = (int)dt;
    *nd = le(b + 16, 8);
    *nt = le(b + 24, 8);
    /* the exact size, computed without overflow: a short file is truncated */
    uint64_t body = len - 32;
    if (*nd >= body / 8 || *nt > (body - 8 * (*nd + 1)) / dt)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: truncated pre-tokenized file: %zu bytes, the header announces %" PRIu64
                       " documents and %" PRIu64 " ids",
                       path, len, *nd, *nt);
    uint64_t want = 32 + 8 * (*nd + 1) + *nt * dt;
    if (want != len)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: %zu bytes, %" PRIu64 " expected from the header (trailing data)",
                       path, len, want);
    return AQ_OK;
}

static aq_status read_tokens(aq_docs *d, const char *path, int src, aq_error *err)
{
    char *raw;
    size_t len;
    AQ_TRY(aq_docs_read_file(path, &raw, &len, err));
    const unsigned char *b = (const unsigned char *)raw;
    int w = 0;
    uint64_t nd = 0, nt = 0;
    aq_status st = tok_header(path, b, len, &w, &nd, &nt, err);
    if (st != AQ_OK) {
        free(raw);
        return st;
    }
    /* from here the header is checked: offsets and ids lie inside the file */
    uint32_t *ids = malloc((nt ? nt : 1) * sizeof *ids);
    st = ids ? aq_docs_own(d, ids, err) : aq_fail_nomem(err, path, nt * sizeof *ids);
    const unsigned char *off = b + 32, *body = off + 8 * (nd + 1);
    for (uint64_t j = 0; st == AQ_OK && j < nt; j++)
        ids[j] = (uint32_t)le(body + j * (uint64_t)w, w);
    if (st == AQ_OK && le(off, 8) != 0)
        st = aq_fail(err, AQ_ERR_FORMAT, "%s: offset of document 0 is not 0", path);
    for (uint64_t k = 0; k < nd && st == AQ_OK; k++) {
        uint64_t a = le(off + 8 * k, 8), e = le(off + 8 * (k + 1), 8);
        if (e <= a || e > nt)
            st = aq_fail(err, AQ_ERR_FORMAT,
                         "%s: document %" PRIu64 ": offsets %" PRIu64 "..%" PRIu64
                         " are not increasing within the %" PRIu64 " ids (documents must not be empty)",
                         path, k, a, e, nt);
        else
            st = aq_docs_push(d, NULL, ids + a, (size_t)(e - a), src, (size_t)a, err);
    }
    if (st == AQ_OK && le(off + 8 * nd, 8) != nt)
        st = aq_fail(err, AQ_ERR_FORMAT, "%s: the last offset is not the id count %" PRIu64, path, nt);
    free(raw);
    return st;
}

aq_status aq_docs_load(const aq_data_spec *spec, aq_docs *out, aq_error *err)
{
    memset(out, 0, sizeof *out);
    aq_data_file *f;
    size_t nf;
    AQ_TRY(aq_data_files(spec, &f, &nf, err));
    const char *field = spec->text_field[0] ? spec->text_field : "text";
    aq_status st = nf ? AQ_OK : aq_fail(err, AQ_ERR_ARG, "no data source given");
    size_t n_split = 0, n_calib = 0;
    for (size_t i = 0; i < nf && st == AQ_OK; i++) {
        int src;
        st = aq_docs_add_name(out, f[i].path, &src, err);
        if (st != AQ_OK) break;
        if (f[i].format == AQ_DATA_JSONL) st = read_jsonl(out, f[i].path, field, src, err);
        else if (f[i].format == AQ_DATA_TOKENS) st = read_tokens(out, f[i].path, src, err);
        else st = read_text(out, f[i].path, src, err);
        if (f[i].role == AQ_DATA_SPLIT) n_split = out->n;
        if (f[i].role != AQ_DATA_EVAL) n_calib = out->n;
    }
    if (st == AQ_OK && out->n == 0) {
        char what[256];
        aq_data_spec_describe(spec, what, sizeof what);
        st = aq_fail(err, AQ_ERR_ARG, "%s: no documents (the data is empty or only whitespace)", what);
    }
    aq_data_files_free(f, nf);
    if (st != AQ_OK) {
        aq_docs_free(out);
        return st;
    }
    out->n_calib = n_split ? n_split / 2 : n_calib;
    return AQ_OK;
}
