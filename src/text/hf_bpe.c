/* hf_bpe.c — the BPE model of tokenizer.json, as the `tokenizers` library
 * runs it on one word: each character becomes its vocabulary id (or its
 * <0xXX> byte tokens with byte_fallback, or the unk token, fused with a
 * preceding unk when fuse_unk), then the adjacent pair with the lowest merge
 * rank is merged, leftmost first, until no pair has a merge. A binary heap of
 * candidate merges (rank, position) makes this O(n log n); stale candidates
 * are dropped when popped, as tokenizers does (checked by the merged id).
 * ignore_merges (Llama-3): a word that is itself in the vocabulary is that one
 * token.
 *
 * A character whose id takes part in no merge splits the word into parts that
 * cannot interact, so the merge loop runs on each part separately: the result
 * is the same, and a word of megabytes (SentencePiece-style files have no
 * pre-tokenizer, so the whole text is one word) needs memory per part only.
 *
 * The context (hf_bpe_cache) belongs to one encode call: scratch arrays and a
 * bounded cache of the ids of words already seen. The handle is never
 * written. */
#include <stdlib.h>
#include <string.h>

#include "hf_internal.h"

#define CACHE_MAX_WORD 64       /* longer words are not cached */
#define CACHE_MAX_ENTRIES 65536 /* the cache stops growing there */

typedef struct sym {
    int id, prev, next, alive;
} sym;

typedef struct hent {
    int rank, pos, new_id;
} hent;

typedef struct centry {
    size_t key_off, ids_off;
    uint32_t key_len, n_ids, hash;
} centry;

struct hf_bpe_cache {
    sym *syms;
    size_t nsym, capsym;
    hent *heap;
    size_t nheap, capheap;
    int32_t *slots; /* index into entries, -1 empty */
    size_t cap;
    centry *entries;
    size_t n;
    hf_buf keys;
    hf_ints ids;
};

hf_bpe_cache *hf_bpe_cache_new(void)
{
    hf_bpe_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->cap = 1 << 12;
    c->slots = malloc(c->cap * sizeof *c->slots);
    c->entries = malloc(c->cap / 2 * sizeof *c->entries);
    if (!c->slots || !c->entries) {
        hf_bpe_cache_free(c);
        return NULL;
    }
    memset(c->slots, 0xff, c->cap * sizeof *c->slots);
    return c;
}

void hf_bpe_cache_free(hf_bpe_cache *c)
{
    if (!c) return;
    free(c->syms);
    free(c->heap);
    free(c->slots);
    free(c->entries);
    free(c->keys.p);
    free(c->ids.p);
    free(c);
}

static int cache_find(const hf_bpe_cache *c, const char *w, size_t n, uint32_t hash)
{
    size_t mask = c->cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        int e = c->slots[i];
        if (e < 0) return -1;
        const centry *ce = &c->entries[e];
        if (ce->hash == hash && ce->key_len == n && !memcmp(c->keys.p + ce->key_off, w, n)) return e;
    }
}

/* Double the table (entries stay; slots are rebuilt). Failure just stops caching. */
static int cache_grow(hf_bpe_cache *c)
{
    size_t cap = c->cap * 2;
    int32_t *slots = malloc(cap * sizeof *slots);
    centry *ent = realloc(c->entries, cap / 2 * sizeof *ent);
    if (!slots || !ent) {
        free(slots);
        if (ent) c->entries = ent;
        return 0;
    }
    c->entries = ent;
    memset(slots, 0xff, cap * sizeof *slots);
    for (size_t e = 0; e < c->n; e++) {
        size_t i = ent[e].hash & (cap - 1);
        while (slots[i] >= 0) i = (i + 1) & (cap - 1);
        slots[i] = (int32_t)e;
    }
    free(c->slots);
    c->slots = slots;
    c->cap = cap;
    return 1;
}

static void cache_put(hf_bpe_cache *c, const char *w, size_t n, uint32_t hash, const int *ids, size_t k)
{
    if (c->n >= CACHE_MAX_ENTRIES) return;
    if (c->n + 1 > c->cap / 2 && !cache_grow(c)) return;
    centry e = {c->keys.n, c->ids.n, (uint32_t)n, (uint32_t)k, hash};
    if (hf_buf_add(&c->keys, w, n, NULL) != AQ_OK) return;
    for (size_t i = 0; i < k; i++)
        if (hf_ints_add(&c->ids, ids[i], NULL) != AQ_OK) return;
    size_t mask = c->cap - 1, i = hash & mask;
    while (c->slots[i] >= 0) i = (i + 1) & mask;
    c->slots[i] = (int32_t)c->n;
    c->entries[c->n++] = e;
}

/* ---- the merge heap: ordered by rank, then position ---- */

