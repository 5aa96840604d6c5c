/* atomic_file.h — write an output file so that readers see either the old
 * file or the complete new one, never a partial write, even after a crash.
 *
 * Protocol: create "<path>.tmp.<pid>[.<n>]" next to the target (same
 * directory, hence same file system), write through a stdio buffer, then on
 * commit: fflush, fsync the file, close, rename over the target, fsync the
 * directory so the rename itself is durable. Abort (or any failure) closes and
 * removes the temporary file. Typical use:
 *
 *     aq_atomic_file *f;
 *     AQ_TRY(aq_atomic_open(path, &f, err));
 *     if ((st = aq_atomic_write(f, buf, n, err)) != AQ_OK) { aq_atomic_abort(f); return st; }
 *     return aq_atomic_commit(f, err);      // always consumes f
 *
 * A handle is not thread-safe; distinct handles (even for the same target)
 * are independent. */
#ifndef AQ_ATOMIC_FILE_H
#define AQ_ATOMIC_FILE_H

#include <stdio.h>

#include "../common/status.h"

typedef struct aq_atomic_file aq_atomic_file;

/* Create the temporary file for target `path` (mode 0666 & ~umask).
 * AQ_ERR_IO naming the temporary path if it cannot be created. */
aq_status aq_atomic_open(const char *path, aq_atomic_file **out, aq_error *err);
/* Append len bytes (buffered). AQ_ERR_IO naming the target on failure; the
 * caller must still commit or abort the handle. */
aq_status aq_atomic_write(aq_atomic_file *f, const void *buf, size_t len, aq_error *err);
/* printf-style append (err comes before the format because of the varargs). */
aq_status aq_atomic_printf(aq_atomic_file *f, aq_error *err, const char *fmt, ...) AQ_PRINTF(3, 4);
/* The underlying stream, for fprintf/json_dumpf and friends. Write errors on
 * it are detected at commit (ferror). Do not fclose it. */
FILE *aq_atomic_stream(aq_atomic_file *f);
/* Bytes written so far. */
size_t aq_atomic_size(const aq_atomic_file *f);
/* Flush, fsync, rename over the target, fsync the directory. Always frees f;
 * on failure the temporary file is removed and the target is unchanged. */
aq_status aq_atomic_commit(aq_atomic_file *f, aq_error *err);
/* Discard: close and remove the temporary file, free f. NULL is a no-op. */
void aq_atomic_abort(aq_atomic_file *f);

/* Create directory `dir` (mode 0777 & ~umask) unless it already exists (a
 * work directory and its subdirectories, made again by every run and resume).
 * AQ_ERR_IO "<dir>: cannot create the <what>: <reason>" otherwise. */
aq_status aq_mkdir_once(const char *dir, const char *what, aq_error *err);

/* One shot: atomically replace `path` with buf[0..len). */
aq_status aq_atomic_write_file(const char *path, const void *buf, size_t len, aq_error *err);

/* Atomically replace dst with a copy of the file src. Errors name the file. */
aq_status aq_atomic_copy_file(const char *src, const char *dst, aq_error *err);

#endif
