/* testutil.c — see testutil.h. */
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/blas/blas_kernel.h"

int aq_test_failures = 0;

/* Assets are checked before main runs: a test that finds an asset missing
 * half-way would report "skipped" for a run in which some checks already
 * ran (and may have failed). ctest passes the test's declared assets (the
 * ASSETS list of aq_test in tests/<area>.cmake) in AQ_TEST_ASSETS, separated
 * by ':'; this constructor skips (77) before any check if one is absent, and
 * aq_test_asset refuses a path the registration did not declare. Run by hand
 * (AQ_TEST_ASSETS unset), aq_test_asset skips at the call as before. */
static const char *aq_test_shared_dir(void)
{
    const char *dir = getenv("AQ_SHARED_DIR");
    return dir ? dir : "../shared";
}

/* The next non-empty item of a ':'-separated list: its start and length, and
 * *list moved past it; 0 at the end. */
static int aq_test_list_next(const char **list, const char **item, size_t *n)
{
    while (**list == ':') ++*list;
    if (!**list) return 0;
    *item = *list;
    *n = strcspn(*list, ":");
    *list += *n;
    return 1;
}

__attribute__((constructor)) static void aq_test_check_assets(void)
{
    const char *list = getenv("AQ_TEST_ASSETS"), *item;
    if (!list) return;
    const char *dir = aq_test_shared_dir();
    size_t n;
    while (aq_test_list_next(&list, &item, &n)) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%.*s", dir, (int)n, item);
        if (access(p, R_OK) != 0) {
            printf("SKIP: test asset %s is absent (set AQ_SHARED_DIR to the shared/ folder); "
                   "no check ran\n", p);
            fflush(stdout);
            exit(77);
        }
    }
}

char *aq_test_asset(const char *relpath)
{
    const char *declared = getenv("AQ_TEST_ASSETS");
    if (declared) {
        size_t rl = strlen(relpath), n;
        const char *s = declared, *item;
        int found = 0;
        while (!found && aq_test_list_next(&s, &item, &n)) found = n == rl && strncmp(item, relpath, n) == 0;
        if (!found) {
            fprintf(stderr, "FAIL: test asset %s is not in the test's ASSETS list (tests/<area>.cmake); "
                    "declare it there so that a missing asset skips the test before any check\n",
                    relpath);
            exit(1);
        }
    }
    const char *dir = aq_test_shared_dir();
    size_t n = strlen(dir) + strlen(relpath) + 2;
    char *p = malloc(n);
    if (!p) exit(1);
    snprintf(p, n, "%s/%s", dir, relpath);
    if (access(p, R_OK) != 0) {
        printf("SKIP: test asset %s is absent (set AQ_SHARED_DIR to the shared/ folder)\n", p);
        free(p);
        exit(77);
    }
    return p;
}

char *aq_test_tmpdir(const char *tag)
{
    char tmpl[256];
    snprintf(tmpl, sizeof tmpl, "/tmp/aqtest-%s-XXXXXX", tag);
    char *d = mkdtemp(tmpl);
    if (!d) {
        perror("mkdtemp");
        exit(1);
    }
    return strdup(d);
}

unsigned char *aq_test_read_file(const char *path, size_t *len)
{
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *b = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (b = malloc((size_t)n + 1))) {
        if (fread(b, 1, (size_t)n, f) == (size_t)n) {
            b[n] = 0;
            *len = (size_t)n;
        } else {
            free(b);
            b = NULL;
        }
    }
    fclose(f);
    return b;
}

int aq_test_have_numpy(void)
{
    return system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
}

uint64_t aq_test_u64(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 2685821657736338717ull;
}

double aq_test_urand(uint64_t *state)
{
    uint64_t v = aq_test_u64(state);
    return ((double)(v >> 11) + 0.5) / 9007199254740992.0;
}

int aq_test_irand(uint64_t *state, int n)
{
    int k = (int)(aq_test_urand(state) * (double)n);
    return k < n ? k : n - 1; /* urand's top value rounds to 1.0 in double */
}

float aq_test_frand(uint64_t *state)
{
    return (float)(aq_test_urand(state) - 0.5);
}

double aq_test_nrand(uint64_t *state)
{
    double u = aq_test_urand(state);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * aq_test_urand(state));
}

/* Every test runs the BLAS kernel that the adaquant command runs by default:
 * the same start-up choice (src/blas/blas_kernel.h), made before main and so
 * before any BLAS call. A BLIS_ARCH_TYPE in the environment (the forced-kernel
 * passes of scripts/test.sh) still wins. */
__attribute__((constructor)) static void aq_test_blas_kernel(void)
{
    aq_blas_kernel_select(NULL, 0);
}

int aq_test_count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    if (d) closedir(d);
    return n;
}
