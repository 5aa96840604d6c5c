/* polish.c — exact polishing of a quantized layer in the Gram form.
 *
 * The loss is an exact quadratic in W^ and separates over output rows, so for
 * one row with fixed codes the best (scale, zero, bias') is a 3-parameter least
 * squares problem (2 when symmetric), and the exact loss change of moving one
 * code by delta is  eps^2 C_cc + 2 eps g_c  with eps = -s delta and
 * g = E_r C - Pm_r (kept up to date in O(D) per accepted move).
 * Alternating the two never increases the row loss: both steps are exact
 * descent steps and a refit is accepted only when it lowers the loss. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <blis.h>

#include "layer_state.h"

/* Solve the n x n (n <= 3) symmetric system M x = b by Gaussian elimination
 * with partial pivoting; 0 if (near-)singular relative to the diagonal. */
static int solve_small(int n, double M[3][3], double b[3], double x[3])
{
    double scale = 0;
    for (int i = 0; i < n; i++) scale = fmax(scale, fabs(M[i][i]));
    if (!(scale > 0)) return 0;
    for (int k = 0; k < n; k++) {
        int p = k;
        for (int i = k + 1; i < n; i++)
            if (fabs(M[i][k]) > fabs(M[p][k])) p = i;
        if (fabs(M[p][k]) <= 1e-13 * scale) return 0;
        if (p != k) {
            for (int j = 0; j < n; j++) {
                double t = M[k][j];
                M[k][j] = M[p][j];
                M[p][j] = t;
            }
            double t = b[k];
            b[k] = b[p];
            b[p] = t;
        }
        for (int i = k + 1; i < n; i++) {
            double f = M[i][k] / M[k][k];
            for (int j = k; j < n; j++) M[i][j] -= f * M[k][j];
            b[i] -= f * b[k];
        }
    }
    for (int i = n - 1; i >= 0; i--) {
        double t = b[i];
        for (int j = i + 1; j < n; j++) t -= M[i][j] * x[j];
        x[i] = t / M[i][i];
    }
    return 1;
}

typedef struct polish_ws {
    double *phi; /* [D] the code basis vector of the row */
    const double *Cu; /* [D] C phi (row of the batched product, codes_times_C) */
    double *c1;  /* [D] C [1..1 0] (asymmetric) */
    double *wc;  /* [D] W^_r C */
} polish_ws;

/* Refit (s, z, b') of row r given its codes and ws->Cu = C phi_r; on return
 * ws->wc = W^_r C for the parameters in force (refit accepted or not). */
static void refit_row(aq_ls *S, size_t r, polish_ws *ws)
{
    size_t d_in = S->d_in, D = S->D;
    const uint8_t *u = S->u + r * d_in;
    const double *C = S->C, *t = S->T + r * D;
    double off = S->sym ? S->zsym : 0.0;
    for (size_t c = 0; c < d_in; c++) ws->phi[c] = (double)u[c] - off;
    ws->phi[d_in] = 0;
    const double *cb = C + d_in * D; /* row d_in = column d_in */
    int n = S->sym ? 2 : 3;
    double M[3][3] = {{0}}, rhs[3] = {0}, th[3] = {0}, old[3];
    double pu = 0, pt = 0, ot = 0, o1 = 0;
    for (size_t c = 0; c < d_in; c++) {
        pu += ws->phi[c] * ws->Cu[c];
        pt += ws->phi[c] * t[c];
    }
    /* basis order: phi, [eb], [ones] -> index 0 = scale, 1 = bias, 2 = -s z */
    M[0][0] = pu;
    M[0][1] = M[1][0] = ws->Cu[d_in];
    M[1][1] = cb[d_in];
    rhs[0] = pt;
    rhs[1] = t[d_in];
    old[0] = S->s[r];
    old[1] = S->bq[r];
    if (!S->sym) {
        for (size_t c = 0; c < d_in; c++) {
            o1 += ws->phi[c] * ws->c1[c];
            ot += t[c];
        }
        M[0][2] = M[2][0] = o1;
        M[1][2] = M[2][1] = ws->c1[d_in];
        double s11 = 0;
        for (size_t c = 0; c < d_in; c++) s11 += ws->c1[c];
        M[2][2] = s11;
        rhs[2] = ot;
        old[2] = -S->s[r] * S->z[r];
    }
    double Mc[3][3], bc[3];
    memcpy(Mc, M, sizeof Mc);
    memcpy(bc, rhs, sizeof bc);
    int ok = solve_small(n, Mc, bc, th) && th[0] > 0 && isfinite(th[0]) && isfinite(th[1]) &&
             (n == 2 || isfinite(th[2]));
    if (ok) {
        /* f(theta) = theta^T M theta - 2 theta^T rhs (row loss up to a constant) */
        double fo = 0, fn = 0;
        for (int i = 0; i < n; i++) {
            fo -= 2 * old[i] * rhs[i];
            fn -= 2 * th[i] * rhs[i];
            for (int j = 0; j < n; j++) {
                fo += old[i] * M[i][j] * old[j];
                fn += th[i] * M[i][j] * th[j];
            }
        }
        if (fn < fo) {
            S->s[r] = th[0];
            S->bq[r] = th[1];
            if (!S->sym) S->z[r] = -th[2] / th[0];
        }
    }
    double a = S->s[r], b = S->bq[r], g = S->sym ? 0.0 : -S->s[r] * S->z[r];
    for (size_t j = 0; j < D; j++) ws->wc[j] = a * ws->Cu[j] + b * cb[j] + (S->sym ? 0 : g * ws->c1[j]);
}

