/* l2c_tokenizer.c — llama2.c BPE tokenizer (see l2c_tokenizer.h).
 *
 * Encode reproduces run.c's encode(): same dummy prefix, same UTF-8 grouping
 * (a codepoint is a lead byte plus at most 3 continuation bytes), same byte
 * fallback (or <unk> without byte tokens), same greedy merge order (highest
 * score, leftmost on ties, only scores > -1e10 as run.c's initial best_score). run.c rescans all pairs after
 * each merge (quadratic); here the candidate pairs sit in a heap keyed by
 * (score desc, left position asc) and stale entries are dropped by a per-node
 * version stamp, which picks the very same pair at every step.
 *
 * Pieces are compared as C strings (up to their first NUL), like run.c's
 * strcmp-based lookup. Duplicate pieces resolve to the lowest id. */
#include "l2c_tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../io/llama2c.h"

#define TOK_N_BYTE_TOKENS 256

typedef struct tok_entry {
    const char *s;
    size_t len;
    int id;
} tok_entry;

struct aq_l2ctok {
    aq_l2c_vocab v;
    size_t *clen; /* strlen of each piece */
    size_t max_clen;
    tok_entry *index; /* sorted by (piece, id): lookup by bsearch */
    /* bucket[c] = first index entry that is non-empty with first byte >= c
     * (empty pieces sort before bucket[0]); bucket[256] = n. */
    size_t bucket[257];
    char byte_pieces[TOK_N_BYTE_TOKENS * 2]; /* byte b at [2b], NUL at [2b+1] */
    int byte_id[TOK_N_BYTE_TOKENS];           /* id of <0xHH> (byte fallback), else -1 */
    int byte_fallback;
    int unk_id; /* the "<unk>" piece, -1 if none */
};

/* ---- loading ---- */

/* memcmp order, then shorter first (= strcmp order for NUL-free strings).
 * An inline loop: pieces are a few bytes, a memcmp call costs more. */
static int cmp_bytes(const char *a, size_t na, const char *b, size_t nb)
{
    size_t n = na < nb ? na : nb;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x != y) return x < y ? -1 : 1;
    }
    return na < nb ? -1 : na > nb;
}

static int cmp_entry(const void *pa, const void *pb)
{
    const tok_entry *a = pa, *b = pb;
    int c = cmp_bytes(a->s, a->len, b->s, b->len);
    return c ? c : (a->id > b->id) - (a->id < b->id);
}

/* Lowest id whose piece equals s[0..n), or -1. Binary search within the
 * bucket of pieces that share s's first byte. */
