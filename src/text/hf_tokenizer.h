/* hf_tokenizer.h — Hugging Face `tokenizer.json` (the `tokenizers` library's
 * serialisation), read with jansson: BPE models with byte-level
 * pre-tokenization (Llama-3, Qwen2/Qwen3, SmolLM: GPT-2 byte-to-unicode map,
 * Split regexes run by PCRE2 in UTF+UCP mode) and SentencePiece-style BPE
 * (Llama-2, Mistral, TinyLlama: "▁" replacement, byte_fallback, merge
 * priorities), with the normalizers, pre-tokenizers, post-processors and
 * decoders those files use. Anything else is refused at load time with an error
 * naming the unsupported component and its JSON path, never a silent
 * difference.
 *
 * This is the backend; callers use tokenizer.h (aq_tok_open detects a
 * tokenizer.json by path or directory and dispatches here).
 *
 * A handle is immutable after loading: encode/decode are reentrant. */
#ifndef AQ_HF_TOKENIZER_H
#define AQ_HF_TOKENIZER_H

#include <stddef.h>

#include "../../common/status.h"

typedef struct aq_hftok aq_hftok;

/* Load a tokenizer.json file. Errors: AQ_ERR_IO (missing/unreadable),
 * AQ_ERR_FORMAT (malformed JSON, truncated, a merge naming an unknown token,
 * duplicate ids ...: names file and JSON path), AQ_ERR_FORMAT too for a model,
 * normalizer, pre-tokenizer, post-processor or decoder type or option that is
 * not implemented ("unsupported ...": names it and where it is). *out
 * caller-owned. */
aq_status aq_hftok_open(const char *path, aq_hftok **out, aq_error *err);
/* Same from memory (label names it in errors; json need not be NUL-terminated). */
aq_status aq_hftok_open_memory(const char *json, size_t len, const char *label, aq_hftok **out,
                               aq_error *err);
void aq_hftok_close(aq_hftok *h);

/* 1 + the largest id of the model vocabulary and the added tokens. */
int aq_hftok_vocab_size(const aq_hftok *h);
/* The id of a token string (vocabulary or added token), -1 if none. */
int aq_hftok_token_id(const aq_hftok *h, const char *content);
/* The token string of an id as stored (e.g. "Ġthe", "▁the", "<0x0A>",
 * "<|begin_of_text|>"), NUL-terminated, owned by h; NULL if there is none. */
const char *aq_hftok_piece(const aq_hftok *h, int id);
/* Non-zero if id is an added token marked "special". */
int aq_hftok_is_special(const aq_hftok *h, int id);
/* The id the post-processor puts before the text of a single sequence
 * (TemplateProcessing "single" starting with a SpecialToken, e.g. <s> or
 * <|begin_of_text|>), -1 if it adds none (Qwen2, GPT-2 style). */
int aq_hftok_bos_id(const aq_hftok *h);
/* The "unk_token" id of the model, -1 if none. */
int aq_hftok_unk_id(const aq_hftok *h);

/* Encode len bytes of UTF-8 text (invalid UTF-8 is an AQ_ERR_ARG naming the
 * byte offset). add_special: apply the post-processor (BOS etc.), as
 * tokenizers' encode(text, add_special_tokens=True). Added tokens that appear
 * in the text are NOT matched (plain text never produces special tokens; see
 * docs/TOKENIZER.md). *ids malloc'd (caller frees; non-NULL even when *n is 0).
 * Reentrant: per-call state only (a bounded per-call cache of word ids). */
aq_status aq_hftok_encode(const aq_hftok *h, const char *text, size_t len, int add_special,
                          int **ids, size_t *n, aq_error *err);

/* Decode ids through the decoder chain into a malloc'd NUL-terminated string
 * (*out; *out_len its length, may be NULL). skip_special: drop special added
 * tokens, as tokenizers' decode(ids, skip_special_tokens=True). AQ_ERR_ARG
 * naming the position of an out-of-range id. Bytes that do not form valid
 * UTF-8 (a prefix of a sequence that splits a character) are returned as they
 * are, where tokenizers would put U+FFFD, so streamed output stays exact. */
aq_status aq_hftok_decode(const aq_hftok *h, const int *ids, size_t n, int skip_special,
                          char **out, size_t *out_len, aq_error *err);

#endif
