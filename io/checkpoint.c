/* checkpoint.c — one interface over every model source (checkpoint.h):
 * a safetensors file, an HF directory (model.safetensors, or shards listed in
 * model.safetensors.index.json and opened lazily), or a llama2.c .bin.
 *
 * Detection: a directory is sharded if it holds the index, single if it holds
 * model.safetensors; other files in it (config.json, quantization.json,
 * tokenizer files, ...) are ignored. A file ending in .bin is llama2.c, one
 * ending in .safetensors is safetensors; anything else is sniffed (a plausible
 * safetensors header length followed by '{') and otherwise taken as llama2.c,
 * which has no magic number. */
#include "checkpoint.h"
#include "name_index.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "llama2c.h"
#include "safetensors.h"

#define INDEX_NAME "model.safetensors.index.json"

typedef struct ck_shard {
    char *file;     /* name inside the directory, as in the index */
    aq_st_file *st; /* NULL until a tensor of it is first requested */
} ck_shard;

typedef struct ck_entry { /* a tensor of a sharded checkpoint */
    char *name;
    size_t shard;
} ck_entry;

struct aq_checkpoint {
    aq_ckpt_kind kind;
    char *path;       /* as given by the caller */
    char *dir;        /* holds config.json (HF kinds), else NULL */
    aq_st_file *st;   /* SAFETENSORS and HF_DIR */
    aq_llama2c *l2c;  /* LLAMA2C */
    ck_shard *shards; /* HF_SHARDED: sorted by file name */
    size_t nshards;
    ck_entry *entries; /* HF_SHARDED: in weight_map order */
    size_t *byname;    /* HF_SHARDED: entries sorted by name */
    size_t n;
};

static char *join(const char *dir, const char *file)
{
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, file);
    return p;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* True if the file starts like a safetensors file. */
static int sniff_safetensors(const char *path)
{
    unsigned char h[9];
    struct stat sb;
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    int ok = fread(h, 1, 9, fp) == 9 && fstat(fileno(fp), &sb) == 0;
    fclose(fp);
    if (!ok) return 0;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | h[i];
    return n <= 100000000ull && n <= (uint64_t)sb.st_size - 8 && h[8] == '{';
}

/* ---- sharded directories ---- */

static int shard_cmp(const void *a, const void *b)
{
    return strcmp(((const ck_shard *)a)->file, ((const ck_shard *)b)->file);
}

static const char *entry_name(const void *ck, size_t i) { return ((const aq_checkpoint *)ck)->entries[i].name; }

/* Index of shard `file` (shards sorted by file name). */
static size_t shard_index(const aq_checkpoint *ck, const char *file)
{
    ck_shard key = {(char *)file, NULL};
    const ck_shard *s = bsearch(&key, ck->shards, ck->nshards, sizeof key, shard_cmp);
    return (size_t)(s - ck->shards);
}

/* Collects the distinct shard files of the weight map and checks they exist. */
static aq_status load_shards(aq_checkpoint *ck, json_t *wm, const char *ipath, aq_error *err)
{
    json_t *files = json_object(); /* file -> first tensor naming it */
    if (!files) return aq_fail_nomem(err, "shard list", 0);
    aq_status st = AQ_OK;
    const char *k;
    json_t *v;
    json_object_foreach(wm, k, v)
    {
        const char *f = json_string_value(v);
        if (!f || !*f || strchr(f, '/')) {
            st = aq_fail(err, AQ_ERR_FORMAT,
                         "%s: weight_map[\"%s\"] must be a shard file name (a string "
                         "without '/')",
                         ipath, k);
            goto done;
        }
        if (!json_object_get(files, f)) json_object_set_new(files, f, json_string(k));
    }
    ck->nshards = json_object_size(files);
    ck->shards = calloc(ck->nshards ? ck->nshards : 1, sizeof *ck->shards);
    if (!ck->shards) {
        st = aq_fail_nomem(err, "shard list", ck->nshards * sizeof *ck->shards);
        goto done;
    }
    size_t i = 0;
    json_object_foreach(files, k, v)
    {
        if (!(ck->shards[i++].file = strdup(k))) {
            st = aq_fail_nomem(err, "shard name", strlen(k));
            goto done;
        }
    }
    qsort(ck->shards, ck->nshards, sizeof *ck->shards, shard_cmp);
    for (i = 0; i < ck->nshards; i++) {
        char *p = join(ck->dir, ck->shards[i].file);
        int missing = p && access(p, R_OK) != 0;
        free(p);
        if (missing) {
            st = aq_fail(err, AQ_ERR_NOTFOUND,
                         "%s: shard '%s' (holding tensor '%s') is missing from %s", ipath,
                         ck->shards[i].file,
                         json_string_value(json_object_get(files, ck->shards[i].file)), ck->dir);
            goto done;
        }
    }
done:
    json_decref(files);
    return st;
}

