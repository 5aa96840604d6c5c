/* fuzz_datasrc.c — libFuzzer harness for the data-source readers
 * (src/text/datasrc.c: JSONL, pre-tokenized .tok, plain text; docs/DATA.md).
 * The first input byte picks the format (mod 3), the rest is the file, written
 * to a private temporary file because the readers take paths. A refusal must
 * come with a code and a message; an accepted file must give documents that
 * are non-empty, each either text or ids, with a calibration/evaluation split
 * inside [0, n]; the id-range check must succeed or explain itself. A violated
 * invariant aborts (a finding). Seeds: tiny files of each format written by
 * hand in tests/fuzz/seeds/fuzz_datasrc/. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "../../src/text/textdata.h"

static char path[64];

__attribute__((destructor)) static void remove_input(void)
{
    if (path[0]) unlink(path);
}

/* The file the readers open: one per process, rewritten for every input. */
static int write_input(const uint8_t *data, size_t size)
{
    if (!path[0]) snprintf(path, sizeof path, "/tmp/aq-fuzz-datasrc-%ld", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(data, 1, size, f) == size;
    return fclose(f) == 0 && ok ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    static const int formats[3] = {AQ_DATA_TEXT, AQ_DATA_JSONL, AQ_DATA_TOKENS};
    int format = formats[data[0] % 3];
    if (write_input(data + 1, size - 1) != 0) return 0;
    aq_data_spec spec;
    memset(&spec, 0, sizeof spec);
    aq_error err = {0};
    REQUIRE(aq_data_spec_add(&spec, AQ_DATA_SPLIT, path, &err) == AQ_OK);
    spec.format = format;
    aq_docs d;
    if (aq_docs_load(&spec, &d, &err) != AQ_OK) {
        REQUIRE(err.code != AQ_OK && err.msg[0] != '\0');
        aq_docs_free(&d);
        return 0;
    }
    REQUIRE(d.n > 0 && d.n_calib <= d.n);
    for (size_t i = 0; i < d.n; i++) {
        REQUIRE((d.doc[i] != NULL) != (d.ids[i] != NULL));
        if (d.doc[i]) REQUIRE(d.doc[i][0] != '\0');
        else REQUIRE(d.n_ids[i] > 0);
        REQUIRE(d.src[i] >= 0 && (size_t)d.src[i] < d.n_names);
    }
    size_t first, count;
    aq_docs_calib_range(&d, &first, &count);
    REQUIRE(first + count <= d.n);
    aq_docs_eval_range(&d, &first, &count);
    REQUIRE(first + count <= d.n);
    aq_error e2 = {0};
    if (aq_docs_check_ids(&d, 512, &e2) != AQ_OK) REQUIRE(e2.msg[0] != '\0');
    aq_docs_free(&d);
    return 0;
}
