/* test_atomic_file.c — the atomic write protocol: content lands complete,
 * an existing target is replaced only on commit, abort and failures leave no
 * temporary file behind, errors name the path. */
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../io/atomic_file.h"
#include "testutil.h"

static int file_is(const char *path, const char *want)
{
    char buf[256] = {0};
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    return n == strlen(want) && !memcmp(buf, want, n);
}

int main(void)
{
    char *dir = aq_test_tmpdir("atomic");
    char path[512];
    snprintf(path, sizeof path, "%s/out.txt", dir);
    aq_error err = {0};

    CHECK_OK(aq_atomic_write_file(path, "first", 5, &err), &err);
    CHECK(file_is(path, "first"));
    CHECK(aq_test_count_entries(dir) == 1);

    /* while open, the target still holds the old content; the temp is beside it */
    aq_atomic_file *f;
    CHECK_OK(aq_atomic_open(path, &f, &err), &err);
    CHECK_OK(aq_atomic_write(f, "sec", 3, &err), &err);
    CHECK_OK(aq_atomic_printf(f, &err, "ond %d", 2), &err);
    fputs("!", aq_atomic_stream(f));
    CHECK(aq_atomic_size(f) == 8);
    CHECK(file_is(path, "first"));
    CHECK(aq_test_count_entries(dir) == 2);
    CHECK_OK(aq_atomic_commit(f, &err), &err);
    CHECK(file_is(path, "second 2!"));
    CHECK(aq_test_count_entries(dir) == 1);

    /* abort leaves the target untouched and removes the temp */
    CHECK_OK(aq_atomic_open(path, &f, &err), &err);
    CHECK_OK(aq_atomic_write(f, "junk", 4, &err), &err);
    aq_atomic_abort(f);
    aq_atomic_abort(NULL);
    CHECK(file_is(path, "second 2!"));
    CHECK(aq_test_count_entries(dir) == 1);

    /* errors name the path */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/missing/out.txt", dir);
    CHECK(aq_atomic_write_file(bad, "x", 1, &err) == AQ_ERR_IO && strstr(err.msg, bad));
    /* rename onto a directory fails at commit: temp removed, error names the target */
    char sub[600];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    CHECK(mkdir(sub, 0755) == 0);
    snprintf(bad, sizeof bad, "%s/sub/inner", dir);
    CHECK(mkdir(bad, 0755) == 0);
    CHECK(aq_atomic_write_file(sub, "x", 1, &err) == AQ_ERR_IO && strstr(err.msg, sub));
    CHECK(aq_test_count_entries(dir) == 2); /* out.txt and sub: no temp left */

    /* a relative path (directory ".") works */
    char cwd[512];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(chdir(dir) == 0);
    CHECK_OK(aq_atomic_write_file("rel.txt", "r", 1, &err), &err);
    CHECK(file_is("rel.txt", "r"));
    unlink("rel.txt");
    CHECK(chdir(cwd) == 0);

    rmdir(bad);
    rmdir(sub);
    unlink(path);
    rmdir(dir);
    free(dir);
    AQ_TEST_END();
}