static int lookup(const aq_l2ctok *t, const char *s, size_t n)
{
    size_t b = n ? (unsigned char)s[0] : 0;
    size_t lo = n ? t->bucket[b] : 0, hi = n ? t->bucket[b + 1] : t->bucket[0];
    while (lo < hi) { /* first entry >= s */
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_bytes(t->index[mid].s, t->index[mid].len, s, n) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < (size_t)t->v.n && cmp_bytes(t->index[lo].s, t->index[lo].len, s, n) == 0)
        return t->index[lo].id;
    return -1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The byte of a "<0xHH>" piece, or -1. */
static int byte_piece_value(const char *p, size_t n)
{
    if (n != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return -1;
    int hi = hexval(p[3]), lo = hexval(p[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* Byte fallback needs all 256 byte pieces (anywhere; llama2.c exports put
 * them at ids 3..258); none means a vocabulary without it; some is a broken
 * file. byte_id[b] is the lowest id of <0xbb>. */
static aq_status find_byte_tokens(aq_l2ctok *t, const char *label, aq_error *err)
{
    int found = 0, example = -1;
    for (int b = 0; b < TOK_N_BYTE_TOKENS; b++)
        t->byte_id[b] = -1;
    for (int id = 0; id < t->v.n; id++) {
        int b = byte_piece_value(t->v.pieces[id], (size_t)t->v.lengths[id]);
        if (b < 0 || t->byte_id[b] >= 0) continue;
        t->byte_id[b] = id;
        found++;
        example = id;
    }
    if (found > 0 && found < TOK_N_BYTE_TOKENS) {
        int missing = 0;
        while (t->byte_id[missing] >= 0)
            missing++;
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: %d of the 256 byte tokens are present (e.g. token %d \"%s\") but "
                       "<0x%02X> is missing (expected at token %d in a llama2.c export): an "
                       "incomplete byte fallback (damaged file, or not a llama2.c tokenizer?)",
                       label, found, example, t->v.pieces[example], missing, missing + 3);
    }
    t->byte_fallback = found == TOK_N_BYTE_TOKENS;
    for (int b = 0; b < TOK_N_BYTE_TOKENS; b++) {
        t->byte_pieces[2 * b] = (char)b;
        t->byte_pieces[2 * b + 1] = '\0';
    }
    return AQ_OK;
}

static aq_status tok_build(aq_l2ctok *t, const char *label, aq_error *err)
{
    int n = t->v.n;
    AQ_TRY(find_byte_tokens(t, label, err));
    t->clen = malloc((size_t)n * sizeof *t->clen);
    t->index = malloc((size_t)n * sizeof *t->index);
    if (!t->clen || !t->index)
        return aq_fail_nomem(err, "tokenizer index", (size_t)n * sizeof *t->index);
    for (int i = 0; i < n; i++) {
        t->clen[i] = strlen(t->v.pieces[i]);
        if (t->clen[i] > t->max_clen) t->max_clen = t->clen[i];
        t->index[i] = (tok_entry){t->v.pieces[i], t->clen[i], i};
    }
    qsort(t->index, (size_t)n, sizeof *t->index, cmp_entry);
    size_t k = 0;
    for (int c = 0; c <= 256; c++) {
        while (k < (size_t)n && (t->index[k].len == 0 || (unsigned char)t->index[k].s[0] < c))
            k++;
        t->bucket[c] = k;
    }
    t->unk_id = lookup(t, "<unk>", 5);
    return AQ_OK;
}

/* Takes ownership of *v (also on failure). */
static aq_status tok_from_vocab(aq_l2c_vocab *v, const char *label, aq_l2ctok **out,
                                aq_error *err)
{
    aq_l2ctok *t = calloc(1, sizeof *t);
    if (!t) {
        aq_l2c_vocab_free(v);
        return aq_fail_nomem(err, "tokenizer", sizeof *t);
    }
    t->v = *v;
    memset(v, 0, sizeof *v);
    aq_status st = tok_build(t, label, err);
    if (st != AQ_OK) {
        aq_l2ctok_close(t);
        return st;
    }
    *out = t;
    return AQ_OK;
}

aq_status aq_l2ctok_open(const char *path, int vocab_size, aq_l2ctok **out, aq_error *err)
{
    *out = NULL;
    aq_l2c_vocab v;
    AQ_TRY(aq_l2c_vocab_read(path, vocab_size, &v, err));
    return tok_from_vocab(&v, path, out, err);
}

aq_status aq_l2ctok_open_memory(const void *buf, size_t len, int vocab_size, const char *label,
                                aq_l2ctok **out, aq_error *err)
{
    *out = NULL;
    aq_l2c_vocab v;
    if (!label) label = "<memory>";
    AQ_TRY(aq_l2c_vocab_parse(buf, len, vocab_size, label, &v, err));
    return tok_from_vocab(&v, label, out, err);
}

void aq_l2ctok_close(aq_l2ctok *t)
{
    if (!t) return;
    aq_l2c_vocab_free(&t->v);
    free(t->clen);
    free(t->index);
    free(t);
}

int aq_l2ctok_vocab_size(const aq_l2ctok *t)
{
    return t->v.n;
}

const char *aq_l2ctok_piece(const aq_l2ctok *t, int id)
{
    return id >= 0 && id < t->v.n ? t->v.pieces[id] : NULL;
}

int aq_l2ctok_byte_fallback(const aq_l2ctok *t)
{
    return t->byte_fallback;
}

int aq_l2ctok_unk_id(const aq_l2ctok *t)
{
    return t->unk_id;
}

size_t aq_l2ctok_encode_max(size_t text_len)
{
    return text_len + 3;
}

/* ---- encode ---- */

/* A candidate merge of nodes left,right into id with the pair's score. */
typedef struct tok_pair {
    float score;
    int left, right, id;
    unsigned ver_l, ver_r;
} tok_pair;

/* Workspace of one encode call: a doubly linked list of nodes in text order
 * and a binary max-heap of candidate pairs. */
typedef struct tok_ws {
    int *tok, *prev, *next;
    unsigned *ver;
    tok_pair *heap;
    size_t nheap;
    char *buf; /* concatenation of two pieces */
} tok_ws;

/* a before b: higher score, then leftmost (node indices follow text order). */
static int pair_before(const tok_pair *a, const tok_pair *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(tok_ws *w, tok_pair p)
{
    size_t i = w->nheap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&p, &w->heap[parent])) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = p;
}

static tok_pair heap_pop(tok_ws *w)
{
    tok_pair top = w->heap[0], last = w->heap[--w->nheap];
    size_t i = 0, n = w->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && pair_before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!pair_before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

/* Push the merge of nodes l and r if their concatenation is a piece whose
 * score beats run.c's initial best_score of -1e10. Without byte fallback
 * <unk> never merges (SentencePiece); with it, run.c's plain string rule. */
static void push_candidate(const aq_l2ctok *t, tok_ws *w, int l, int r)
{
    if (l < 0 || r < 0) return;
    int a = w->tok[l], b = w->tok[r];
    if (!t->byte_fallback && t->unk_id >= 0 && (a == t->unk_id || b == t->unk_id)) return;
    size_t na = t->clen[a], nb = t->clen[b];
    memcpy(w->buf, t->v.pieces[a], na);
    memcpy(w->buf + na, t->v.pieces[b], nb);
    int id = lookup(t, w->buf, na + nb);
    if (id < 0 || !(t->v.scores[id] > (float)-1e10)) return;
    heap_push(w, (tok_pair){t->v.scores[id], l, r, id, w->ver[l], w->ver[r]});
}

/* Greedy BPE merges over nodes 0..m-1; writes the result to ids, returns its length. */
static size_t merge_all(const aq_l2ctok *t, tok_ws *w, size_t m, int *ids)
{
    for (size_t i = 0; i < m; i++) {
        w->prev[i] = (int)i - 1;
        w->next[i] = i + 1 < m ? (int)i + 1 : -1;
        w->ver[i] = 0;
    }
    for (size_t i = 0; i + 1 < m; i++)
        push_candidate(t, w, (int)i, (int)i + 1);
    while (w->nheap) {
        tok_pair p = heap_pop(w);
        /* Stale if either node changed (merged or merged away) since the push. */
        if (w->ver[p.left] != p.ver_l || w->ver[p.right] != p.ver_r || w->next[p.left] != p.right)
            continue;
        int l = p.left, r = p.right;
        w->tok[l] = p.id;
        w->ver[l]++;
        w->ver[r]++; /* r is gone: its version never matches again */
        w->next[l] = w->next[r];
        if (w->next[r] >= 0) w->prev[w->next[r]] = l;
        push_candidate(t, w, w->prev[l], l);
        push_candidate(t, w, l, w->next[l]);
    }
    size_t n = 0;
    for (int i = m ? 0 : -1; i >= 0; i = w->next[i])
        ids[n++] = w->tok[i];
    return n;
}

/* Whether cp[0..cl) is one well-formed UTF-8 character that is not an ASCII
 * control: safe to show in a message. */
static int printable_char(const char *cp, size_t cl)
{
    unsigned char c = (unsigned char)cp[0];
    size_t want = c < 0x80 ? 1 : c >= 0xF0 && c < 0xF5 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (want != cl || (cl == 1 && (c < 0x20 || c == 0x7F))) return 0;
    for (size_t i = 1; i < cl; i++)
        if (((unsigned char)cp[i] & 0xC0) != 0x80) return 0;
    return 1;
}

/* One codepoint (or stray byte run) cp[0..cl) at byte offset off that is not
 * a piece: byte tokens, or <unk> (one per run of unknowns), or an error. */
static aq_status unknown_cp(const aq_l2ctok *t, const char *cp, size_t cl, size_t off, int *tok,
                            size_t *m, int *in_unk_run, size_t *n_unknown, aq_error *err)
{
    if (t->byte_fallback) {
        for (size_t i = 0; i < cl; i++)
            tok[(*m)++] = t->byte_id[(unsigned char)cp[i]];
        return AQ_OK;
    }
    if (t->unk_id < 0) {
        char hex[16], shown[16] = "";
        size_t k = 0;
        for (size_t i = 0; i < cl; i++)
            k += (size_t)snprintf(hex + k, sizeof hex - k, "%s%02X", i ? " " : "",
                                  (unsigned char)cp[i]);
        if (printable_char(cp, cl)) snprintf(shown, sizeof shown, "\"%.*s\" ", (int)cl, cp);
        return aq_fail(err, AQ_ERR_ARG,
                       "tokenizer: the character %s(bytes %s) at byte offset %zu of the text is "
                       "not in the vocabulary, which has neither byte tokens nor an <unk> token "
                       "to map it to",
                       shown, hex, off);
    }
    (*n_unknown)++;
    if (!*in_unk_run) tok[(*m)++] = t->unk_id;
    *in_unk_run = 1;
    return AQ_OK;
}

/* Initial tokens: dummy prefix, then one per codepoint (or its bytes, or
 * <unk>). The dummy prefix counts as a character at offset 0. */
static aq_status split_text(const aq_l2ctok *t, const char *text, int *tok, size_t *m,
                            size_t *n_unknown, aq_error *err)
{
    if (text[0] == '\0') return AQ_OK;
    int in_unk = 0;
    int sp = lookup(t, " ", 1);
    if (sp >= 0)
        tok[(*m)++] = sp;
    else
        AQ_TRY(unknown_cp(t, " ", 1, 0, tok, m, &in_unk, n_unknown, err));
    char cp[4];
    size_t cl = 0;
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        if ((*c & 0xC0) != 0x80) cl = 0; /* a lead byte starts a new codepoint */
        cp[cl++] = (char)*c;
        if ((c[1] & 0xC0) == 0x80 && cl < 4) continue;
        int id = lookup(t, cp, cl);
        if (id >= 0) {
            tok[(*m)++] = id;
            in_unk = 0;
        } else {
            size_t off = (size_t)((const char *)c - text) + 1 - cl;
            AQ_TRY(unknown_cp(t, cp, cl, off, tok, m, &in_unk, n_unknown, err));
        }
        cl = 0;
    }
    return AQ_OK;
}

aq_status aq_l2ctok_encode(const aq_l2ctok *t, const char *text, int bos, int eos, int *ids,
                           size_t cap, size_t *n, size_t *n_unknown, aq_error *err)
{
    *n = 0;
    size_t tl = strlen(text), need = aq_l2ctok_encode_max(tl), unk = 0;
    if (n_unknown) *n_unknown = 0;
    if (cap < need)
        return aq_fail(err, AQ_ERR_ARG,
                       "tokenizer: output room for %zu ids, need %zu for a %zu-byte text", cap,
                       need, tl);
    size_t m = need;
    tok_ws w = {0};
    w.tok = malloc(m * sizeof *w.tok);
    w.prev = malloc(m * sizeof *w.prev);
    w.next = malloc(m * sizeof *w.next);
    w.ver = malloc(m * sizeof *w.ver);
    w.heap = malloc(3 * m * sizeof *w.heap); /* m-1 initial pairs + 2 per merge */
    w.buf = malloc(2 * t->max_clen + 1);
    aq_status st = AQ_OK;
    if (!w.tok || !w.prev || !w.next || !w.ver || !w.heap || !w.buf) {
        st = aq_fail_nomem(err, "tokenizer workspace", 3 * m * sizeof *w.heap);
        goto done;
    }
    size_t k = 0;
    if (bos && t->v.n > AQ_L2CTOK_BOS) w.tok[k++] = AQ_L2CTOK_BOS;
    AQ_TRY_GOTO(st, split_text(t, text, w.tok, &k, &unk, err), done);
    k = merge_all(t, &w, k, ids);
    if (eos && t->v.n > AQ_L2CTOK_EOS) ids[k++] = AQ_L2CTOK_EOS;
    *n = k;
    if (n_unknown) *n_unknown = unk;
done:
    free(w.tok);
    free(w.prev);
    free(w.next);
    free(w.ver);
    free(w.heap);
    free(w.buf);
    return st;
}

/* ---- decode ---- */

aq_status aq_l2ctok_decode(const aq_l2ctok *t, int prev_token, int token, const char **piece,
                           size_t *len, aq_error *err)
{
    if (token < 0 || token >= t->v.n)
        return aq_fail(err, AQ_ERR_ARG, "tokenizer: token id %d is out of range [0, %d)", token,
                       t->v.n);
    const char *p = t->v.pieces[token];
    size_t n = t->clen[token];
    /* After BOS, SentencePiece drops the dummy-prefix space (run.c, PR #89). */
    if (prev_token == AQ_L2CTOK_BOS && n > 0 && p[0] == ' ') p++, n--;
    int b = t->byte_fallback ? byte_piece_value(p, n) : -1;
    if (b >= 0) {
        p = t->byte_pieces + 2 * b;
        n = 1;
    }
    *piece = p;
    *len = n;
    return AQ_OK;
}

aq_status aq_l2ctok_decode_all(const aq_l2ctok *t, const int *ids, size_t n, char **out,
                               size_t *out_len, aq_error *err)
{
    *out = NULL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->v.n)
            return aq_fail(err, AQ_ERR_ARG,
                           "tokenizer: token id %d at position %zu is out of range [0, %d)", ids[i],
                           i, t->v.n);
        total += t->clen[ids[i]];
    }
    char *s = malloc(total + 1);
    if (!s) return aq_fail_nomem(err, "decoded text", total + 1);
    size_t k = 0;
    int prev = -1;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] != AQ_L2CTOK_BOS && ids[i] != AQ_L2CTOK_EOS) {
            const char *p;
            size_t len;
            aq_l2ctok_decode(t, prev, ids[i], &p, &len, err); /* ids were checked above */
            memcpy(s + k, p, len);
            k += len;
        }
        prev = ids[i];
    }
    s[k] = '\0';
    *out = s;
    if (out_len) *out_len = k;
    return AQ_OK;
}
