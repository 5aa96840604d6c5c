/* sgemm.h — the one single-precision matrix product of the engines (the
 * transformer in src/model/, the CNN in src/cnn/). */
#ifndef AQ_SGEMM_H
#define AQ_SGEMM_H

/* C = alpha op(A) op(B) + beta C, single-threaded BLIS without the small-matrix
 * ("sup") path, so results do not depend on m (a row's, a token's or an image's
 * values do not depend on how many others share the call); ta/tb non-zero =
 * transpose; strides in elements (row stride, column stride). */
void aq_sgemm(int ta, int tb, long m, long n, long k, float alpha, const float *a, long rsa,
              long csa, const float *b, long rsb, long csb, float beta, float *c, long rsc,
              long csc);

#endif
