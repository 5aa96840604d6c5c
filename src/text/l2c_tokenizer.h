/* l2c_tokenizer.h — the llama2.c / SentencePiece-BPE tokenizer (encode and
 * decode as llama2.c run.c does), loaded from a tokenizer .bin (io/llama2c.h).
 *
 * This is a backend; callers use tokenizer.h, which dispatches here for a
 * tokenizer .bin (and to hf_tokenizer.h for a tokenizer.json).
 *
 * Ids 0/1/2 are <unk>/<s> (BOS)/</s> (EOS), as run.c hard-codes them. Encode:
 * [BOS], a dummy-prefix " " token when the text is non-empty, one token per
 * UTF-8 codepoint, then greedy merges: repeatedly merge the adjacent pair whose
 * concatenation is a piece with the highest score (leftmost on ties) until none
 * is left; [EOS]. The merge is done with a heap in O(n log n) but gives the same
 * result as run.c's quadratic loop.
 *
 * A codepoint that is not a piece:
 *  - byte fallback (the vocabulary holds all 256 byte pieces <0x00>..<0xFF>,
 *    at ids 3..258 in every llama2.c export): one byte token per byte, as run.c;
 *  - otherwise (character-level and other vocabularies without byte tokens):
 *    the unknown token, the "<unk>" piece (id 0 in the SentencePiece layout),
 *    counted in *n_unknown. A run of consecutive unknown codepoints gives one
 *    <unk>, and <unk> never merges, as SentencePiece does (its encoder merges
 *    runs of unknown pieces; known pieces never contain unknown characters).
 *    The dummy-prefix " " is such a codepoint too. With no "<unk>" piece
 *    either, encode fails naming the character and its byte offset.
 * A vocabulary with some but not all 256 byte pieces is refused at load time.
 * run.c itself assumes byte fallback at ids 3..258; on such vocabularies both
 * agree exactly.
 *
 * A handle is immutable after loading: encode/decode are reentrant and may be
 * called from several threads at once. No global state. */
#ifndef AQ_L2C_TOKENIZER_H
#define AQ_L2C_TOKENIZER_H

#include <stddef.h>

#include "../../common/status.h"

#define AQ_L2CTOK_BOS 1
#define AQ_L2CTOK_EOS 2

typedef struct aq_l2ctok aq_l2ctok;

/* Load a tokenizer .bin holding exactly vocab_size tokens (from the model), or
 * every token up to the end of the file when vocab_size is 0 (no model).
 * Errors: AQ_ERR_IO, AQ_ERR_FORMAT (truncated, bad length, count mismatch,
 * incomplete byte tokens; names file, token index and byte offset). */
aq_status aq_l2ctok_open(const char *path, int vocab_size, aq_l2ctok **out, aq_error *err);
/* Same from an in-memory image (label names it in errors). */
aq_status aq_l2ctok_open_memory(const void *buf, size_t len, int vocab_size, const char *label,
                                aq_l2ctok **out, aq_error *err);
void aq_l2ctok_close(aq_l2ctok *t); /* NULL is fine */

int aq_l2ctok_vocab_size(const aq_l2ctok *t);
/* The raw piece of a token as stored (e.g. " the", "<0x0A>", "\n<s>\n"),
 * NUL-terminated, owned by t; NULL if id is out of range. */
const char *aq_l2ctok_piece(const aq_l2ctok *t, int id);
/* Non-zero if the vocabulary has the 256 byte tokens. */
int aq_l2ctok_byte_fallback(const aq_l2ctok *t);
/* The id of the "<unk>" piece (lowest if repeated), -1 if none. */
int aq_l2ctok_unk_id(const aq_l2ctok *t);

/* Upper bound on the ids of a text of text_len bytes: text_len + 3 (BOS,
 * dummy prefix, EOS). */
size_t aq_l2ctok_encode_max(size_t text_len);

/* Encode a NUL-terminated string into ids[0..*n) (room for cap ids: use
 * aq_l2ctok_encode_max(strlen(text))). bos/eos: non-zero to add <s> / </s>.
 * *n_unknown (may be NULL) receives the number of codepoints mapped to <unk>.
 * Errors: AQ_ERR_ARG if cap is too small, or (no byte fallback, no <unk>) a
 * character outside the vocabulary, naming it and its byte offset;
 * AQ_ERR_NOMEM. */
aq_status aq_l2ctok_encode(const aq_l2ctok *t, const char *text, int bos, int eos, int *ids,
                           size_t cap, size_t *n, size_t *n_unknown, aq_error *err);

/* Decode one token given the previous one (run.c decode()): the piece of
 * `token`, without its leading space when prev_token is BOS, and (with byte
 * fallback) <0xXX> byte tokens mapped to the raw byte. *piece points into t,
 * *len is its length in bytes (a raw byte may be 0x00). prev_token -1: none.
 * AQ_ERR_ARG naming the id if token is out of range. */
aq_status aq_l2ctok_decode(const aq_l2ctok *t, int prev_token, int token, const char **piece,
                           size_t *len, aq_error *err);

/* Decode a sequence into a malloc'd NUL-terminated string (*out_len may be
 * NULL). BOS and EOS produce no text (BOS still strips the next piece's
 * leading space), so decode(encode(x, bos=1)) == x when x is in the
 * vocabulary. AQ_ERR_ARG naming position and id of an out-of-range token. */
aq_status aq_l2ctok_decode_all(const aq_l2ctok *t, const int *ids, size_t n, char **out,
                               size_t *out_len, aq_error *err);

#endif
