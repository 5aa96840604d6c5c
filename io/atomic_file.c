/* atomic_file.c — temp file + fsync + rename + directory fsync (atomic_file.h). */
#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct aq_atomic_file {
    FILE *fp;
    size_t size;
    char *path; /* target */
    char *tmp;  /* temporary name next to it */
};

static void atomic_free(aq_atomic_file *f)
{
    free(f->path);
    free(f->tmp);
    free(f);
}

aq_status aq_atomic_open(const char *path, aq_atomic_file **out, aq_error *err)
{
    aq_atomic_file *f = calloc(1, sizeof *f);
    size_t n = strlen(path) + 48;
    if (f) f->path = strdup(path);
    if (f) f->tmp = malloc(n);
    if (!f || !f->path || !f->tmp) {
        if (f) atomic_free(f);
        return aq_fail_nomem(err, "atomic file handle", n);
    }
    /* The pid keeps concurrent processes apart; the counter handles a stale
     * temporary left by a crashed process that had the same pid. */
    int fd = -1;
    for (int k = 0; k < 100 && fd < 0; k++) {
        if (k == 0)
            snprintf(f->tmp, n, "%s.tmp.%ld", path, (long)getpid());
        else
            snprintf(f->tmp, n, "%s.tmp.%ld.%d", path, (long)getpid(), k);
        fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        aq_status st = aq_fail(err, AQ_ERR_IO, "%s: cannot create temporary file: %s", f->tmp,
                               strerror(errno));
        atomic_free(f);
        return st;
    }
    f->fp = fdopen(fd, "wb");
    if (!f->fp) {
        aq_status st = aq_fail(err, AQ_ERR_IO, "%s: fdopen: %s", f->tmp, strerror(errno));
        close(fd);
        unlink(f->tmp);
        atomic_free(f);
        return st;
    }
    *out = f;
    return AQ_OK;
}

aq_status aq_atomic_write(aq_atomic_file *f, const void *buf, size_t len, aq_error *err)
{
    if (len && fwrite(buf, 1, len, f->fp) != len)
        return aq_fail(err, AQ_ERR_IO, "%s: write failed at byte %zu: %s", f->path, f->size,
                       strerror(errno));
    f->size += len;
    return AQ_OK;
}

aq_status aq_atomic_printf(aq_atomic_file *f, aq_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vfprintf(f->fp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return aq_fail(err, AQ_ERR_IO, "%s: write failed at byte %zu: %s", f->path, f->size,
                       strerror(errno));
    f->size += (size_t)n;
    return AQ_OK;
}

FILE *aq_atomic_stream(aq_atomic_file *f)
{
    return f->fp;
}

size_t aq_atomic_size(const aq_atomic_file *f)
{
    return f->size;
}

/* fsync the directory holding `path` so that a completed rename survives a crash. */
static aq_status fsync_parent(const char *path, aq_error *err)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return aq_fail_nomem(err, "directory name", strlen(path));
    aq_status st = AQ_OK;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        st =
            aq_fail(err, AQ_ERR_IO, "%s: cannot open directory to fsync: %s", dir, strerror(errno));
    else if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) /* some file systems refuse */
        st = aq_fail(err, AQ_ERR_IO, "%s: directory fsync failed: %s", dir, strerror(errno));
    if (fd >= 0) close(fd);
    free(dir);
    return st;
}

aq_status aq_atomic_commit(aq_atomic_file *f, aq_error *err)
{
    aq_status st = AQ_OK;
    int bad = fflush(f->fp) != 0 || ferror(f->fp);
    if (bad || fsync(fileno(f->fp)) != 0)
        st = aq_fail(err, AQ_ERR_IO, "%s: %s failed: %s", f->tmp, bad ? "write" : "fsync",
                     strerror(errno));
    if (fclose(f->fp) != 0 && st == AQ_OK)
        st = aq_fail(err, AQ_ERR_IO, "%s: close failed: %s", f->tmp, strerror(errno));
    if (st == AQ_OK && rename(f->tmp, f->path) != 0)
        st = aq_fail(err, AQ_ERR_IO, "%s: cannot rename %s over it: %s", f->path, f->tmp,
                     strerror(errno));
    if (st != AQ_OK)
        unlink(f->tmp);
    else
        st = fsync_parent(f->path, err);
    atomic_free(f);
    return st;
}

void aq_atomic_abort(aq_atomic_file *f)
{
    if (!f) return;
    fclose(f->fp);
    unlink(f->tmp);
    atomic_free(f);
}

aq_status aq_atomic_write_file(const char *path, const void *buf, size_t len, aq_error *err)
{
    aq_atomic_file *f;
    AQ_TRY(aq_atomic_open(path, &f, err));
    aq_status st = aq_atomic_write(f, buf, len, err);
    if (st != AQ_OK) {
        aq_atomic_abort(f);
        return st;
    }
    return aq_atomic_commit(f, err);
}

aq_status aq_atomic_copy_file(const char *src, const char *dst, aq_error *err)
{
    int fd = open(src, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return aq_fail(err, AQ_ERR_IO, "%s: cannot open for copying: %s", src, strerror(errno));
    aq_atomic_file *f;
    aq_status st = aq_atomic_open(dst, &f, err);
    if (st != AQ_OK) {
        close(fd);
        return st;
    }
    char buf[1 << 16];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) st = aq_fail(err, AQ_ERR_IO, "%s: read error while copying: %s", src, strerror(errno));
        if (n <= 0 || st != AQ_OK) break;
        st = aq_atomic_write(f, buf, (size_t)n, err);
        if (st != AQ_OK) break;
    }
    close(fd);
    if (st != AQ_OK) {
        aq_atomic_abort(f);
        return st;
    }
    return aq_atomic_commit(f, err);
}

aq_status aq_mkdir_once(const char *dir, const char *what, aq_error *err)
{
    if (mkdir(dir, 0777) == 0 || errno == EEXIST) return AQ_OK;
    return aq_fail(err, AQ_ERR_IO, "%s: cannot create the %s: %s", dir, what, strerror(errno));
}
