/* fuzz_gguf.c — libFuzzer harness for the GGUF reader (io/gguf.c) and, on
 * what it accepts, the writer (io/gguf_write.c).
 *
 * Any input must be rejected with a message, or give self-consistent results:
 * every tensor's bytes inside the input, aligned, of the size its type and
 * dims imply, and not overlapping another; every string inside the input;
 * lookups by name returning the listed entry. An accepted file whose contents
 * the writer can express (arrays nested at most two deep, tensor names of at
 * most 63 bytes, 1..4 dims) is written again and re-read: the copy must hold
 * the same keys, types, values, tensor infos and tensor bytes (differential
 * check of writer against reader). A violated invariant aborts (a finding). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "../../io/gguf.h"

static const uint8_t *lo, *hi;

static void check_in(const void *p, uint64_t n)
{
    const uint8_t *q = p;
    REQUIRE(n == 0 || (q >= lo && q <= hi && n <= (uint64_t)(hi - q)));
}

static void check_value(const aq_gguf_value *v, int depth)
{
    REQUIRE(depth <= AQ_GGUF_MAX_DEPTH + 1);
    if (v->type == AQ_GGUF_STRING) {
        check_in(v->str.ptr, v->str.len);
        return;
    }
    if (v->type != AQ_GGUF_ARRAY) {
        check_in(v->raw, aq_gguf_type_size(v->type));
        return;
    }
    if (aq_gguf_type_size(v->elem_type)) check_in(v->raw, v->n * aq_gguf_type_size(v->elem_type));
    for (uint64_t i = 0; v->n && v->elem_type == AQ_GGUF_STRING && i < v->n; i++)
        check_in(v->strs[i].ptr, v->strs[i].len);
    for (uint64_t i = 0; v->n && v->elem_type == AQ_GGUF_ARRAY && i < v->n; i++)
        check_value(&v->items[i], depth + 1);
}

/* Re-add one value to w; 0 when the writer cannot express it (skip). */
static int readd(aq_gguf_writer *w, const aq_gguf_kv *kv)
{
    const aq_gguf_value *v = &kv->v;
    aq_error err = {0};
    if (v->type == AQ_GGUF_STRING)
        return aq_gguf_set_strn(w, kv->key, v->str.ptr, (size_t)v->str.len, &err) == AQ_OK;
    if (v->type != AQ_GGUF_ARRAY) {
        uint8_t buf[8];
        memcpy(buf, v->raw, aq_gguf_type_size(v->type)); /* little-endian host */
        return aq_gguf_set_scalar(w, kv->key, v->type, buf, &err) == AQ_OK;
    }
    if (v->elem_type == AQ_GGUF_STRING) {
        const char **s = malloc((v->n + 1) * sizeof *s);
        size_t *l = malloc((v->n + 1) * sizeof *l);
        for (uint64_t i = 0; i < v->n; i++)
            s[i] = v->strs[i].ptr, l[i] = (size_t)v->strs[i].len;
        int ok = aq_gguf_set_str_array(w, kv->key, s, l, v->n, &err) == AQ_OK;
        free(s);
        free(l);
        return ok;
    }
    if (v->elem_type != AQ_GGUF_ARRAY)
        return aq_gguf_set_array(w, kv->key, v->elem_type, v->raw, v->n, &err) == AQ_OK;
    if (v->n == 0) return 0;
    /* Arrays of fixed-size arrays, all of one element type, contiguous in the input. */
    aq_gguf_type et = v->items[0].elem_type;
    uint64_t *counts = malloc(v->n * sizeof *counts);
    int ok = aq_gguf_type_size(et) != 0;
    for (uint64_t i = 0; i < v->n && ok; i++) {
        ok = v->items[i].elem_type == et;
        counts[i] = v->items[i].n;
    }
    /* inner payloads are not contiguous in the file (headers between): gather */
    size_t sz = aq_gguf_type_size(et), total = 0;
    for (uint64_t i = 0; i < v->n && ok; i++)
        total += (size_t)counts[i] * sz;
    uint8_t *flat = ok ? malloc(total + 1) : NULL;
    for (uint64_t i = 0, at = 0; flat && i < v->n; i++) {
        memcpy(flat + at, v->items[i].raw, (size_t)counts[i] * sz);
        at += (size_t)counts[i] * sz;
    }
    ok = ok && aq_gguf_set_nested_array(w, kv->key, et, counts, v->n, flat, &err) == AQ_OK;
    free(flat);
    free(counts);
    return ok;
}

