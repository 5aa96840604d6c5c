/* sgemm.c — aq_sgemm (sgemm.h) over BLIS's typed API. */
#include <blis.h>

#include "sgemm.h"

void aq_sgemm(int ta, int tb, long m, long n, long k, float alpha, const float *a, long rsa,
              long csa, const float *b, long rsb, long csb, float beta, float *c, long rsc,
              long csc)
{
    /* BLIS's small-matrix ("sup") path picks kernels by matrix shape, so a
     * row's result would depend on how many other rows share the call. With
     * it disabled every output element is accumulated in the same order
     * whatever m is: a token's activations do not depend on the batch it is
     * in, which makes capture statistics reproducible across batchings. */
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(1, &rntm);
    bli_rntm_disable_l3_sup(&rntm);
    /* the typed API takes non-const pointers but does not write A or B */
    bli_sgemm_ex(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 m, n, k, &alpha, (float *)a, rsa, csa, (float *)b, rsb, csb, &beta, c, rsc, csc,
                 NULL, &rntm);
}
