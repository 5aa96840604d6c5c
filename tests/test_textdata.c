/* test_textdata.c — document splitting, calibration windows and evaluation
 * sequences (src/text/textdata.h), and the other containers of the same
 * documents (JSONL, several files and globs, pre-tokenized ids, separate
 * calibration / evaluation sources: docs/DATA.md). Known answers for
 * TinyStories validation.txt come from the independent Python implementation
 * (tests/scripts/model_ref.py: str.split("\n\n") + strip + its own llama2.c
 * BPE encoder). The other containers are written by tests/scripts/write_data.py
 * (json module; ids from tests/scripts/tok_reference.py, an independent
 * tokenizer) into the directory given as argv[1]: the same documents in another
 * container must give exactly the windows and sequences of the text path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/text/textdata.h"
#include "testutil.h"

static void expect_docs(const char *text, int n, const char *const *want)
{
    aq_docs d;
    aq_error err = {0};
    CHECK_OK(aq_docs_split(text, strlen(text), "mem", &d, &err), &err);
    CHECK_MSG(d.n == (size_t)n, "'%s': %zu docs, want %d", text, d.n, n);
    for (int i = 0; i < n && i < (int)d.n; i++)
        CHECK_MSG(!strcmp(d.doc[i], want[i]), "doc %d '%s'", i, d.doc[i]);
    aq_docs_free(&d);
}

static void test_split(void)
{
    expect_docs("a\n\nb", 2, (const char *[]){"a", "b"});
    expect_docs("  a b \n\n\n c\n\n\n\n", 2, (const char *[]){"a b", "c"});
    expect_docs("one\ntwo\n\n\n\n\nthree", 2, (const char *[]){"one\ntwo", "three"});
    expect_docs("x\r\n\r\ny", 1,
                (const char *[]){"x\r\n\r\ny"}); /* CRLF blank line is not a separator */
    expect_docs("\n\nlast\n", 1, (const char *[]){"last"});
    aq_docs d;
    aq_error err = {0};
    CHECK(aq_docs_split("", 0, "empty.txt", &d, &err) == AQ_ERR_ARG);
    CHECK(strstr(err.msg, "empty.txt") && strstr(err.msg, "no documents"));
    CHECK(aq_docs_split(" \n\n\t\n", 5, "ws", &d, &err) == AQ_ERR_ARG);
    CHECK(aq_docs_read("/nonexistent/x.txt", &d, &err) == AQ_ERR_IO);
    CHECK(strstr(err.msg, "/nonexistent/x.txt") != NULL);
    size_t f, c;
    CHECK_OK(aq_docs_split("a\n\nb\n\nc", 7, "m", &d, &err), &err);
    aq_docs_calib_range(&d, &f, &c);
    CHECK(f == 0 && c == 1);
    aq_docs_eval_range(&d, &f, &c);
    CHECK(f == 1 && c == 2);
    aq_docs_free(&d);
}

