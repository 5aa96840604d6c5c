/* hf_util.c — helpers of the tokenizer.json backend: the string->id and merge
 * hash maps (open addressing; the vocabulary of Llama-3 has 128K entries and
 * 280K merges, looked up for every word), the GPT-2 byte-to-unicode table,
 * UTF-8 validation, and literal/regex patterns run by PCRE2 (UTF + UCP, JIT
 * when the library has it). */
#include <stdlib.h>
#include <string.h>

#include "hf_internal.h"

/* FNV-1a: short keys, no need for anything stronger (the maps are never
 * filled from untrusted keys at a rate that matters). */
uint32_t hf_hash(const char *s, size_t n)
{
    uint32_t x = 2166136261u;
    for (size_t i = 0; i < n; i++) x = (x ^ (unsigned char)s[i]) * 16777619u;
    return x;
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

aq_status hf_strmap_init(hf_strmap *m, size_t expect, aq_error *err)
{
    m->cap = pow2_at_least(expect * 2 + 1);
    m->n = 0;
    m->ids = malloc(m->cap * sizeof *m->ids);
    m->hashes = malloc(m->cap * sizeof *m->hashes);
    if (!m->ids || !m->hashes) {
        hf_strmap_free(m);
        return aq_fail_nomem(err, "tokenizer hash map", expect * 16);
    }
    memset(m->ids, 0xff, m->cap * sizeof *m->ids);
    return AQ_OK;
}

void hf_strmap_free(hf_strmap *m)
{
    free(m->ids);
    free(m->hashes);
    m->ids = NULL;
    m->hashes = NULL;
    m->cap = m->n = 0;
}

int hf_strmap_put(hf_strmap *m, char *const *pieces, const uint32_t *lens, int id)
{
    uint32_t h = hf_hash(pieces[id], lens[id]);
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        int o = m->ids[i];
        if (o < 0) {
            m->ids[i] = id;
            m->hashes[i] = h;
            m->n++;
            return -1;
        }
        if (m->hashes[i] == h && lens[o] == lens[id] && !memcmp(pieces[o], pieces[id], lens[id]))
            return o;
    }
}

int hf_strmap_get(const hf_strmap *m, char *const *pieces, const uint32_t *lens, const char *s,
                  size_t n)
{
    if (!m->cap) return -1;
    uint32_t h = hf_hash(s, n);
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        int o = m->ids[i];
        if (o < 0) return -1;
        if (m->hashes[i] == h && lens[o] == n && !memcmp(pieces[o], s, n)) return o;
    }
}

aq_status hf_mergemap_init(hf_mergemap *m, size_t expect, aq_error *err)
{
    m->cap = pow2_at_least(expect * 2 + 1);
    m->slots = malloc(m->cap * sizeof *m->slots);
    if (!m->slots) return aq_fail_nomem(err, "merge table", m->cap * sizeof *m->slots);
    for (size_t i = 0; i < m->cap; i++) m->slots[i].key = UINT64_MAX;
    return AQ_OK;
}

void hf_mergemap_free(hf_mergemap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = 0;
}

static size_t merge_hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k;
}

/* A later duplicate of a pair overwrites the earlier one, as tokenizers' and
 * transformers.js' maps built from the merges list in order do. */
void hf_mergemap_put(hf_mergemap *m, int a, int b, int rank, int new_id)
{
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t mask = m->cap - 1;
    for (size_t i = merge_hash(k) & mask;; i = (i + 1) & mask) {
        if (m->slots[i].key == UINT64_MAX || m->slots[i].key == k) {
            m->slots[i].key = k;
            m->slots[i].rank = rank;
            m->slots[i].new_id = new_id;
            return;
        }
    }
}

const hf_merge_slot *hf_mergemap_get(const hf_mergemap *m, int a, int b)
{
    if (!m->cap) return NULL;
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t mask = m->cap - 1;
    for (size_t i = merge_hash(k) & mask;; i = (i + 1) & mask) {
        if (m->slots[i].key == k) return &m->slots[i];
        if (m->slots[i].key == UINT64_MAX) return NULL;
    }
}

