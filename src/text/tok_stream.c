/* tok_stream.c — streaming decode (aq_tok_stream in tokenizer.h).
 *
 * llama2.c: run.c's per-token decode (the piece after the previous token).
 *
 * tokenizer.json: a token's text depends on its neighbours (byte-level BPE
 * and byte_fallback tokens carry parts of a UTF-8 character; Strip and
 * Metaspace decoders treat the first token of a sequence differently). So the
 * stream decodes a window of ids twice and prints the difference:
 *   old = decode(ids[from..read)), new = decode(ids[from..n)),
 *   emit new[len(old)..] unless new ends in an incomplete character.
 * Both decodes start at the same token, so what the decoder does to a first
 * token cancels out; after emitting, the window moves up to the last read
 * position, so each push decodes only a few tokens. An incomplete character
 * shows up as raw trailing bytes or as U+FFFD (decoders that replace invalid
 * UTF-8); either waits for more tokens, and flush emits whatever is left. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

struct aq_tok_stream {
    const aq_tokenizer *t;
    int prev; /* llama2.c: the previous token */
    int *ids; /* tokenizer.json: every id pushed */
    size_t n, cap, from, read;
    char *out;  /* what the last call returned points into this, owned */
};

aq_status aq_tok_stream_new(const aq_tokenizer *t, aq_tok_stream **out, aq_error *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return aq_fail_nomem(err, "token stream", sizeof **out);
    (*out)->t = t;
    (*out)->prev = -1;
    return AQ_OK;
}

void aq_tok_stream_free(aq_tok_stream *s)
{
    if (!s) return;
    free(s->ids);
    free(s->out);
    free(s);
}

/* Length of an incomplete UTF-8 character at the end of s[0..n), or of a
 * trailing U+FFFD (EF BF BD); 0 if s ends on a complete character. */
static size_t incomplete_tail(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n >= 3 && u[n - 3] == 0xEF && u[n - 2] == 0xBF && u[n - 1] == 0xBD) return 3;
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = u[n - back];
        if ((c & 0xC0) == 0x80) continue; /* a continuation byte: look further back */
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

/* Decode ids[a..b) of the stream into a malloc'd string. */
static aq_status window(const aq_tok_stream *s, size_t a, size_t b, char **text, size_t *len,
                        aq_error *err)
{
    return aq_tok_decode_all(s->t, s->ids + a, b - a, text, len, err);
}

/* Emit new[old_len..) of the window ids[from..n) and move the window. */
static aq_status hf_step(aq_tok_stream *s, int final, const char **text, size_t *len,
                         aq_error *err)
{
    char *old = NULL, *cur = NULL;
    size_t old_len = 0, cur_len = 0;
    *text = "";
    *len = 0;
    aq_status st;
    AQ_TRY_GOTO(st, window(s, s->from, s->read, &old, &old_len, err), done);
    AQ_TRY_GOTO(st, window(s, s->from, s->n, &cur, &cur_len, err), done);
    if (cur_len <= old_len || (!final && incomplete_tail(cur, cur_len))) goto done;
    free(s->out);
    s->out = malloc(cur_len - old_len + 1);
    if (!s->out) {
        st = aq_fail_nomem(err, "decoded text", cur_len - old_len + 1);
        goto done;
    }
    memcpy(s->out, cur + old_len, cur_len - old_len);
    s->out[cur_len - old_len] = '\0';
    *text = s->out;
    *len = cur_len - old_len;
    s->from = s->read;
    s->read = s->n;
done:
    free(old);
    free(cur);
    return st;
}

aq_status aq_tok_stream_push(aq_tok_stream *s, int token, const char **text, size_t *len,
                             aq_error *err)
{
    const aq_tokenizer *t = s->t;
    *text = "";
    *len = 0;
    if (token < 0 || token >= t->vocab)
        return aq_fail(err, AQ_ERR_ARG, "tokenizer: token id %d is out of range [0, %d)", token,
                       t->vocab);
    if (t->kind == AQ_TOK_LLAMA2C) {
        int prev = s->prev;
        s->prev = token;
        if (token == AQ_L2CTOK_BOS || token == AQ_L2CTOK_EOS) return AQ_OK;
        return aq_l2ctok_decode(t->l2c, prev, token, text, len, err);
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        int *grown = realloc(s->ids, cap * sizeof *grown);
        if (!grown) return aq_fail_nomem(err, "token stream", cap * sizeof *grown);
        s->ids = grown;
        s->cap = cap;
    }
    s->ids[s->n++] = token;
    return hf_step(s, 0, text, len, err);
}

aq_status aq_tok_stream_flush(aq_tok_stream *s, const char **text, size_t *len, aq_error *err)
{
    *text = "";
    *len = 0;
    if (s->t->kind == AQ_TOK_LLAMA2C || s->read == s->n) return AQ_OK;
    return hf_step(s, 1, text, len, err);
}
