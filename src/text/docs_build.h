/* docs_build.h — building an aq_docs (textdata.c) from the source readers
 * (datasrc.c). Private to src/text. */
#ifndef AQ_DOCS_BUILD_H
#define AQ_DOCS_BUILD_H

#include "textdata.h"

/* Take ownership of block (freed by aq_docs_free; freed now on failure). */
aq_status aq_docs_own(aq_docs *d, void *block, aq_error *err);
/* Record a source file name; *index receives its index in d->names. */
aq_status aq_docs_add_name(aq_docs *d, const char *name, int *index, aq_error *err);
/* Append a document: text (NUL-terminated, kept by pointer) or ids/n_ids
 * (kept by pointer), from file src at position pos. */
aq_status aq_docs_push(aq_docs *d, char *text, const uint32_t *ids, size_t n_ids, int src, size_t pos,
                       aq_error *err);
/* Split buf[0, len) (owned by d already; buf[len] must be writable and is
 * set to NUL) on "\n\n" into stripped documents of file src. */
aq_status aq_docs_split_into(aq_docs *d, char *buf, size_t len, int src, aq_error *err);
/* Strip ASCII whitespace from [*a, *b). */
void aq_docs_strip(const char *buf, size_t *a, size_t *b);
/* The whole file, malloc'd with one extra byte (*len excludes it). */
aq_status aq_docs_read_file(const char *path, char **buf, size_t *len, aq_error *err);

#endif
