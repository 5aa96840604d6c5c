/* textdata.h — the text data of the LM pipeline: documents, calibration windows
 * and evaluation sequences, defined once so that every command agrees.
 *
 * Documents: the file split on every "\n\n" (byte pairs, scanned left to
 * right), each piece stripped of leading/trailing ASCII whitespace
 * (" \t\n\v\f\r"), empty pieces dropped. A "\n\n\n" thus ends a document and
 * the next one starts after stripping the extra "\n"; "\r\n\r\n" is NOT a
 * separator (files are expected with "\n" line ends).
 * Split: calibration = documents [0, n/2), evaluation = [n/2, n) (n/2 rounded
 * down, so the evaluation half gets the extra document when n is odd).
 * Calibration stream: for each calibration document BOS + encode(doc) (with
 * the tokenizer's dummy-prefix space, no EOS), concatenated; cut into S
 * consecutive windows of T tokens from the start (the tail is unused).
 * Evaluation: per document BOS + encode(doc), truncated to max_len tokens;
 * every position after the first is predicted (BOS is context only).
 * On TinyStories validation.txt: 4,300 documents, 2,150 + 2,150, 190,118
 * predicted evaluation tokens (max_len 512). */
#ifndef AQ_TEXTDATA_H
#define AQ_TEXTDATA_H

#include <stddef.h>

#include "tokenizer.h"

typedef struct aq_docs {
    size_t n;
    char **doc; /* NUL-terminated, stripped; point into buf */
    char *buf;  /* owned */
} aq_docs;

/* Read and split a text file. Errors: AQ_ERR_IO naming the file; AQ_ERR_ARG
 * "no documents" if it holds nothing but whitespace. Free with aq_docs_free
 * (safe after an error too: *out is zeroed first). */
aq_status aq_docs_read(const char *path, aq_docs *out, aq_error *err);
/* Same from memory (label names it in errors). */
aq_status aq_docs_split(const char *text, size_t len, const char *label, aq_docs *out,
                        aq_error *err);
void aq_docs_free(aq_docs *d);

/* The calibration / evaluation halves as [first, first + count) of d. */
void aq_docs_calib_range(const aq_docs *d, size_t *first, size_t *count);
void aq_docs_eval_range(const aq_docs *d, size_t *first, size_t *count);

/* Calibration windows: *tokens (malloc'd, caller frees) receives S*T ids,
 * window w at tokens[w*T]. AQ_ERR_ARG if S or T < 1, or if the stream is
 * shorter than S*T (the message gives both numbers). */
aq_status aq_calib_windows(const aq_tokenizer *tok, const aq_docs *d, int S, int T, int **tokens,
                           aq_error *err);

/* Evaluation sequences, packed: tokens[] holds lens[0] ids, then lens[1], ...
 * (every sequence starts with BOS). Owned by the struct (aq_seqs_free). */
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