static aq_status load_entries(aq_checkpoint *ck, json_t *wm, aq_error *err)
{
    size_t n = json_object_size(wm);
    ck->entries = calloc(n ? n : 1, sizeof *ck->entries);
    ck->byname = calloc(n ? n : 1, sizeof *ck->byname);
    if (!ck->entries || !ck->byname)
        return aq_fail_nomem(err, "tensor index", n * sizeof *ck->entries);
    const char *k;
    json_t *v;
    json_object_foreach(wm, k, v)
    {
        ck_entry *e = &ck->entries[ck->n];
        if (!(e->name = strdup(k))) return aq_fail_nomem(err, "tensor name", strlen(k));
        e->shard = shard_index(ck, json_string_value(v));
        ck->n++;
    }
    return aq_name_index_build(ck->byname, ck->n, entry_name, ck, err);
}

static aq_status open_sharded(aq_checkpoint *ck, const char *ipath, aq_error *err)
{
    json_error_t je;
    json_t *root = json_load_file(ipath, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: invalid JSON at line %d, column %d: %s", ipath,
                       je.line, je.column, je.text);
    aq_status st = AQ_OK;
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm))
        st = aq_fail(err, AQ_ERR_FORMAT, "%s: missing or non-object \"weight_map\"", ipath);
    if (st == AQ_OK) st = load_shards(ck, wm, ipath, err);
    if (st == AQ_OK) st = load_entries(ck, wm, err);
    json_decref(root);
    return st;
}

/* Opens shard s on first use. The shard table is a cache: filling it does not
 * change what the checkpoint is, so this works on a const handle. */
static aq_status shard_open(const aq_checkpoint *ck, size_t s, aq_error *err)
{
    ck_shard *sh = &ck->shards[s];
    if (sh->st) return AQ_OK;
    char *p = join(ck->dir, sh->file);
    if (!p) return aq_fail_nomem(err, "shard path", strlen(ck->dir));
    aq_status st = aq_st_open(p, &sh->st, err);
    free(p);
    return st;
}

/* ---- open / close ---- */

static aq_status open_dir(aq_checkpoint *ck, aq_error *err)
{
    aq_status st;
    ck->dir = strdup(ck->path);
    char *ipath = join(ck->path, INDEX_NAME), *spath = join(ck->path, "model.safetensors");
    if (!ck->dir || !ipath || !spath) {
        st = aq_fail_nomem(err, "checkpoint path", strlen(ck->path));
    } else if (access(ipath, F_OK) == 0) {
        ck->kind = AQ_CKPT_HF_SHARDED;
        st = open_sharded(ck, ipath, err);
    } else if (access(spath, F_OK) == 0) {
        ck->kind = AQ_CKPT_HF_DIR;
        st = aq_st_open(spath, &ck->st, err);
    } else {
        st = aq_fail(err, AQ_ERR_NOTFOUND,
                     "%s: directory holds neither model.safetensors nor " INDEX_NAME, ck->path);
    }
    free(ipath);
    free(spath);
    return st;
}

aq_status aq_ckpt_open(const char *path, aq_checkpoint **out, aq_error *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return aq_fail(err, errno == ENOENT ? AQ_ERR_NOTFOUND : AQ_ERR_IO, "%s: %s", path,
                       strerror(errno));
    aq_checkpoint *ck = calloc(1, sizeof *ck);
    if (ck) ck->path = strdup(path);
    if (!ck || !ck->path) {
        free(ck);
        return aq_fail_nomem(err, "checkpoint", sizeof *ck);
    }
    aq_status st;
    if (S_ISDIR(sb.st_mode)) {
        st = open_dir(ck, err);
    } else if (ends_with(path, ".safetensors") ||
               (!ends_with(path, ".bin") && sniff_safetensors(path))) {
        ck->kind = AQ_CKPT_SAFETENSORS;
        st = aq_st_open(path, &ck->st, err);
    } else {
        ck->kind = AQ_CKPT_LLAMA2C;
        st = aq_l2c_open(path, &ck->l2c, err);
        if (st != AQ_OK && !ends_with(path, ".bin")) /* it was a guess: say so */
            aq_error_prefix(err, "%s: neither a safetensors file nor a llama2.c model", path);
    }
    if (st != AQ_OK) {
        aq_ckpt_close(ck);
        return st;
    }
    *out = ck;
    return AQ_OK;
}

void aq_ckpt_close(aq_checkpoint *ck)
{
    if (!ck) return;
    aq_st_close(ck->st);
    if (ck->l2c) aq_l2c_close(ck->l2c);
    for (size_t i = 0; i < ck->nshards; i++) {
        free(ck->shards[i].file);
        aq_st_close(ck->shards[i].st);
    }
    for (size_t i = 0; i < ck->n; i++)
        free(ck->entries[i].name);
    free(ck->shards);
    free(ck->entries);
    free(ck->byname);
    free(ck->dir);
    free(ck->path);
    free(ck);
}

aq_ckpt_kind aq_ckpt_get_kind(const aq_checkpoint *ck)
{
    return ck->kind;
}

const char *aq_ckpt_path(const aq_checkpoint *ck)
{
    return ck->path;
}

