/* export_vocab.c — the tokenizer.ggml.* metadata of a GGUF export.
 *
 * A llama2.c tokenizer .bin is a SentencePiece vocabulary exported with '▁'
 * turned into ' ' and BOS/EOS spelt "\n<s>\n" / "\n</s>\n" (llama2.c's
 * tokenizer.py). llama.cpp's `llama` tokenizer model wants the SentencePiece
 * pieces back, as its convert-llama2c-to-ggml writes them: ids 0, 1, 2 are
 * <unk> (type UNKNOWN), <s>, </s> (CONTROL); "<0xHH>" pieces are BYTE tokens;
 * every other piece NORMAL with its spaces escaped to U+2581. The scores are
 * the file's. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/gguf.h"
#include "export_gguf.h"

/* llama.cpp's llama_token_type values. */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_BYTE = 6 };

/* Exactly "<0xHH>" (two upper-case hex digits), as llama2.c writes byte pieces. */
static int is_byte_piece(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return 0;
    for (int i = 3; i < 5; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F'))) return 0;
    return 1;
}

/* The llama2.c file read whole: pieces (escaped, malloc'd), scores, types. */
typedef struct l2c_vocab {
    char **text;
    float *score;
    int32_t *type;
    int n;
} l2c_vocab;

static void vocab_free(l2c_vocab *v)
{
    for (int i = 0; v->text && i < v->n; i++) free(v->text[i]);
    free(v->text);
    free(v->score);
    free(v->type);
}

/* One piece: escape ' ' to U+2581 (3 bytes) into a new string. */
static char *escape_piece(const char *s, size_t n)
{
    char *o = malloc(3 * n + 1), *p = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(p, "\xE2\x96\x81", 3);
            p += 3;
        } else *p++ = s[i];
    }
    *p = 0;
    return o;
}

static aq_status read_l2c(const char *file, int n, l2c_vocab *v, aq_error *err)
{
    FILE *f = fopen(file, "rb");
    if (!f) return aq_fail(err, AQ_ERR_IO, "export: cannot open tokenizer %s", file);
    v->n = n;
    v->text = calloc((size_t)n, sizeof *v->text);
    v->score = calloc((size_t)n, sizeof *v->score);
    v->type = calloc((size_t)n, sizeof *v->type);
    char buf[1024];
    int32_t maxlen, len;
    aq_status st = AQ_OK;
    if (!v->text || !v->score || !v->type) st = aq_fail(err, AQ_ERR_NOMEM, "export: vocabulary");
    else if (fread(&maxlen, 4, 1, f) != 1) st = AQ_ERR_FORMAT;
    for (int i = 0; i < n && st == AQ_OK; i++) {
        if (fread(&v->score[i], 4, 1, f) != 1 || fread(&len, 4, 1, f) != 1 || len < 0 ||
            (size_t)len >= sizeof buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
            st = aq_fail(err, AQ_ERR_FORMAT, "export: tokenizer %s: token %d is truncated or too long", file, i);
            break;
        }
        const char *fixed[3] = {"<unk>", "<s>", "</s>"};
        v->type[i] = i == 0 ? TT_UNKNOWN : i < 3 ? TT_CONTROL : is_byte_piece(buf, (size_t)len) ? TT_BYTE : TT_NORMAL;
        v->text[i] = i < 3 ? strdup(fixed[i]) : escape_piece(buf, (size_t)len);
        if (!v->text[i]) st = aq_fail(err, AQ_ERR_NOMEM, "export: vocabulary");
    }
    if (st == AQ_ERR_FORMAT && !err->msg[0])
        aq_fail(err, st, "export: tokenizer %s: no header", file);
    fclose(f);
    return st;
}

aq_status aq_export_add_vocab(struct aq_gguf_writer *w, const aq_tokenizer *tok,
                              const char *tok_file, int vocab, aq_error *err)
{
    if (aq_tok_kind_of(tok) != AQ_TOK_LLAMA2C) return aq_export_add_hf_vocab(w, tok, tok_file, vocab, err);
    l2c_vocab v = {0};
    aq_status st;
    AQ_TRY_GOTO(st, read_l2c(tok_file, vocab, &v, err), done);
    AQ_TRY_GOTO(st, aq_gguf_set_str(w, "tokenizer.ggml.model", "llama", err), done);
    AQ_TRY_GOTO(st, aq_gguf_set_str_array(w, "tokenizer.ggml.tokens", (const char *const *)v.text,
                                          NULL, (uint64_t)vocab, err), done);
    AQ_TRY_GOTO(st, aq_gguf_set_array(w, "tokenizer.ggml.scores", AQ_GGUF_FLOAT32, v.score,
                                      (uint64_t)vocab, err), done);
    AQ_TRY_GOTO(st, aq_gguf_set_array(w, "tokenizer.ggml.token_type", AQ_GGUF_INT32, v.type,
                                      (uint64_t)vocab, err), done);
    AQ_TRY_GOTO(st, aq_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)aq_tok_bos_id(tok), err), done);
    AQ_TRY_GOTO(st, aq_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)aq_tok_eos_id(tok), err), done);
    AQ_TRY_GOTO(st, aq_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0, err), done);
    AQ_TRY_GOTO(st, aq_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", 1, err), done);
    st = aq_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", 0, err);
done:
    vocab_free(&v);
    return st;
}