static int same_value(const aq_gguf_value *a, const aq_gguf_value *b)
{
    if (a->type != b->type) return 0;
    if (a->type == AQ_GGUF_STRING)
        return a->str.len == b->str.len && !memcmp(a->str.ptr, b->str.ptr, (size_t)a->str.len);
    if (a->type != AQ_GGUF_ARRAY) return !memcmp(a->raw, b->raw, aq_gguf_type_size(a->type));
    if (a->elem_type != b->elem_type || a->n != b->n) return 0;
    size_t sz = aq_gguf_type_size(a->elem_type);
    if (sz) return a->n == 0 || !memcmp(a->raw, b->raw, (size_t)a->n * sz);
    for (uint64_t i = 0; i < a->n; i++) {
        if (a->elem_type == AQ_GGUF_STRING &&
            (a->strs[i].len != b->strs[i].len ||
             memcmp(a->strs[i].ptr, b->strs[i].ptr, (size_t)a->strs[i].len)))
            return 0;
        if (a->elem_type == AQ_GGUF_ARRAY && !same_value(&a->items[i], &b->items[i])) return 0;
    }
    return 1;
}

static void roundtrip(const aq_gguf *g)
{
    aq_gguf_writer *w = NULL;
    aq_error err = {0};
    REQUIRE(aq_gguf_writer_new(&w, &err) == AQ_OK);
    int ok = 1;
    for (size_t i = 0; i < aq_gguf_n_kv(g) && ok; i++)
        ok = readd(w, aq_gguf_kv_at(g, i));
    for (size_t i = 0; i < aq_gguf_n_tensors(g) && ok; i++) {
        const aq_gguf_tensor *t = aq_gguf_tensor_at(g, i);
        ok = aq_gguf_add_tensor(w, t->name, t->n_dims, t->ne, t->type, t->data, &err) == AQ_OK;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    aq_gguf *c = NULL;
    if (ok) {
        REQUIRE(aq_gguf_write_memory(w, &buf, &len, &err) == AQ_OK &&
                len == aq_gguf_writer_size(w));
        REQUIRE(aq_gguf_open_memory(buf, len, "copy", &c, &err) == AQ_OK);
        REQUIRE(aq_gguf_n_kv(c) == aq_gguf_n_kv(g) && aq_gguf_n_tensors(c) == aq_gguf_n_tensors(g));
        REQUIRE(aq_gguf_alignment(c) == aq_gguf_alignment(g));
        for (size_t i = 0; i < aq_gguf_n_kv(g); i++) {
            const aq_gguf_kv *a = aq_gguf_kv_at(g, i), *b = aq_gguf_kv_at(c, i);
            REQUIRE(!strcmp(a->key, b->key) && same_value(&a->v, &b->v));
        }
        for (size_t i = 0; i < aq_gguf_n_tensors(g); i++) {
            const aq_gguf_tensor *a = aq_gguf_tensor_at(g, i), *b = aq_gguf_tensor_at(c, i);
            REQUIRE(!strcmp(a->name, b->name) && a->n_dims == b->n_dims && a->type == b->type);
            REQUIRE(!memcmp(a->ne, b->ne, sizeof a->ne) && a->nbytes == b->nbytes);
            REQUIRE(a->nbytes == 0 || !memcmp(a->data, b->data, (size_t)a->nbytes));
        }
        aq_gguf_close(c);
        free(buf);
    }
    aq_gguf_writer_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    aq_gguf *g = NULL;
    aq_error err = {0};
    if (aq_gguf_open_memory(data, size, "fuzz", &g, &err) != AQ_OK) {
        REQUIRE(g == NULL && err.code != AQ_OK && !strncmp(err.msg, "fuzz", 4));
        return 0;
    }
    lo = data;
    hi = data + size;
    uint32_t a = aq_gguf_alignment(g);
    REQUIRE(a && !(a & (a - 1)) && aq_gguf_data_offset(g) % a == 0);
    for (size_t i = 0; i < aq_gguf_n_kv(g); i++) {
        const aq_gguf_kv *kv = aq_gguf_kv_at(g, i);
        REQUIRE(kv->key[0] && aq_gguf_find_kv(g, kv->key) == kv);
        check_value(&kv->v, 0);
    }
    for (size_t i = 0; i < aq_gguf_n_tensors(g); i++) {
        const aq_gguf_tensor *t = aq_gguf_tensor_at(g, i);
        uint64_t nb = 0;
        REQUIRE(aq_gguf_find_tensor(g, t->name) == t);
        REQUIRE(aq_ggml_nbytes(t->type, t->n_dims, t->ne, t->name, &nb, &err) == AQ_OK &&
                nb == t->nbytes);
        REQUIRE(t->offset % a == 0 &&
                (const uint8_t *)t->data == data + aq_gguf_data_offset(g) + t->offset);
        check_in(t->data, t->nbytes);
        for (size_t j = 0; j < i; j++) { /* no overlap (quadratic: fuzz inputs are small) */
            const aq_gguf_tensor *u = aq_gguf_tensor_at(g, j);
            REQUIRE(!t->nbytes || !u->nbytes || t->offset >= u->offset + u->nbytes ||
                    u->offset >= t->offset + t->nbytes);
        }
    }
    roundtrip(g);
    aq_gguf_close(g);
    return 0;
}
