/* tokenizer.h — the one tokenizer API of adaquant, over both kinds of
 * tokenizer files people have:
 *  - a llama2.c tokenizer .bin (l2c_tokenizer.h: run.c's SentencePiece BPE,
 *    with byte fallback or, for character-level vocabularies, <unk>);
 *  - a Hugging Face tokenizer.json (hf_tokenizer.h), or a model directory
 *    holding one (or a tokenizer.bin).
 * aq_tok_open tells them apart by content, so every command takes any of
 * them with the same --tokenizer option.
 *
 * Special ids differ per tokenizer: use aq_tok_bos_id / aq_tok_eos_id, never
 * constants (llama2.c: 1 and 2 as run.c; tokenizer.json: the post-processor's
 * BOS, which Qwen2/Qwen3 do not have, and the EOS of the model's
 * tokenizer_config.json / config.json).
 *
 * A handle is immutable after loading except for its unknown-character
 * counter (atomic): encode/decode are reentrant and may be called from
 * several threads at once. No global state. */
#ifndef AQ_TOKENIZER_H
#define AQ_TOKENIZER_H

#include <stdio.h>
#include <stddef.h>

#include "../../common/status.h"

typedef struct aq_tokenizer aq_tokenizer;

/* vocab_size for aq_tok_open when there is no model (`adaquant tokenize`). */
#define AQ_TOK_NO_MODEL 0

typedef enum aq_tok_kind { AQ_TOK_LLAMA2C = 1, AQ_TOK_HF_JSON = 2 } aq_tok_kind;

/* Open a tokenizer for a model of vocab_size tokens (AQ_TOK_NO_MODEL: no
 * check). path is a llama2.c tokenizer .bin, a tokenizer.json, or a directory
 * holding tokenizer.json (preferred) or tokenizer.bin; the kind is told by the
 * content (a JSON object starts with '{'), not the name.
 * llama2.c: the file must hold exactly vocab_size tokens (the format does not
 * store the count; with AQ_TOK_NO_MODEL every token to the end of the file).
 * tokenizer.json: its ids must be < vocab_size (HF models pad the embedding,
 * so fewer tokens than vocab_size is fine); the EOS is read from
 * tokenizer_config.json ("eos_token") or config.json ("eos_token_id") next
 * to it when present, and the BOS is the post-processor's, or else
 * tokenizer_config.json's "bos_token" when its "add_bos_token" is true.
 * Errors: AQ_ERR_IO (missing/unreadable), AQ_ERR_NOTFOUND (a directory with
 * neither file), AQ_ERR_FORMAT (malformed file, names file and place),
 * AQ_ERR_ARG ("config/tokenizer vocabulary mismatch", naming both numbers).
 * *out is owned by the caller (aq_tok_close). */
aq_status aq_tok_open(const char *path, int vocab_size, aq_tokenizer **out, aq_error *err);

/* The file aq_tok_open reads for path (path itself, or the tokenizer.json /
 * tokenizer.bin of a directory) into file[cap], e.g. to fingerprint it.
 * AQ_ERR_NOTFOUND for a directory with neither. */
aq_status aq_tok_resolve(const char *path, char *file, size_t cap, aq_error *err);

/* Same from an in-memory image of a tokenizer .bin or tokenizer.json (no
 * side files; label names it in errors). */
aq_status aq_tok_open_memory(const void *buf, size_t len, int vocab_size, const char *label,
                             aq_tokenizer **out, aq_error *err);

/* Free a handle (NULL is fine). */
void aq_tok_close(aq_tokenizer *t);

aq_tok_kind aq_tok_kind_of(const aq_tokenizer *t);
/* One line for logs: kind, file, size, byte fallback, BOS/EOS ids. Owned by t. */
const char *aq_tok_describe(const aq_tokenizer *t);

/* 1 + the largest token id. */
int aq_tok_vocab_size(const aq_tokenizer *t);
/* The special ids, -1 if the tokenizer has none. BOS: what encode(bos=1)
 * puts first (tokenizer.json: the post-processor's first special token, or
 * tokenizer_config.json's bos_token with add_bos_token true).
 * EOS: what encode(eos=1) appends. */
int aq_tok_bos_id(const aq_tokenizer *t);
int aq_tok_eos_id(const aq_tokenizer *t);
int aq_tok_unk_id(const aq_tokenizer *t);
/* Non-zero if generation stops at id: BOS or EOS for llama2.c (as run.c);
 * for tokenizer.json any EOS id named by tokenizer_config.json or config.json
 * (a list in Llama-3.1). */
