/* textdata.h — the data of the LM pipeline: documents (from plain text, JSONL
 * or pre-tokenized files; docs/DATA.md), calibration windows and evaluation
 * sequences, defined once so that every command agrees.
 *
 * Documents of a text file: the file split on every "\n\n" (byte pairs, scanned
 * left to right), each piece stripped of leading/trailing ASCII whitespace
 * (" \t\n\v\f\r"), empty pieces dropped. A "\n\n\n" thus ends a document and
 * the next one starts after stripping the extra "\n"; "\r\n\r\n" is NOT a
 * separator (files are expected with "\n" line ends). A JSONL file gives one
 * document per line (its text field, stripped the same way; empty ones
 * dropped); a pre-tokenized file gives its documents' ids as they are.
 * Split: documents [0, n_calib) calibrate, [n_calib, n) evaluate. Sources given
 * as "split" (--text / --calib-text) keep today's rule n_calib = n/2 (rounded
 * down, so the evaluation half gets the extra document when n is odd);
 * --calib / --eval sources give their documents to one side each.
 * Calibration stream: for each calibration document BOS + encode(doc) (with
 * the tokenizer's dummy-prefix space, no EOS) or BOS + ids (pre-tokenized),
 * concatenated; cut into S consecutive windows of T tokens from the start
 * (the tail is unused). A tokenizer without BOS (Qwen) gives no BOS; its
 * documents are then joined by its EOS (none if it has no EOS either).
 * Evaluation: per document BOS (if the tokenizer has one) + its tokens,
 * truncated to max_len tokens; every position after the first is predicted
 * (the first token, BOS or not, is context only).
 * On TinyStories validation.txt: 4,300 documents, 2,150 + 2,150, 190,118
 * predicted evaluation tokens (max_len 512). */
#ifndef AQ_TEXTDATA_H
#define AQ_TEXTDATA_H

#include <stddef.h>
#include <stdint.h>

#include "../../io/fingerprint.h"
#include "tokenizer.h"

/* ---- data sources (datasrc.c; docs/DATA.md) ---- */

typedef enum { AQ_DATA_AUTO = 0, AQ_DATA_TEXT, AQ_DATA_JSONL, AQ_DATA_TOKENS } aq_data_format;
/* split: the documents of all split sources, first half calibration (--text);
 * calib / eval: every document to that side (--calib / --eval). */
typedef enum { AQ_DATA_SPLIT = 0, AQ_DATA_CALIB, AQ_DATA_EVAL } aq_data_role;

#define AQ_DATA_MAX_SOURCES 16
#define AQ_DATA_PATH 4096
#define AQ_DATA_FIELD 64
#define AQ_DATA_TOK_MAGIC "AQTOKENS" /* pre-tokenized file: docs/DATA.md */
#define AQ_DATA_TOK_VERSION 1

/* What the user named: plain value (fixed arrays), so that the pipeline can
 * broadcast it inside its settings. A source is a file path or a glob. */
typedef struct aq_data_spec {
    int n;
    struct {
        int role; /* aq_data_role */
        char path[AQ_DATA_PATH];
    } src[AQ_DATA_MAX_SOURCES];
    int format;                    /* aq_data_format; AUTO: by extension (.jsonl, .tok, else text) */
    char text_field[AQ_DATA_FIELD]; /* JSONL field ("" = "text") */
} aq_data_spec;

/* Append a source. AQ_ERR_ARG if there are AQ_DATA_MAX_SOURCES already, the
 * path is too long, or split sources would be mixed with calib/eval ones. */
aq_status aq_data_spec_add(aq_data_spec *s, aq_data_role role, const char *path, aq_error *err);
/* "auto", "text", "jsonl", "tokens" <-> aq_data_format; -1 if unknown. */
int aq_data_format_parse(const char *name);
const char *aq_data_format_name(int format);
/* The roles present: bit 1 << role. */
int aq_data_spec_roles(const aq_data_spec *s);
/* A one-line description for messages: the path of a single split source,
 * else "--calib A --eval B ..." (truncated to n bytes). */
void aq_data_spec_describe(const aq_data_spec *s, char *out, size_t n);

/* The files of a spec in load order (calibration side first): globs expanded
 * and sorted (bytewise), each with its format. AQ_ERR_ARG naming a glob that
 * matches nothing. Free with aq_data_files_free. */
