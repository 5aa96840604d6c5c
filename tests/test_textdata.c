/* test_textdata.c — document splitting, calibration windows and evaluation
 * sequences (src/text/textdata.h). Known answers for TinyStories validation.txt
 * come from the independent Python implementation (tests/scripts/model_ref.py:
 * str.split("\n\n") + strip + its own llama2.c BPE encoder). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int main(void)
{
    test_split();
    test_tinystories();
    AQ_TEST_END();
}