static void test_tinystories(void)
{
    char *tp = aq_test_asset("models/stories260K/tok512.bin");
    char *xp = aq_test_asset("data/tinystories/validation.txt");
    aq_error err = {0};
    aq_tokenizer *tok = NULL;
    aq_docs d = {0};
    CHECK_OK(aq_tok_open(tp, 512, &tok, &err), &err);
    CHECK_OK(aq_docs_read(xp, &d, &err), &err);
    if (!tok || !d.n) return;
    CHECK(d.n == 4300);
    int *w = NULL;
    CHECK_OK(aq_calib_windows(tok, &d, 64, 256, &w, &err), &err);
    static const int head[20] = {1,   301, 427, 309, 426, 301, 427, 309, 394, 265,
                                 262, 415, 271, 422, 280, 295, 269, 336, 432, 313};
    long sum = 0;
    for (int i = 0; w && i < 64 * 256; i++)
        sum += w[i];
    CHECK(w && !memcmp(w, head, sizeof head));
    CHECK_MSG(sum == 5713340, "window token sum %ld", sum);
    CHECK(w && w[64 * 256 - 1] == 433);
    free(w);
    /* the calibration stream holds 192,694 tokens */
    CHECK_OK(aq_calib_windows(tok, &d, 1, 192694, &w, &err), &err);
    free(w);
    CHECK(aq_calib_windows(tok, &d, 1, 192695, &w, &err) == AQ_ERR_ARG);
    CHECK(aq_calib_windows(tok, &d, 1000, 256, &w, &err) == AQ_ERR_ARG);
    printf("short stream: %s\n", err.msg);
    CHECK(strstr(err.msg, "192694") && strstr(err.msg, "256000"));
    /* the calibration documents as sequences: 2150 of them, holding the same
     * 192,694 tokens as the stream (every one is shorter than 512) */
    aq_seqs cs;
    CHECK_OK(aq_calib_seqs(tok, &d, 512, 0, &cs, &err), &err);
    CHECK(cs.n == 2150 && cs.n_tokens == 192694 && cs.n_predicted == 192694 - 2150);
    CHECK(!memcmp(cs.tokens, head, sizeof head)); /* document 0 starts the stream */
    aq_seqs_free(&cs);
    CHECK_OK(aq_calib_seqs(tok, &d, 16, 3, &cs, &err), &err);
    CHECK(cs.n == 3 && cs.lens[0] == 16 && cs.n_tokens <= 48);
    aq_seqs_free(&cs);
    aq_seqs s;
    CHECK_OK(aq_eval_seqs(tok, &d, 512, 0, &s, &err), &err);
    CHECK(s.n == 2150 && s.n_predicted == 190118 && s.n_tokens == 190118 + 2150);
    int bos_ok = 1, max = 0;
    size_t off = 0;
    for (int i = 0; i < s.n; off += (size_t)s.lens[i++]) {
        bos_ok &= s.tokens[off] == aq_tok_bos_id(tok);
        max = s.lens[i] > max ? s.lens[i] : max;
    }
    CHECK(bos_ok && max == 469); /* the longest evaluation document (model_ref.py) */
    aq_seqs_free(&s);
    CHECK_OK(aq_eval_seqs(tok, &d, 512, 10, &s, &err), &err);
    CHECK(s.n == 10);
    aq_seqs_free(&s);
    aq_docs_free(&d);
    aq_tok_close(tok);
    free(tp);
    free(xp);
}

/* ---- the other containers (argv[1]: write_data.py's directory) ---- */

static const char *g_dir;

static aq_data_spec spec_of(int role, const char *name, int format, const char *field)
{
    aq_data_spec s;
    memset(&s, 0, sizeof s);
    s.format = format;
    if (field) strcpy(s.text_field, field);
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    aq_error e = {0};
    CHECK_OK(aq_data_spec_add(&s, (aq_data_role)role, p, &e), &e);
    return s;
}

static void add_src(aq_data_spec *s, int role, const char *name)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    aq_error e = {0};
    CHECK_OK(aq_data_spec_add(s, (aq_data_role)role, p, &e), &e);
}

static int same_seqs(const aq_seqs *a, const aq_seqs *b)
{
    return a->n == b->n && a->n_tokens == b->n_tokens && a->n_predicted == b->n_predicted &&
           !memcmp(a->lens, b->lens, (size_t)a->n * sizeof(int)) &&
           !memcmp(a->tokens, b->tokens, a->n_tokens * sizeof(int));
}

/* What the text path gives (computed once per reference): the calibration
 * stream cut into 16 windows covering all of it but a tail of < 16 tokens,
 * and the evaluation sequences. */
typedef struct expected {
    size_t n, n_calib;
    int S, T;
    int *win;
    aq_seqs eval;
} expected;