/* Greedy +-1 code moves then an exact bias step for row r; g = E_r C - Pm_r. */
static void cd_row(aq_ls *S, size_t r, double *g)
{
    size_t d_in = S->d_in, D = S->D;
    uint8_t *u = S->u + r * d_in;
    double s = S->s[r], qmax = S->qmax;
    const double *C = S->C;
    for (size_t c = 0; c < d_in; c++) {
        double cc = C[c * D + c], best = 0, bd = 0;
        for (int d = -1; d <= 1; d += 2) {
            double nu = (double)u[c] + d;
            if (nu < 0 || nu > qmax) continue;
            double eps = -s * d, delta = eps * eps * cc + 2 * eps * g[c];
            if (delta < best) {
                best = delta;
                bd = d;
            }
        }
        if (bd == 0) continue;
        double eps = -s * bd;
        u[c] = (uint8_t)((double)u[c] + bd);
        const double *cr = C + c * D;
        for (size_t j = 0; j < D; j++) g[j] += eps * cr[j];
    }
    double cdd = C[d_in * D + d_in];
    if (cdd > 0) {
        double eps = -g[d_in] / cdd;
        S->bq[r] -= eps;
        const double *cr = C + d_in * D;
        for (size_t j = 0; j < D; j++) g[j] += eps * cr[j];
    }
}

/* Pair moves (u_i + di, u_j + dj), di, dj = +-1, with the exact change
 *   ei^2 C_ii + ej^2 C_jj + 2 ei ej C_ij + 2 ei g_i + 2 ej g_j   (e = -s d).
 * They escape the 1-move local minima where two correlated inputs must move
 * together. Partners of i are its PAIR_K most correlated inputs (by
 * |C_ij| / sqrt(C_ii C_jj), precomputed once per polish), so a sweep costs
 * O(d_in * PAIR_K) per row instead of O(d_in^2). For each i the best
 * improving partner is applied. Returns the number of moves. */
enum { PAIR_K = 32 };

static int pair_row(aq_ls *S, size_t r, double *g, const uint32_t *partners, size_t kp)
{
    size_t d_in = S->d_in, D = S->D;
    uint8_t *u = S->u + r * d_in;
    double s = S->s[r], qmax = S->qmax;
    const double *C = S->C;
    int moves = 0;
    for (size_t i = 0; i < d_in; i++) {
        double best = -1e-300, cii = C[i * D + i];
        size_t bj = 0;
        int bdi = 0, bdj = 0;
        const double *ci = C + i * D;
        for (int di = -1; di <= 1; di += 2) {
            double ui = (double)u[i] + di;
            if (ui < 0 || ui > qmax) continue;
            double ei = -s * di, base = ei * ei * cii + 2 * ei * g[i];
            for (size_t k = 0; k < kp; k++) {
                size_t j = partners[i * kp + k];
                double cij = ci[j], cjj = C[j * D + j];
                for (int dj = -1; dj <= 1; dj += 2) {
                    double uj = (double)u[j] + dj;
                    if (uj < 0 || uj > qmax) continue;
                    double ej = -s * dj;
                    double delta = base + ej * ej * cjj + 2 * ei * ej * cij + 2 * ej * g[j];
                    if (delta < best) {
                        best = delta;
                        bj = j;
                        bdi = di;
                        bdj = dj;
                    }
                }
            }
        }
        if (!bdi) continue;
        double ei = -s * bdi, ej = -s * bdj;
        u[i] = (uint8_t)((double)u[i] + bdi);
        u[bj] = (uint8_t)((double)u[bj] + bdj);
        const double *cj = C + bj * D;
        for (size_t k = 0; k < D; k++) g[k] += ei * ci[k] + ej * cj[k];
        moves++;
    }
    return moves;
}

