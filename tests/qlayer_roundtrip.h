/* qlayer_roundtrip.h — the tests' write-then-load of one quantized layer
 * (src/adaquant/qlayer.h) through a safetensors file, shared by the group
 * and K-quant tests. */
#ifndef AQ_TEST_QLAYER_ROUNDTRIP_H
#define AQ_TEST_QLAYER_ROUNDTRIP_H

#include <string.h>

#include "../io/safetensors.h"
#include "../src/adaquant/qlayer.h"
#include "testutil.h"

/* Write r as layer `prefix` into path, open the file (*f, the caller closes
 * it) and load the layer back into *q (zeroed first; d_in its row length). */
static inline void aq_test_qlayer_roundtrip(const char *path, const char *prefix, const aq_layer_result *r,
                                            size_t d_in, aq_st_file **f, aq_qlayer *q)
{
    aq_error e = {0};
    aq_st_writer *w;
    aq_qlayer_keep *k = NULL;
    *f = NULL;
    memset(q, 0, sizeof *q);
    CHECK_OK(aq_st_writer_new(&w, &e), &e);
    CHECK_OK(aq_qlayer_add(w, prefix, r, &k, &e), &e);
    CHECK_OK(aq_st_writer_write(w, path, &e), &e);
    aq_st_writer_free(w);
    aq_qlayer_keep_free(k);
    CHECK_OK(aq_st_open(path, f, &e), &e);
    if (*f) CHECK_OK(aq_qlayer_load_st(*f, prefix, d_in, q, &e), &e);
}

#endif