static void expect_of(const aq_tokenizer *tok, const aq_docs *ref, expected *x)
{
    aq_error e = {0};
    aq_seqs a = {0};
    memset(x, 0, sizeof *x);
    x->n = ref->n;
    x->n_calib = ref->n_calib;
    /* (2048 > the longest TinyStories document: the whole stream; a longer
     * cap would only make the packed buffer, count x max_len ids, bigger) */
    CHECK_OK(aq_calib_seqs(tok, ref, 2048, 0, &a, &e), &e);
    x->S = 16;
    x->T = (int)(a.n_tokens / 16);
    aq_seqs_free(&a);
    CHECK_OK(aq_calib_windows(tok, ref, x->S, x->T, &x->win, &e), &e);
    CHECK_OK(aq_eval_seqs(tok, ref, 512, 0, &x->eval, &e), &e);
}

static void expect_free(expected *x)
{
    free(x->win);
    aq_seqs_free(&x->eval);
}

/* The documents of s (another container) must give exactly x. */
static void check_same(const aq_tokenizer *tok, const expected *x, aq_data_spec s, const char *what)
{
    aq_docs d;
    aq_error e = {0};
    CHECK_OK(aq_docs_load(&s, &d, &e), &e);
    CHECK_MSG(d.n == x->n && d.n_calib == x->n_calib, "%s: %zu documents (%zu calibration), want %zu (%zu)", what,
              d.n, d.n_calib, x->n, x->n_calib);
    int *w = NULL;
    aq_seqs q = {0};
    if (d.n == x->n) {
        CHECK_OK(aq_calib_windows(tok, &d, x->S, x->T, &w, &e), &e);
        CHECK_MSG(w && !memcmp(w, x->win, (size_t)x->S * (size_t)x->T * sizeof(int)),
                  "%s: calibration windows differ", what);
        CHECK_OK(aq_eval_seqs(tok, &d, 512, 0, &q, &e), &e);
        CHECK_MSG(same_seqs(&q, &x->eval), "%s: evaluation sequences differ", what);
    }
    free(w);
    aq_seqs_free(&q);
    aq_docs_free(&d);
}

/* loading s (or, with use = 1, its evaluation sequences) fails with code and
 * a message holding both needles */
static void expect_error(const aq_tokenizer *tok, aq_data_spec s, int use, aq_status code, const char *n1,
                         const char *n2)
{
    aq_docs d;
    aq_seqs q = {0};
    aq_error e = {0};
    aq_status st = aq_docs_load(&s, &d, &e);
    if (use && st == AQ_OK) st = aq_eval_seqs(tok, &d, 512, 0, &q, &e);
    printf("expected error: %s\n", e.msg);
    CHECK_MSG(st == code && strstr(e.msg, n1) && strstr(e.msg, n2), "want %d '%s' '%s', got %d: %s", code, n1, n2,
              st, e.msg);
    aq_seqs_free(&q);
    aq_docs_free(&d);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    if (f && fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
        rewind(f);
        *len = buf ? fread(buf, 1, (size_t)n, f) : 0;
    }
    if (f) fclose(f);
    return buf;
}

/* Brute force over damaged copies of small valid files: every proper prefix
 * of a pre-tokenized file is reported as truncated, and every byte of its
 * header and offsets flipped gives an error or valid documents (never a crash
 * or an out-of-range read: the ASan pass runs this); every prefix of a JSONL
 * file loads or names its file and a line. */
