/* stage_capture_resid.c — the residual checkpoints of the streaming capture
 * (stage_capture.h): after block b is captured, every rank writes the FP
 * residual at block b+1's input of each of its chunks to
 * WORK/resid/<chunk>.<(b+1) mod 2>, so a killed capture resumes at the last
 * finished block with any number of ranks. Two generations: a kill while the
 * files of block b+1 are being written leaves those of block b whole.
 *
 * File (native byte order, the ranks of one cluster): 48-byte header
 *   "AQRESID1", u64 fingerprint h[0], h[1] (the statistics'), i32 block (whose
 *   input this is), i32 chunk, u64 rows, u32 dim, u32 zlib crc32 of the data,
 *   u32 reserved (0)
 * then rows * dim float32. Written atomically (io/atomic_file.h). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "../../io/atomic_file.h"
#include "stage_capture.h"

#define RESID_MAGIC "AQRESID1"
#define RESID_HEADER 48

typedef struct resid_head {
    char magic[8];
    uint64_t fp0, fp1;
    int32_t block, chunk;
    uint64_t rows;
    uint32_t dim, crc, reserved;
} resid_head;

static void resid_path(const char *work, size_t chunk, int block, char *out)
{
    char rel[64];
    snprintf(rel, sizeof rel, "resid/%zu.%d", chunk, block % 2);
    aq_pipe_path(work, rel, out);
}

static uint32_t crc_of(const float *x, size_t n)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    const unsigned char *p = (const unsigned char *)x;
    size_t bytes = n * sizeof(float);
    while (bytes) { /* crc32 takes a uInt length */
        uInt k = bytes > (1u << 30) ? (1u << 30) : (uInt)bytes;
        crc = crc32(crc, p, k);
        p += k;
        bytes -= k;
    }
    return (uint32_t)crc;
}

aq_status aq_resid_save(const char *work, size_t chunk, int block, const aq_fingerprint *fp, const float *x,
                        size_t rows, int dim, aq_error *err)
{
    char dir[AQ_PIPE_PATH], path[AQ_PIPE_PATH];
    aq_pipe_path(work, "resid", dir);
    AQ_TRY(aq_mkdir_once(dir, "residual checkpoint directory", err));
    resid_path(work, chunk, block, path);
    resid_head h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, RESID_MAGIC, 8);
    h.fp0 = fp->h[0], h.fp1 = fp->h[1];
    h.block = block, h.chunk = (int32_t)chunk;
    h.rows = rows, h.dim = (uint32_t)dim;
    h.crc = crc_of(x, rows * (size_t)dim);
    aq_atomic_file *f;
    AQ_TRY(aq_atomic_open(path, &f, err));
    aq_status st = aq_atomic_write(f, &h, RESID_HEADER, err);
    if (st == AQ_OK) st = aq_atomic_write(f, x, rows * (size_t)dim * sizeof(float), err);
    if (st != AQ_OK) {
        aq_atomic_abort(f);
        return st;
    }
    return aq_atomic_commit(f, err);
}

aq_status aq_resid_load(const char *work, size_t chunk, int block, const aq_fingerprint *fp, float *x, size_t rows,
                        int dim, aq_error *err)
{
    char path[AQ_PIPE_PATH];
    resid_path(work, chunk, block, path);
    FILE *f = fopen(path, "rb");
    if (!f) return aq_fail(err, AQ_ERR_NOTFOUND, "%s: no residual checkpoint", path);
    resid_head h;
    size_t n = rows * (size_t)dim;
    int ok = fread(&h, 1, RESID_HEADER, f) == RESID_HEADER;
    const char *why = !ok                                                ? "truncated header"
                      : memcmp(h.magic, RESID_MAGIC, 8)                  ? "bad magic"
                      : h.fp0 != fp->h[0] || h.fp1 != fp->h[1]           ? "fingerprint of other statistics"
                      : h.block != block || h.chunk != (int32_t)chunk    ? "another block or chunk"
                      : h.rows != rows || h.dim != (uint32_t)dim         ? "other shape"
                      : fread(x, sizeof(float), n, f) != n || fgetc(f) != EOF ? "size"
                      : h.crc != crc_of(x, n)                            ? "CRC mismatch"
                                                                         : NULL;
    fclose(f);
    if (why) return aq_fail(err, AQ_ERR_FORMAT, "%s: residual checkpoint of block %d invalid (%s)", path, block, why);
    return AQ_OK;
}

void aq_resid_remove(const char *work)
{
    char dir[AQ_PIPE_PATH], path[2 * AQ_PIPE_PATH];
    aq_pipe_path(work, "resid", dir);
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}