/* ---- tensors ---- */

size_t aq_ckpt_count(const aq_checkpoint *ck)
{
    if (ck->st) return aq_st_count(ck->st);
    if (ck->l2c) return aq_l2c_count(ck->l2c);
    return ck->n;
}

const char *aq_ckpt_name(const aq_checkpoint *ck, size_t i)
{
    if (i >= aq_ckpt_count(ck)) return NULL;
    if (ck->st) return aq_st_tensor(ck->st, i)->name;
    if (ck->l2c) return aq_l2c_tensor(ck->l2c, i)->name;
    return ck->entries[i].name;
}

static aq_status get_sharded(aq_checkpoint *ck, const char *name, const aq_tensor_view **out,
                             aq_error *err)
{
    size_t i = aq_name_index_find(ck->byname, ck->n, entry_name, ck, name);
    if (i == (size_t)-1) return aq_fail(err, AQ_ERR_NOTFOUND, "%s: no tensor named '%s'", ck->path, name);
    const ck_entry *e = &ck->entries[i];
    AQ_TRY(shard_open(ck, e->shard, err));
    *out = aq_st_find(ck->shards[e->shard].st, name);
    if (!*out)
        return aq_fail(err, AQ_ERR_NOTFOUND,
                       "%s/%s: tensor '%s' is listed in " INDEX_NAME " but absent from the shard", ck->dir,
                       ck->shards[e->shard].file, name);
    return AQ_OK;
}

aq_status aq_ckpt_get(aq_checkpoint *ck, const char *name, const aq_tensor_view **out,
                      aq_error *err)
{
    const aq_tensor_view *v = NULL;
    if (ck->kind == AQ_CKPT_HF_SHARDED) return get_sharded(ck, name, out, err);
    if (ck->st) v = aq_st_find(ck->st, name);
    for (size_t i = 0; ck->l2c && !v && i < aq_l2c_count(ck->l2c); i++)
        if (!strcmp(aq_l2c_tensor(ck->l2c, i)->name, name)) v = aq_l2c_tensor(ck->l2c, i);
    if (!v) return aq_fail(err, AQ_ERR_NOTFOUND, "%s: no tensor named '%s'", ck->path, name);
    *out = v;
    return AQ_OK;
}

void aq_ckpt_drop_pages(aq_checkpoint *ck, const aq_tensor_view *v)
{
    if (!ck || !v) return;
    if (ck->st && aq_st_drop_pages(ck->st, v->data, v->nbytes)) return;
    for (size_t i = 0; i < ck->nshards; i++)
        if (ck->shards[i].st && aq_st_drop_pages(ck->shards[i].st, v->data, v->nbytes)) return;
}

/* ---- metadata ---- */

aq_status aq_ckpt_llama_config(const aq_checkpoint *ck, aq_llama_config *cfg, aq_error *err)
{
    if (ck->l2c) {
        aq_l2c_config(ck->l2c, cfg);
        return AQ_OK;
    }
    if (!ck->dir)
        return aq_fail(err, AQ_ERR_NOTFOUND,
                       "%s: a bare safetensors file carries no model config "
                       "(open its directory, with config.json, instead)",
                       ck->path);
    char *p = join(ck->dir, "config.json");
    if (!p) return aq_fail_nomem(err, "config path", strlen(ck->dir));
    aq_status st = access(p, F_OK) != 0 ? aq_fail(err, AQ_ERR_NOTFOUND,
                                                  "%s: no config.json in the directory", ck->dir)
                                        : aq_llama_config_read_json(p, cfg, err);
    free(p);
    return st;
}

/* The safetensors file holding the metadata: the file, or the first shard
 * (opened here if needed). */
static const aq_st_file *meta_file(const aq_checkpoint *ck)
{
    if (ck->st) return ck->st;
    if (!ck->nshards) return NULL;
    aq_error e = {0};
    return shard_open(ck, 0, &e) == AQ_OK ? ck->shards[0].st : NULL;
}

const char *aq_ckpt_meta_get(const aq_checkpoint *ck, const char *key)
{
    const aq_st_file *f = meta_file(ck);
    return f ? aq_st_meta_get(f, key) : NULL;
}

size_t aq_ckpt_meta_count(const aq_checkpoint *ck)
{
    const aq_st_file *f = meta_file(ck);
    return f ? aq_st_meta_count(f) : 0;
}

void aq_ckpt_meta_at(const aq_checkpoint *ck, size_t i, const char **key, const char **value)
{
    const aq_st_file *f = meta_file(ck);
    *key = *value = NULL;
    if (f) aq_st_meta_at(f, i, key, value);
}

aq_status aq_ckpt_read_llama_config(const char *path, aq_llama_config *cfg, aq_error *err)
{
    aq_checkpoint *ck;
    AQ_TRY(aq_ckpt_open(path, &ck, err));
    aq_status st = aq_ckpt_llama_config(ck, cfg, err);
    aq_ckpt_close(ck);
    return st;
}
