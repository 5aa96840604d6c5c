/* scalapack.h — the BLACS / PBLAS / ScaLAPACK entry points the cooperative
 * path (coop*.c) calls, declared here because Debian's libscalapack-openmpi
 * ships no C header (docs/COOP.md, /work/shared/TOOLCHAIN.md).
 *
 * Calling convention (gfortran ABI, ScaLAPACK 2.2.1 built with gfortran):
 *  - the Fortran routines (numroc_, descinit_, p?gemm_, ...) take every
 *    argument by reference, integers are default 4-byte INTEGER (int);
 *  - matrices are column-major; a distributed matrix is (local array, global
 *    row and column offsets IA/JA counted from 1, a 9-int descriptor);
 *  - CHARACTER arguments add hidden length arguments (size_t) at the end of
 *    the list, one per character argument, in order. The PBLAS and the
 *    ScaLAPACK drivers are written in C and Fortran respectively; the hidden
 *    lengths are harmless for the C ones and required by the Fortran ones,
 *    so every prototype here declares them and callers pass 1.
 *  - the Cblacs_* functions are the BLACS C interface (by value). With Open MPI
 *    Csys2blacs_handle takes the MPI_Comm handle itself.
 * Only what coop*.c uses is declared. */
#ifndef AQ_SCALAPACK_H
#define AQ_SCALAPACK_H

#include <stddef.h>

#include <mpi.h>

/* Descriptor fields (0-based indices into int desc[9]). */
enum { AQ_DESC_CTXT = 1, AQ_DESC_M = 2, AQ_DESC_N = 3, AQ_DESC_LLD = 8 };

/* --- BLACS (C interface) --- */
void Cblacs_pinfo(int *mypnum, int *nprocs);
int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_gridinit(int *context, const char *order, int nprow, int npcol);
void Cblacs_gridinfo(int context, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int context);
void Cblacs_exit(int not_done);

/* --- ScaLAPACK tools (Fortran) --- */
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb,
               const int *irsrc, const int *icsrc, const int *ictxt, const int *lld, int *info);

/* --- PBLAS --- */
void pdgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k,
             const double *alpha, const double *a, const int *ia, const int *ja, const int *desca,
             const double *b, const int *ib, const int *jb, const int *descb, const double *beta,
             double *c, const int *ic, const int *jc, const int *descc, size_t la, size_t lb);
void psgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k,
             const float *alpha, const float *a, const int *ia, const int *ja, const int *desca,
             const float *b, const int *ib, const int *jb, const int *descb, const float *beta,
             float *c, const int *ic, const int *jc, const int *descc, size_t la, size_t lb);
void pdsymm_(const char *side, const char *uplo, const int *m, const int *n, const double *alpha,
             const double *a, const int *ia, const int *ja, const int *desca, const double *b,
             const int *ib, const int *jb, const int *descb, const double *beta, double *c,
             const int *ic, const int *jc, const int *descc, size_t ls, size_t lu);
void pdsyrk_(const char *uplo, const char *trans, const int *n, const int *k, const double *alpha,
             const double *a, const int *ia, const int *ja, const int *desca, const double *beta,
             double *c, const int *ic, const int *jc, const int *descc, size_t lu, size_t lt);
void pdtran_(const int *m, const int *n, const double *alpha, const double *a, const int *ia,
             const int *ja, const int *desca, const double *beta, double *c, const int *ic,
             const int *jc, const int *descc);

/* --- ScaLAPACK (Fortran) --- */
void pdpotrf_(const char *uplo, const int *n, double *a, const int *ia, const int *ja,
              const int *desca, int *info, size_t lu);
void pdtrtri_(const char *uplo, const char *diag, const int *n, double *a, const int *ia,
              const int *ja, const int *desca, int *info, size_t lu, size_t ld);

#endif