static void test_damaged(const aq_tokenizer *tok)
{
    char *tmp = aq_test_tmpdir("textdata_damaged"), src[1024], dst[1100];
    snprintf(src, sizeof src, "%s/small.tok", g_dir);
    snprintf(dst, sizeof dst, "%s/x.tok", tmp);
    size_t len = 0, bad = 0;
    char *good = slurp(src, &len);
    CHECK(good && len == 32 + 8 * 4 + 2 * 9); /* write_data.py: 3 documents, 9 uint16 ids */
    for (size_t cut = 0; good && cut <= len + 64; cut++) {
        int flip = cut > len;
        size_t at = cut - len - 1, n = flip ? len : cut;
        if (flip) good[at] ^= 0x55;
        FILE *f = fopen(dst, "wb");
        if (f) fwrite(good, 1, n, f), fclose(f);
        if (flip) good[at] ^= 0x55;
        aq_data_spec s;
        memset(&s, 0, sizeof s);
        aq_error e = {0};
        CHECK_OK(aq_data_spec_add(&s, AQ_DATA_CALIB, dst, &e), &e);
        aq_docs d;
        aq_status st = aq_docs_load(&s, &d, &e);
        aq_seqs q = {0};
        if (st == AQ_OK) st = aq_calib_seqs(tok, &d, 64, 0, &q, &e);
        aq_seqs_free(&q);
        aq_docs_free(&d);
        if (!flip) bad += cut < len ? !(st == AQ_ERR_FORMAT && strstr(e.msg, "truncated") && strstr(e.msg, dst))
                                    : st != AQ_OK;
        else bad += st != AQ_OK && !strstr(e.msg, dst);
    }
    CHECK_MSG(bad == 0, "%zu damaged copies of small.tok not reported as such", bad);
    free(good);
    snprintf(src, sizeof src, "%s/bad-field.jsonl", g_dir);
    snprintf(dst, sizeof dst, "%s/x.jsonl", tmp);
    good = slurp(src, &len);
    bad = 0;
    for (size_t cut = 0; good && cut < len; cut++) {
        FILE *f = fopen(dst, "wb");
        if (f) fwrite(good, 1, cut, f), fclose(f);
        aq_data_spec s;
        memset(&s, 0, sizeof s);
        aq_error e = {0};
        CHECK_OK(aq_data_spec_add(&s, AQ_DATA_SPLIT, dst, &e), &e);
        aq_docs d;
        aq_status st = aq_docs_load(&s, &d, &e);
        aq_docs_free(&d);
        char where[1200];
        snprintf(where, sizeof where, "%s:", dst);
        /* empty prefixes hold no document; the others name file and line */
        bad += st != AQ_OK && !(strstr(e.msg, where) || strstr(e.msg, "no documents"));
    }
    CHECK_MSG(bad == 0, "%zu prefixes of a JSONL file without a clear error", bad);
    free(good);
    unlink(dst);
    snprintf(dst, sizeof dst, "%s/x.tok", tmp);
    unlink(dst);
    rmdir(tmp);
    free(tmp);
}

