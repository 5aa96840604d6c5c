/* qlayer_group.h — INTERNAL to src/adaquant: the on-disk layout of a layer
 * in a group format (qlayer.h documents it), shared by qlayer.c. */
#ifndef AQ_QLAYER_GROUP_H
#define AQ_QLAYER_GROUP_H

#include "qlayer.h"

/* What the writer borrows until written (qlayer.h aq_qlayer_keep). */
struct aq_qlayer_keep {
    uint8_t *packed;
    float act[2];
    void *extra; /* group formats: fp16 scales and zero points */
};

/* Tensor lookup of the reader (a safetensors file or a checkpoint). */
typedef aq_status (*aq_qlayer_find_fn)(void *src, const char *name, const aq_tensor_view **v, aq_error *err);

/* Add a group-format result under prefix (packed data into *keep). */
aq_status aq_qlayer_group_add(aq_st_writer *w, const char *prefix, const aq_layer_result *r, aq_qlayer_keep **keep,
                              aq_error *err);
/* Read layer prefix at group option o (parsed) into q. */
aq_status aq_qlayer_group_load(aq_qlayer_find_fn find, void *src, const char *label, const aq_layer_opts *o,
                               const char *prefix, size_t d_in, aq_qlayer *q, aq_error *err);

#endif
