/* hf_internal.h — the data structures shared by the tokenizer.json backend
 * (hf_*.c): the loaded model (vocabulary, merge ranks, added tokens), the
 * pipeline components parsed from the JSON, and the small helpers each part
 * uses. Not a public header: callers use hf_tokenizer.h.
 *
 * Split by concern: hf_util.c (hash maps, byte-level table, UTF-8, patterns),
 * hf_load.c (model, vocabulary, merges, added tokens), hf_parse.c (normalizer,
 * pre-tokenizer, post-processor and decoder JSON), hf_pretok.c (normalizing and
 * pre-tokenizing text), hf_bpe.c (the BPE model), hf_decode.c (decoders),
 * hf_tokenizer.c (the public functions). */
#ifndef AQ_HF_INTERNAL_H
#define AQ_HF_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/status.h"
#include "hf_tokenizer.h"

/* Open-addressing map from a string (the piece of an id) to the id: slots hold
 * the id (-1 empty) and the string hash; keys live in h->pieces. */
typedef struct hf_strmap {
    int32_t *ids;
    uint32_t *hashes;
    size_t cap; /* power of two */
    size_t n;
} hf_strmap;

/* Merge ranks: key (left id << 32 | right id) -> rank and merged id. */
typedef struct hf_merge_slot {
    uint64_t key; /* UINT64_MAX: empty */
    int32_t rank;
    int32_t new_id;
} hf_merge_slot;

typedef struct hf_mergemap {
    hf_merge_slot *slots;
    size_t cap;
} hf_mergemap;

/* A literal or a compiled PCRE2 regex (tokenizers' {"String": s} / {"Regex": r}). */
typedef struct hf_pattern {
    char *lit; /* literal bytes, or NULL for a regex */
    size_t lit_len;
    pcre2_code *re;
} hf_pattern;

enum hf_norm_kind { HF_N_NFC, HF_N_NFD, HF_N_NFKC, HF_N_NFKD, HF_N_PREPEND, HF_N_REPLACE };
typedef struct hf_norm {
    int kind;
    hf_pattern pat;  /* Replace */
    char *str;       /* Prepend: the prefix; Replace: the content */
    size_t str_len;
} hf_norm;

enum hf_split_behavior { HF_SPLIT_REMOVED, HF_SPLIT_ISOLATED, HF_SPLIT_PREV, HF_SPLIT_NEXT, HF_SPLIT_CONTIGUOUS };
enum hf_prepend { HF_PREPEND_ALWAYS, HF_PREPEND_FIRST, HF_PREPEND_NEVER };
enum hf_pretok_kind { HF_P_SPLIT, HF_P_BYTELEVEL, HF_P_METASPACE };
typedef struct hf_pretok {
    int kind;
    hf_pattern pat;       /* Split: the pattern; ByteLevel with use_regex: the GPT-2 regex */
    int behavior;         /* Split */
    int invert;           /* Split */
    int add_prefix_space; /* ByteLevel */
    int use_regex;        /* ByteLevel */
    char repl[8];         /* Metaspace replacement (one character, UTF-8) */
    size_t repl_len;
    int prepend;          /* Metaspace prepend_scheme */
    int split;            /* Metaspace split */
} hf_pretok;

enum hf_dec_kind { HF_D_BYTELEVEL, HF_D_REPLACE, HF_D_BYTEFALLBACK, HF_D_FUSE, HF_D_STRIP, HF_D_METASPACE };
typedef struct hf_dec {
    int kind;
    hf_pattern pat;  /* Replace */
    char *str;       /* Replace: content; Strip: the character; Metaspace: replacement */
    size_t str_len;
    int start, stop; /* Strip */
    int prepend;     /* Metaspace prepend_scheme */
} hf_dec;

/* GPT-2 byte-to-unicode: utf8[b] (len[b] bytes) is the character standing for
 * byte b; inv[cp] the byte of code point cp < 512 (-1 if none). */
typedef struct hf_bytetab {
    char utf8[256][2];
    int len[256];
    int16_t inv[512];
} hf_bytetab;

struct aq_hftok {
    char *label;
    /* ids 0..n_ids-1. pieces[id]: the model vocabulary's string (the keys of
     * the vocab map), apieces[id]: the added token's content; NULL where there
     * is none. */
    int n_ids;
    char **pieces;
    uint32_t *piece_len;
    char **apieces;
    uint32_t *apiece_len;
    uint8_t *flags; /* HF_F_* per id */
    hf_strmap vocab; /* model vocabulary */
    hf_strmap added; /* added tokens */
    hf_mergemap merges;
    int unk_id;
    int byte_fallback, fuse_unk, ignore_merges;
    int byte_ids[256]; /* byte_fallback: the id of <0xXX>, -1 if absent */
    hf_bytetab bytes;
    hf_norm *norms;
    int n_norms;
    hf_pretok *pretoks;
    int n_pretoks;
    hf_dec *decs;
    int n_decs;
    int *prefix_ids, n_prefix; /* TemplateProcessing "single" around $A */
    int *suffix_ids, n_suffix;
};