typedef struct aq_data_file {
    char *path;
    int role, format;
} aq_data_file;
aq_status aq_data_files(const aq_data_spec *s, aq_data_file **files, size_t *n, aq_error *err);
void aq_data_files_free(aq_data_file *f, size_t n);
/* Content fingerprint of the data: format, text field, and per file its role,
 * format and bytes (not its name); *size = total bytes. Any change of a file
 * or of the file list (a new glob match) changes it. AQ_ERR_IO naming a file. */
aq_status aq_data_fingerprint(const aq_data_spec *s, aq_fingerprint *fp, uint64_t *size, aq_error *err);

/* ---- documents ---- */

typedef struct aq_docs {
    size_t n;
    char **doc;            /* text (NUL-terminated, stripped), or NULL if pre-tokenized */
    const uint32_t **ids;  /* pre-tokenized ids (no BOS), or NULL for a text document */
    size_t *n_ids;
    int *src;              /* index of the document's file in names */
    size_t *pos;           /* pre-tokenized: index of its first id in its file */
    size_t n_calib;        /* calibration = [0, n_calib), evaluation = [n_calib, n) */
    char **names;          /* source file names (for messages) */
    size_t n_names;
    void **blocks;         /* owned memory */
    size_t n_blocks, cap, cap_names, cap_blocks;
} aq_docs;

/* Read every source of spec (docs/DATA.md). Errors name the file and the line
 * (JSONL) or position (pre-tokenized): AQ_ERR_IO, AQ_ERR_FORMAT, AQ_ERR_ARG
 * ("no documents"). Free with aq_docs_free (safe after an error too). */
aq_status aq_docs_load(const aq_data_spec *spec, aq_docs *out, aq_error *err);

/* Read and split one text file (half split). Errors: AQ_ERR_IO naming the file; AQ_ERR_ARG
 * "no documents" if it holds nothing but whitespace. Free with aq_docs_free
 * (safe after an error too: *out is zeroed first). */
aq_status aq_docs_read(const char *path, aq_docs *out, aq_error *err);
/* Same from memory (label names it in errors). */
aq_status aq_docs_split(const char *text, size_t len, const char *label, aq_docs *out,
                        aq_error *err);
void aq_docs_free(aq_docs *d);

/* AQ_ERR_FORMAT naming the file and position of the first pre-tokenized id
 * >= vocab (all documents, both sides): a check before any work. */
aq_status aq_docs_check_ids(const aq_docs *d, int vocab, aq_error *err);

/* The calibration / evaluation documents as [first, first + count) of d. */
void aq_docs_calib_range(const aq_docs *d, size_t *first, size_t *count);
void aq_docs_eval_range(const aq_docs *d, size_t *first, size_t *count);

/* Calibration windows: *tokens (malloc'd, caller frees) receives S*T ids,
 * window w at tokens[w*T]. AQ_ERR_ARG if S or T < 1, or if the stream is
 * shorter than S*T (the message gives both numbers). */
/* Pre-tokenized ids >= the tokenizer's vocabulary size are AQ_ERR_FORMAT naming
 * the file and the id's position (here and in the two functions below). */
aq_status aq_calib_windows(const aq_tokenizer *tok, const aq_docs *d, int S, int T, int **tokens,
                           aq_error *err);

/* Evaluation sequences, packed: tokens[] holds lens[0] ids, then lens[1], ...
 * (every sequence starts with BOS if the tokenizer has one). Owned by the struct (aq_seqs_free). */
typedef struct aq_seqs {
    int n;
    int *lens;
    int *tokens;
    size_t n_tokens;    /* sum of lens */
    size_t n_predicted; /* sum of (lens - 1) */
} aq_seqs;

/* Evaluation documents (at most max_docs if > 0), each truncated to max_len
 * (>= 2) tokens. AQ_ERR_ARG if there is no evaluation document. */
aq_status aq_eval_seqs(const aq_tokenizer *tok, const aq_docs *d, int max_len, size_t max_docs,
                       aq_seqs *out, aq_error *err);
/* The calibration documents as sequences, like aq_eval_seqs (BOS +
 * encode(doc), truncated to max_len, at most max_docs if > 0): what global
 * tuning trains on, shaped like the evaluation data. */
aq_status aq_calib_seqs(const aq_tokenizer *tok, const aq_docs *d, int max_len, size_t max_docs,
                        aq_seqs *out, aq_error *err);
void aq_seqs_free(aq_seqs *s);

#endif
