/* tokenizer.h — the llama2.c / SentencePiece-BPE tokenizer (encode and decode
 * exactly as llama2.c run.c does), loaded from a tokenizer .bin (see io/llama2c.h).
 *
 * Ids 0/1/2 are <unk>/<s> (BOS)/</s> (EOS); ids 3..258 are the byte tokens
 * <0x00>..<0xFF>. Encode: [BOS], a dummy-prefix " " token when the text is
 * non-empty, one token per UTF-8 codepoint (byte fallback id = byte + 3 when the
 * codepoint is not a piece), then greedy merges: repeatedly merge the adjacent
 * pair whose concatenation is a piece with the highest score (leftmost on ties)
 * until none is left; [EOS]. The merge is done with a heap in O(n log n) but
 * gives the same result as run.c's quadratic loop.
 *
 * A handle is immutable after loading: encode/decode are reentrant and may be
 * called from several threads at once. No global state. */
#ifndef AQ_TOKENIZER_H
#define AQ_TOKENIZER_H

#include <stddef.h>

#include "../../common/status.h"

#define AQ_TOK_UNK 0
#define AQ_TOK_BOS 1
#define AQ_TOK_EOS 2

typedef struct aq_tokenizer aq_tokenizer;

/* Load a tokenizer .bin holding exactly vocab_size tokens (vocab_size comes
 * from the model: aq_llama_config.vocab_size). *out is owned by the caller
 * (free with aq_tok_close). Errors: AQ_ERR_IO (missing/unreadable file),
 * AQ_ERR_FORMAT (truncated, bad length, count mismatch; names file, token
 * index and byte offset), AQ_ERR_ARG (vocab_size < 259 or too large). */
aq_status aq_tok_open(const char *path, int vocab_size, aq_tokenizer **out, aq_error *err);

/* Same from an in-memory tokenizer .bin image (label names it in errors). */
aq_status aq_tok_open_memory(const void *buf, size_t len, int vocab_size, const char *label,
                             aq_tokenizer **out, aq_error *err);

/* Free a handle (NULL is fine). */
void aq_tok_close(aq_tokenizer *t);

/* Number of tokens in the vocabulary. */
int aq_tok_vocab_size(const aq_tokenizer *t);

/* The raw piece of a token as stored in the file (e.g. " the", "<0x0A>",
 * "\n<s>\n"), NUL-terminated, owned by t; NULL if id is out of range. */
const char *aq_tok_piece(const aq_tokenizer *t, int id);

/* Upper bound on the number of ids encode produces for a text of text_len bytes
 * (text_len + 3: BOS, dummy prefix, EOS). */
size_t aq_tok_encode_max(size_t text_len);

/* Encode a NUL-terminated UTF-8 (or arbitrary byte) string into ids[0..*n).
 * bos/eos: non-zero to add <s> / </s>. ids has room for cap ids (use
 * aq_tok_encode_max(strlen(text))). Errors: AQ_ERR_ARG if cap is too small,
 * AQ_ERR_NOMEM. */
aq_status aq_tok_encode(const aq_tokenizer *t, const char *text, int bos, int eos, int *ids,
                        size_t cap, size_t *n, aq_error *err);

/* Same, allocating: *ids is malloc'd (caller frees), *n its length. */
aq_status aq_tok_encode_alloc(const aq_tokenizer *t, const char *text, int bos, int eos, int **ids,
                              size_t *n, aq_error *err);

/* Decode one token given the previous one (run.c decode()): the piece of
 * `token`, without its leading space when prev_token is BOS, and with <0xXX>
 * byte tokens mapped to the raw byte. *piece points into t (valid until
 * aq_tok_close), *len is its length in bytes (a raw byte may be 0x00).
 * Pass prev_token = -1 when there is none. AQ_ERR_ARG naming the id if token
 * is out of range. */
aq_status aq_tok_decode(const aq_tokenizer *t, int prev_token, int token, const char **piece,
                        size_t *len, aq_error *err);

/* Decode a whole id sequence into a malloc'd NUL-terminated string (*out,
 * caller frees; *out_len its length, may be NULL). BOS and EOS produce no
 * text (BOS still strips the next piece's leading space), so
 * decode(encode(x, bos=1)) == x. AQ_ERR_ARG naming the position and id of an
 * out-of-range token. */
aq_status aq_tok_decode_all(const aq_tokenizer *t, const int *ids, size_t n, char **out,
                            size_t *out_len, aq_error *err);

#endif