#define HF_F_VOCAB 1   /* in the model vocabulary */
#define HF_F_ADDED 2   /* an added token */
#define HF_F_SPECIAL 4 /* an added token marked special */
#define HF_F_MERGED 8  /* appears on either side of some merge */

/* ---- hf_util.c ---- */
uint32_t hf_hash(const char *s, size_t n);
aq_status hf_strmap_init(hf_strmap *m, size_t expect, aq_error *err);
void hf_strmap_free(hf_strmap *m);
/* Insert id under pieces[id]; returns the id already there (and inserts
 * nothing) if the string is present, else -1. */
int hf_strmap_put(hf_strmap *m, char *const *pieces, const uint32_t *lens, int id);
int hf_strmap_get(const hf_strmap *m, char *const *pieces, const uint32_t *lens, const char *s,
                  size_t n);
aq_status hf_mergemap_init(hf_mergemap *m, size_t expect, aq_error *err);
void hf_mergemap_free(hf_mergemap *m);
void hf_mergemap_put(hf_mergemap *m, int a, int b, int rank, int new_id);
const hf_merge_slot *hf_mergemap_get(const hf_mergemap *m, int a, int b);
void hf_bytetab_init(hf_bytetab *t);
/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid;
 * *cp receives the code point. */
int hf_utf8_next(const unsigned char *s, size_t n, int32_t *cp);
/* Offset of the first invalid UTF-8 byte in s, or n if all valid. */
size_t hf_utf8_check(const char *s, size_t n);
/* Compile a regex (UTF + UCP; JIT when available). AQ_ERR_FORMAT names where. */
aq_status hf_regex_compile(const char *re, size_t len, const char *where, pcre2_code **out,
                           aq_error *err);
/* Next match of p in s[0..n) at or after start: 1 and [*ms, *me), 0 if none,
 * -1 on a PCRE2 failure such as a match limit (err filled, AQ_ERR_FORMAT).
 * md: match data for a regex (NULL for a literal). Empty regex matches are
 * skipped (tokenizers drops the empty pieces they would make). */
int hf_find(const hf_pattern *p, const char *s, size_t n, size_t start, pcre2_match_data *md,
            size_t *ms, size_t *me, aq_error *err);
void hf_pattern_free(hf_pattern *p);
/* A growable byte buffer and a growable int array (abort-free: report NOMEM). */
typedef struct hf_buf {
    char *p;
    size_t n, cap;
} hf_buf;
aq_status hf_buf_add(hf_buf *b, const void *s, size_t n, aq_error *err);
typedef struct hf_ints {
    int *p;
    size_t n, cap;
} hf_ints;
aq_status hf_ints_add(hf_ints *v, int x, aq_error *err);

/* ---- hf_load.c ---- */
aq_status hf_load_json(aq_hftok *h, const char *json, size_t len, aq_error *err);

/* ---- hf_parse.c (components; json_t is jansson's) ---- */
struct json_t;
aq_status hf_parse_normalizer(aq_hftok *h, struct json_t *j, const char *path, aq_error *err);
aq_status hf_parse_pretokenizer(aq_hftok *h, struct json_t *j, const char *path, aq_error *err);
aq_status hf_parse_postprocessor(aq_hftok *h, struct json_t *j, const char *path, aq_error *err);
aq_status hf_parse_decoder(aq_hftok *h, struct json_t *j, const char *path, aq_error *err);
void hf_components_free(aq_hftok *h);

/* ---- hf_pretok.c ---- */
typedef struct hf_span {
    size_t off, len;
} hf_span;
/* Text after normalizers and pre-tokenizers: the words, as spans of buf. */
typedef struct hf_words {
    hf_buf buf;
    hf_span *w;
    size_t n, cap;
} hf_words;
aq_status hf_pretokenize(const aq_hftok *h, const char *text, size_t len, hf_words *out,
                         aq_error *err);
void hf_words_free(hf_words *w);

/* ---- hf_bpe.c ---- */
typedef struct hf_bpe_cache hf_bpe_cache;
hf_bpe_cache *hf_bpe_cache_new(void);
void hf_bpe_cache_free(hf_bpe_cache *c);
/* Append the ids of one word (model alphabet) to out. */
aq_status hf_bpe_word(const aq_hftok *h, const char *w, size_t n, hf_bpe_cache *c, hf_ints *out,
                      aq_error *err);

/* ---- hf_decode.c ---- */
aq_status hf_decode_tokens(const aq_hftok *h, const int *ids, size_t n, int skip_special,
                           hf_buf *out, aq_error *err);

#endif
