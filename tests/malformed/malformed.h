/* malformed.h — a corpus of hand-built safetensors images, each either valid
 * or broken in exactly one way, with a phrase its error message must contain.
 * Built byte by byte (not with our writer) so that the reader is tested
 * against an independent encoder. Used by test_safetensors, by the CLI test
 * (via gen_malformed, which writes the files) and as the fuzz seed corpus. */
#ifndef AQ_MALFORMED_H
#define AQ_MALFORMED_H

#include <stddef.h>

typedef struct aq_malformed_case {
    const char *name;   /* file name, e.g. "overlap.safetensors" */
    const char *expect; /* phrase the error must contain; NULL = the file is valid */
    unsigned char *buf; /* malloc'd image */
    size_t len;
} aq_malformed_case;

/* Builds every case; *out is malloc'd (free with aq_malformed_free). Returns the count. */
size_t aq_malformed_build(aq_malformed_case **out);
void aq_malformed_free(aq_malformed_case *cases, size_t n);

#endif
