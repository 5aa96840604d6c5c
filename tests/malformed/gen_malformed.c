/* gen_malformed.c — writes the safetensors test corpus (malformed.h) into DIR,
 * one file per case, plus DIR/MANIFEST: "<file>\t<expected phrase or OK>". */
#include <stdio.h>

#include "malformed.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_malformed DIR\n");
        return 2;
    }
    aq_malformed_case *c;
    size_t n = aq_malformed_build(&c);
    char path[4096];
    snprintf(path, sizeof path, "%s/MANIFEST", argv[1]);
    FILE *man = fopen(path, "w");
    int rc = man ? 0 : 1;
    for (size_t i = 0; i < n && man; i++) {
        snprintf(path, sizeof path, "%s/%s", argv[1], c[i].name);
        FILE *fp = fopen(path, "wb");
        if (!fp || fwrite(c[i].buf, 1, c[i].len, fp) != c[i].len) rc = 1;
        if (fp && fclose(fp) != 0) rc = 1;
        fprintf(man, "%s\t%s\n", c[i].name, c[i].expect ? c[i].expect : "OK");
    }
    if (!man || fclose(man) != 0) rc = 1;
    if (rc) perror(argv[1]);
    aq_malformed_free(c, n);
    return rc;
}