/* partners [d_in * kp]: for each i the kp inputs j != i with the largest
 * normalised |C_ij| (ties by index), by insertion into a sorted list. */
static uint32_t *pair_partners(const aq_ls *S, size_t *kp_out)
{
    size_t d = S->d_in, D = S->D, kp = d - 1 < PAIR_K ? d - 1 : PAIR_K;
    *kp_out = kp;
    if (kp == 0) return NULL;
    uint32_t *p = malloc(d * kp * sizeof *p);
    double *v = malloc(kp * sizeof *v);
    if (!p || !v) {
        free(p);
        free(v);
        *kp_out = 0;
        return NULL;
    }
    for (size_t i = 0; i < d; i++) {
        size_t n = 0;
        double cii = S->C[i * D + i];
        for (size_t j = 0; j < d; j++) {
            if (j == i) continue;
            double den = sqrt(cii * S->C[j * D + j]);
            double a = den > 0 ? fabs(S->C[i * D + j]) / den : 0.0;
            if (n == kp && a <= v[kp - 1]) continue;
            size_t k = n < kp ? n++ : kp - 1;
            while (k > 0 && v[k - 1] < a) {
                v[k] = v[k - 1];
                p[i * kp + k] = p[i * kp + k - 1];
                k--;
            }
            v[k] = a;
            p[i * kp + k] = (uint32_t)j;
        }
    }
    free(v);
    return p;
}

/* CU = Phi C for all rows at once (one dgemm instead of d_out matrix-vector
 * loops), Phi_r = [u_r - off, 0]. Uses S->E (Phi) and S->EC (CU) as scratch:
 * callers re-evaluate the loss (aq_ls_loss recomputes both) after polishing. */
static const double *codes_times_C(aq_ls *S)
{
    size_t D = S->D, d_in = S->d_in, d_out = S->d_out;
    double off = S->sym ? S->zsym : 0.0;
    for (size_t r = 0; r < d_out; r++) {
        for (size_t c = 0; c < d_in; c++) S->E[r * D + c] = (double)S->u[r * d_in + c] - off;
        S->E[r * D + d_in] = 0;
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (f77_int)d_out, (f77_int)D, (f77_int)D, 1.0, S->E,
                (f77_int)D, S->C, (f77_int)D, 0.0, S->EC, (f77_int)D);
    return S->EC;
}

void aq_ls_polish(aq_ls *S, int passes)
{
    size_t D = S->D, d_in = S->d_in;
    double *buf = malloc(4 * D * sizeof *buf);
    if (!buf) return; /* polishing is optional: without memory the layer keeps its state */
    polish_ws ws = {buf, NULL, buf + D, buf + 2 * D};
    double *g = buf + 3 * D;
    memset(ws.c1, 0, D * sizeof(double));
    for (size_t c = 0; c < d_in; c++)
        for (size_t j = 0; j < D; j++) ws.c1[j] += S->C[c * D + j];
    size_t kp;
    uint32_t *partners = pair_partners(S, &kp);
    /* rows are independent: pass p of every row, then pass p + 1 */
    for (int p = 0; p < passes; p++) {
        const double *CU = codes_times_C(S);
        for (size_t r = 0; r < S->d_out; r++) {
            ws.Cu = CU + r * D;
            refit_row(S, r, &ws);
            /* g = E C - Pm = W~ C - Pm - W^ C = T_r - W^_r C */
            for (size_t j = 0; j < D; j++) g[j] = S->T[r * D + j] - ws.wc[j];
            cd_row(S, r, g);
            if (partners && pair_row(S, r, g, partners, kp)) cd_row(S, r, g);
        }
    }
    const double *CU = codes_times_C(S);
    for (size_t r = 0; r < S->d_out; r++) {
        ws.Cu = CU + r * D;
        refit_row(S, r, &ws);
    }
    free(partners);
    free(buf);
}