int aq_tok_is_stop(const aq_tokenizer *t, int id);

/* The raw piece of a token as stored (" the", "<0x0A>", "Ġthe", "▁the"),
 * NUL-terminated, owned by t; NULL if there is none. */
const char *aq_tok_piece(const aq_tokenizer *t, int id);

/* Bound on the ids aq_tok_encode produces for text_len bytes with a llama2.c
 * tokenizer (text_len + 3). A tokenizer.json may need more (normalizers grow
 * the text): use aq_tok_encode_alloc, or aq_tok_encode fails with AQ_ERR_ARG
 * naming the count it needs. */
size_t aq_tok_encode_max(size_t text_len);

/* Encode a NUL-terminated UTF-8 string into ids[0..*n) (room for cap ids).
 * bos: llama2.c adds <s>; tokenizer.json applies the post-processor, as
 * tokenizers' add_special_tokens=True (nothing for Qwen). eos: append the EOS
 * if the tokenizer has one. Errors: AQ_ERR_ARG if cap is too small, for
 * invalid UTF-8 (tokenizer.json), or for a character outside a vocabulary
 * that has neither byte tokens nor <unk> (names it and its byte offset);
 * AQ_ERR_NOMEM. Characters mapped to <unk> add to aq_tok_unknown_count. */
aq_status aq_tok_encode(const aq_tokenizer *t, const char *text, int bos, int eos, int *ids,
                        size_t cap, size_t *n, aq_error *err);

/* Same, allocating: *ids is malloc'd (caller frees), *n its length. */
aq_status aq_tok_encode_alloc(const aq_tokenizer *t, const char *text, int bos, int eos, int **ids,
                              size_t *n, aq_error *err);

/* Text outside the vocabulary met by all encode calls on t so far: llama2.c
 * without byte fallback, characters mapped to <unk>; tokenizer.json, <unk>
 * tokens produced. */
size_t aq_tok_unknown_count(const aq_tokenizer *t);
/* If that count is non-zero, print one line "<who>: N characters outside the
 * vocabulary mapped to <unk> (tokenizer ...)" to f. Callers that encode data
 * call it once per run, after encoding. */
void aq_tok_report_unknown(const aq_tokenizer *t, const char *who, FILE *f);

/* llama2.c only (run.c decode()): the piece of `token` after prev_token
 * (-1: none), without its leading space after BOS, <0xXX> byte tokens as the
 * raw byte. *piece points into t, *len its length (a raw byte may be 0x00).
 * A tokenizer.json piece depends on more context (partial UTF-8, Strip
 * decoders): AQ_ERR_ARG, use aq_tok_stream. AQ_ERR_ARG naming the id if
 * token is out of range. */
aq_status aq_tok_decode(const aq_tokenizer *t, int prev_token, int token, const char **piece,
                        size_t *len, aq_error *err);

/* Decode a whole id sequence into a malloc'd NUL-terminated string (*out,
 * caller frees; *out_len its length, may be NULL). Special tokens produce no
 * text (llama2.c: BOS and EOS, BOS still strips the next piece's leading
 * space; tokenizer.json: skip_special_tokens=True), so
 * decode(encode(x, bos=1)) == x for text the vocabulary covers. AQ_ERR_ARG
 * naming the position and id of an out-of-range token. */
aq_status aq_tok_decode_all(const aq_tokenizer *t, const int *ids, size_t n, char **out,
                            size_t *out_len, aq_error *err);

/* Streaming decode, for printing tokens as they are generated, with any
 * tokenizer: push the ids one by one (BOS included); each push returns the
 * text that became final. The concatenation of all returned texts and the
 * final flush equals aq_tok_decode_all of the ids. Text is held back while
 * it ends in an incomplete UTF-8 character (byte tokens). */
typedef struct aq_tok_stream aq_tok_stream;
aq_status aq_tok_stream_new(const aq_tokenizer *t, aq_tok_stream **out, aq_error *err);
/* The returned text (*text, *len bytes) is valid until the next call on s.
 * AQ_ERR_ARG for an out-of-range id. */
aq_status aq_tok_stream_push(aq_tok_stream *s, int token, const char **text, size_t *len,
                             aq_error *err);
/* The held-back rest, at the end of the sequence. */
aq_status aq_tok_stream_flush(aq_tok_stream *s, const char **text, size_t *len, aq_error *err);
void aq_tok_stream_free(aq_tok_stream *s);

#endif