static int hless(const hent *a, const hent *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static aq_status hpush(hf_bpe_cache *c, hent e, aq_error *err)
{
    if (c->nheap == c->capheap) {
        size_t cap = c->capheap ? c->capheap * 2 : 256;
        hent *p = realloc(c->heap, cap * sizeof *p);
        if (!p) return aq_fail_nomem(err, "BPE heap", cap * sizeof *p);
        c->heap = p;
        c->capheap = cap;
    }
    size_t i = c->nheap++;
    while (i > 0 && hless(&e, &c->heap[(i - 1) / 2])) {
        c->heap[i] = c->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    c->heap[i] = e;
    return AQ_OK;
}

static hent hpop(hf_bpe_cache *c)
{
    hent top = c->heap[0], last = c->heap[--c->nheap];
    size_t i = 0, n = c->nheap;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        const hent *best = &last;
        if (l < n && hless(&c->heap[l], best)) m = l, best = &c->heap[l];
        if (l + 1 < n && hless(&c->heap[l + 1], best)) m = l + 1;
        if (m == i) break;
        c->heap[i] = c->heap[m];
        i = m;
    }
    if (n) c->heap[i] = last;
    return top;
}

static aq_status push_pair(const aq_hftok *h, hf_bpe_cache *c, int pos, aq_error *err)
{
    int nx = c->syms[pos].next;
    if (nx < 0) return AQ_OK;
    const hf_merge_slot *m = hf_mergemap_get(&h->merges, c->syms[pos].id, c->syms[nx].id);
    if (!m) return AQ_OK;
    hent e = {m->rank, pos, m->new_id};
    return hpush(c, e, err);
}

/* Merge the symbols of the current part and append their ids to out. */
static aq_status merge_part(const aq_hftok *h, hf_bpe_cache *c, hf_ints *out, aq_error *err)
{
    if (c->nsym == 0) return AQ_OK;
    c->nheap = 0;
    for (size_t i = 0; i + 1 < c->nsym; i++) AQ_TRY(push_pair(h, c, (int)i, err));
    while (c->nheap) {
        hent t = hpop(c);
        sym *s = &c->syms[t.pos];
        if (!s->alive || s->next < 0) continue;
        sym *r = &c->syms[s->next];
        const hf_merge_slot *m = hf_mergemap_get(&h->merges, s->id, r->id);
        if (!m || m->new_id != t.new_id) continue; /* stale: a neighbour changed */
        s->id = t.new_id;
        r->alive = 0;
        s->next = r->next;
        if (s->next >= 0) c->syms[s->next].prev = t.pos;
        if (s->prev >= 0) AQ_TRY(push_pair(h, c, s->prev, err));
        AQ_TRY(push_pair(h, c, t.pos, err));
    }
    for (int i = 0; i >= 0; i = c->syms[i].next) AQ_TRY(hf_ints_add(out, c->syms[i].id, err));
    c->nsym = 0;
    return AQ_OK;
}

static aq_status add_sym(const aq_hftok *h, hf_bpe_cache *c, int id, hf_ints *out, aq_error *err)
{
    if (!(h->flags[id] & HF_F_MERGED)) { /* inert: ends the current part */
        AQ_TRY(merge_part(h, c, out, err));
        return hf_ints_add(out, id, err);
    }
    if (c->nsym == c->capsym) {
        size_t cap = c->capsym ? c->capsym * 2 : 256;
        sym *p = realloc(c->syms, cap * sizeof *p);
        if (!p) return aq_fail_nomem(err, "BPE symbols", cap * sizeof *p);
        c->syms = p;
        c->capsym = cap;
    }
    int i = (int)c->nsym++;
    c->syms[i] = (sym){id, i - 1, -1, 1};
    if (i > 0) c->syms[i - 1].next = i;
    return AQ_OK;
}

/* Characters to symbols (merging parts as inert symbols end them). */
static aq_status bpe_chars(const aq_hftok *h, const char *w, size_t n, hf_bpe_cache *c, hf_ints *out,
                           aq_error *err)
{
    int last = -1;
    c->nsym = 0;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        int l = hf_utf8_next((const unsigned char *)w + i, n - i, &cp);
        if (l <= 0) l = 1;
        int id = hf_strmap_get(&h->vocab, h->pieces, h->piece_len, w + i, (size_t)l);
        if (id >= 0) {
            AQ_TRY(add_sym(h, c, id, out, err));
            last = id;
        } else {
            int ok = h->byte_fallback;
            for (int k = 0; k < l && ok; k++) ok = h->byte_ids[(unsigned char)w[i + k]] >= 0;
            if (ok) {
                for (int k = 0; k < l; k++) AQ_TRY(add_sym(h, c, h->byte_ids[(unsigned char)w[i + k]], out, err));
                last = h->byte_ids[(unsigned char)w[i + l - 1]];
            } else if (h->unk_id >= 0 && !(h->fuse_unk && last == h->unk_id)) {
                AQ_TRY(add_sym(h, c, h->unk_id, out, err));
                last = h->unk_id;
            }
            /* No unk token: tokenizers drops the character; so do we. */
        }
        i += (size_t)l;
    }
    return merge_part(h, c, out, err);
}

aq_status hf_bpe_word(const aq_hftok *h, const char *w, size_t n, hf_bpe_cache *c, hf_ints *out,
                      aq_error *err)
{
    if (h->ignore_merges) {
        int id = hf_strmap_get(&h->vocab, h->pieces, h->piece_len, w, n);
        if (id >= 0) return hf_ints_add(out, id, err);
    }
    uint32_t hash = 0;
    if (n <= CACHE_MAX_WORD) {
        hash = hf_hash(w, n);
        int e = cache_find(c, w, n, hash);
        if (e >= 0) {
            const centry *ce = &c->entries[e];
            for (uint32_t i = 0; i < ce->n_ids; i++) AQ_TRY(hf_ints_add(out, c->ids.p[ce->ids_off + i], err));
            return AQ_OK;
        }
    }
    size_t start = out->n;
    AQ_TRY(bpe_chars(h, w, n, c, out, err));
    if (n <= CACHE_MAX_WORD) cache_put(c, w, n, hash, out->n > start ? out->p + start : NULL, out->n - start);
    return AQ_OK;
}