/* GPT-2's bytes_to_unicode: the printable bytes 33..126, 161..172 and
 * 174..255 stand for themselves; the other 68 bytes, in order, become
 * U+0100, U+0101, ... so every byte is a visible character. The table is
 * computed into each handle (small arithmetic, not Unicode data; no global
 * state). */
static int32_t byte_cp(int b)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return b;
    int k = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) k++;
    return 256 + k;
}

void hf_bytetab_init(hf_bytetab *t)
{
    for (int i = 0; i < 512; i++) t->inv[i] = -1;
    for (int b = 0; b < 256; b++) {
        int32_t cp = byte_cp(b);
        t->inv[cp] = (int16_t)b;
        if (cp < 0x80) {
            t->utf8[b][0] = (char)cp;
            t->len[b] = 1;
        } else {
            t->utf8[b][0] = (char)(0xC0 | (cp >> 6));
            t->utf8[b][1] = (char)(0x80 | (cp & 0x3F));
            t->len[b] = 2;
        }
    }
}

int hf_utf8_next(const unsigned char *s, size_t n, int32_t *cp)
{
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = (int32_t)c;
        return 1;
    }
    int len;
    int32_t v, min;
    if ((c & 0xE0) == 0xC0) len = 2, v = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, v = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, v = c & 0x07, min = 0x10000;
    else return 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

size_t hf_utf8_check(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int32_t cp;
        int l = hf_utf8_next(u + i, n - i, &cp);
        if (!l) return i;
        i += (size_t)l;
    }
    return n;
}

aq_status hf_regex_compile(const char *re, size_t len, const char *where, pcre2_code **out,
                           aq_error *err)
{
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *c = pcre2_compile((PCRE2_SPTR)re, len, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
    if (!c) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return aq_fail(err, AQ_ERR_FORMAT, "%s: regex does not compile at offset %zu: %s", where,
                       (size_t)eo, (const char *)msg);
    }
    /* JIT is an optimisation: without it (library built without, or no
     * executable memory) the interpreter gives the same matches. */
    (void)pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
    *out = c;
    return AQ_OK;
}

int hf_find(const hf_pattern *p, const char *s, size_t n, size_t start, pcre2_match_data *md,
            size_t *ms, size_t *me, aq_error *err)
{
    if (p->lit) {
        if (p->lit_len == 0) return 0;
        for (size_t i = start; i + p->lit_len <= n; i++) {
            if (s[i] == p->lit[0] && !memcmp(s + i, p->lit, p->lit_len)) {
                *ms = i;
                *me = i + p->lit_len;
                return 1;
            }
        }
        return 0;
    }
    while (start <= n) {
        int rc = pcre2_match(p->re, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) return 0;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            /* A match or depth limit hit by the file's regex on this text. */
            aq_fail(err, AQ_ERR_FORMAT, "the tokenizer's regex failed at byte %zu of a word: %s", start,
                    (const char *)msg);
            return -1;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] > ov[0]) {
            *ms = ov[0];
            *me = ov[1];
            return 1;
        }
        /* An empty match: look again one character further on. */
        size_t k = ov[0] + 1;
        while (k < n && ((unsigned char)s[k] & 0xC0) == 0x80) k++;
        start = k;
    }
    return 0;
}

void hf_pattern_free(hf_pattern *p)
{
    free(p->lit);
    if (p->re) pcre2_code_free(p->re);
    p->lit = NULL;
    p->re = NULL;
}

aq_status hf_buf_add(hf_buf *b, const void *s, size_t n, aq_error *err)
{
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n + 1) c *= 2;
        char *q = realloc(b->p, c);
        if (!q) return aq_fail_nomem(err, "tokenizer text buffer", c);
        b->p = q;
        b->cap = c;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return AQ_OK;
}

aq_status hf_ints_add(hf_ints *v, int x, aq_error *err)
{
    if (v->n == v->cap) {
        size_t c = v->cap ? v->cap * 2 : 256;
        int *q = realloc(v->p, c * sizeof *q);
        if (!q) return aq_fail_nomem(err, "token ids", c * sizeof *q);
        v->p = q;
        v->cap = c;
    }
    v->p[v->n++] = x;
    return AQ_OK;
}