static void test_sources(const char *dir)
{
    g_dir = dir;
    char *tp = aq_test_asset("models/stories260K/tok512.bin");
    char *xp = aq_test_asset("data/tinystories/validation.txt");
    aq_error e = {0};
    aq_tokenizer *tok = NULL;
    aq_docs ref = {0}, head = {0};
    CHECK_OK(aq_tok_open(tp, 512, &tok, &e), &e);
    CHECK_OK(aq_docs_read(xp, &ref, &e), &e);
    char hp[1024];
    snprintf(hp, sizeof hp, "%s/head.txt", dir);
    CHECK_OK(aq_docs_read(hp, &head, &e), &e);
    if (!tok || !ref.n || !head.n) return;
    CHECK(head.n == 200); /* write_data.py's HEAD */
    expected full, hx;
    expect_of(tok, &ref, &full);
    expect_of(tok, &head, &hx);
    check_same(tok, &full, spec_of(AQ_DATA_SPLIT, "full.jsonl", 0, NULL), "JSONL");
    check_same(tok, &hx, spec_of(AQ_DATA_SPLIT, "story.jsonl", 0, "story"), "JSONL --text-field story");
    check_same(tok, &full, spec_of(AQ_DATA_SPLIT, "part-*.txt", 0, NULL), "a glob of 7 text files");
    aq_data_spec s = spec_of(AQ_DATA_CALIB, "calib-*.txt", 0, NULL);
    add_src(&s, AQ_DATA_EVAL, "eval.jsonl");
    check_same(tok, &full, s, "--calib 3 text files --eval JSONL");
    /* pre-tokenized (Python ids, no BOS) vs the C encoder on the same documents */
    check_same(tok, &hx, spec_of(AQ_DATA_SPLIT, "head.u16.tok", 0, NULL), "pre-tokenized uint16");
    check_same(tok, &hx, spec_of(AQ_DATA_SPLIT, "head-?.u32.tok", 0, NULL), "pre-tokenized uint32, 2 files");
    s = spec_of(AQ_DATA_SPLIT, "head.u16.tok", 0, NULL);
    strcat(s.src[0].path, ".bin"); /* no extension to tell: --data-format tokens */
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "cp '%s/head.u16.tok' '%s'", dir, s.src[0].path);
    CHECK(system(cmd) == 0);
    s.format = AQ_DATA_TOKENS;
    check_same(tok, &hx, s, "pre-tokenized, --data-format tokens");
    unlink(s.src[0].path);
    /* bad inputs: each error names the file and the line or position */
    expect_error(tok, spec_of(AQ_DATA_SPLIT, "story.jsonl", 0, NULL), 0, AQ_ERR_FORMAT, "story.jsonl:1:",
                 "field \"text\" is not a string");
    expect_error(tok, spec_of(AQ_DATA_SPLIT, "bad-field.jsonl", 0, NULL), 0, AQ_ERR_FORMAT, "bad-field.jsonl:3:",
                 "no \"text\" field");
    expect_error(tok, spec_of(AQ_DATA_SPLIT, "bad-json.jsonl", 0, NULL), 0, AQ_ERR_FORMAT, "bad-json.jsonl:2:",
                 "not valid JSON");
    expect_error(tok, spec_of(AQ_DATA_SPLIT, "bad-array.jsonl", 0, NULL), 0, AQ_ERR_FORMAT, "bad-array.jsonl:1:",
                 "not a JSON object");
    expect_error(tok, spec_of(AQ_DATA_SPLIT, "bad-nul.jsonl", 0, NULL), 0, AQ_ERR_FORMAT, "bad-nul.jsonl:2:",
                 "\\u0000 is not allowed"); /* jansson refuses it (no JSON_ALLOW_NUL): never a cut document */
    expect_error(tok, spec_of(AQ_DATA_SPLIT, "bad-nul.txt", 0, NULL), 0, AQ_ERR_FORMAT, "bad-nul.txt",
                 "a NUL byte at byte offset 19");
    expect_error(tok, spec_of(AQ_DATA_SPLIT, "bad-header.tok", 0, NULL), 0, AQ_ERR_FORMAT, "bad-header.tok",
                 "truncated");
    expect_error(tok, spec_of(AQ_DATA_SPLIT, "bad-body.tok", 0, NULL), 0, AQ_ERR_FORMAT, "bad-body.tok",
                 "truncated");
    expect_error(tok, spec_of(AQ_DATA_SPLIT, "bad-magic.tok", 0, NULL), 0, AQ_ERR_FORMAT, "bad-magic.tok",
                 "magic");
    expect_error(tok, spec_of(AQ_DATA_SPLIT, "bad-id.tok", 0, NULL), 1, AQ_ERR_FORMAT, "bad-id.tok: token 4 ",
                 "id 512 >= the vocabulary size 512");
    expect_error(tok, spec_of(AQ_DATA_SPLIT, "nothing-*.txt", 0, NULL), 0, AQ_ERR_ARG, "nothing-*.txt",
                 "no file matches");
    expect_error(tok, spec_of(AQ_DATA_SPLIT, "head.txt", AQ_DATA_TOKENS, NULL), 0, AQ_ERR_FORMAT, "head.txt",
                 "not a pre-tokenized file");
    test_damaged(tok);
    aq_docs d;
    s = spec_of(AQ_DATA_SPLIT, "bad-id.tok", 0, NULL);
    CHECK_OK(aq_docs_load(&s, &d, &e), &e);
    CHECK(aq_docs_check_ids(&d, 512, &e) == AQ_ERR_FORMAT && strstr(e.msg, "token 4"));
    CHECK_OK(aq_docs_check_ids(&d, 513, &e), &e);
    aq_docs_free(&d);
    expect_free(&full);
    expect_free(&hx);
    aq_docs_free(&head);
    aq_docs_free(&ref);
    aq_tok_close(tok);
    free(tp);
    free(xp);
}

int main(int argc, char **argv)
{
    test_split();
    test_tinystories();
    if (argc > 1) test_sources(argv[1]);
    AQ_TEST_END();
}
