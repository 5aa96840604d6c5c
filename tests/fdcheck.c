/* fdcheck.c — the finite-difference gradient check of the C tests
 * (fdcheck.h): stencils that stay inside one rounding cell, and a tolerance
 * that accounts for the measured noise of the function evaluated. */
#include "fdcheck.h"

#include <math.h>
#include <stdio.h>

uint64_t aq_fd_hash(uint64_t h, const void *data, size_t n)
{
    const unsigned char *b = data;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Stencil offsets (in units of h) and weights (of f, before dividing by h). */
static const double off2[2] = {-1, 1}, w2[2] = {-0.5, 0.5};
static const double off4[4] = {-2, -1, 1, 2}, w4[4] = {1.0 / 12, -8.0 / 12, 8.0 / 12, -1.0 / 12};

/* The quotient at step h, or NAN with *straddle = 1 if a stencil point's
 * codes differ from base. */
static double quotient(const aq_fd_fun *fn, double *p, double x0, double h, int order, uint64_t base, int *straddle)
{
    const double *off = order == 4 ? off4 : off2, *w = order == 4 ? w4 : w2;
    int m = order == 4 ? 4 : 2;
    double s = 0;
    *straddle = 0;
    for (int k = 0; k < m; k++) {
        *p = x0 + off[k] * h;
        if (fn->codes && fn->codes(fn->ctx) != base) {
            *straddle = 1;
            break;
        }
        s += w[k] * fn->f(fn->ctx);
    }
    *p = x0;
    return *straddle ? NAN : s / h;
}

aq_fd_verdict aq_fd_check(const aq_fd_fun *fn, double *p, double g, const aq_fd_opts *o, aq_fd_probe *out)
{
    aq_fd_probe pr = {AQ_FD_STRADDLE, 0, 0, 0, o->h, NAN, g, 0, 0};
    int order = o->order == 4 ? 4 : 2;
    /* noise gain of the stencil: sqrt(sum of squared weights) */
    double gain = order == 4 ? sqrt(130.0) / 12 : sqrt(0.5);
    double x0 = *p;
    uint64_t base = fn->codes ? fn->codes(fn->ctx) : 0;
    double h = o->h;
    for (int k = 0; k <= o->max_halvings; k++, h *= 0.5) {
        int straddle;
        double fd = quotient(fn, p, x0, h, order, base, &straddle);
        if (straddle) continue;
        pr.halvings = k;
        pr.h = h;
        pr.fd = fd;
        pr.noise_tol = AQ_FD_NOISE_Z * o->noise * gain / h;
        pr.tol = o->rel * fabs(fd) + o->abs + pr.noise_tol;
        pr.verdict = fabs(g - fd) <= pr.tol ? AQ_FD_PASS : AQ_FD_FAIL;
        break;
    }
    if (pr.verdict == AQ_FD_STRADDLE) pr.halvings = o->max_halvings;
    if (out) *out = pr;
    return pr.verdict;
}

aq_fd_verdict aq_fd_check_near(const aq_fd_fun *fn, double *const *p, const double *g, int n, const aq_fd_opts *o,
                               aq_fd_probe *out)
{
    aq_fd_probe pr = {AQ_FD_STRADDLE, 0, 0, 0, o->h, NAN, NAN, 0, 0};
    for (int k = 0; k < n; k++) {
        aq_fd_check(fn, p[k], g[k], o, &pr);
        pr.index = k;
        pr.moved = k;
        if (pr.verdict != AQ_FD_STRADDLE) break;
    }
    if (out) *out = pr;
    return pr.verdict;
}

double aq_fd_noise(const aq_fd_fun *fn, double *const *p, int n, double delta, int *n_used)
{
    static const double c[5] = {1, -4, 6, -4, 1};
    double ss = 0;
    int used = 0;
    for (int i = 0; i < n; i++) {
        double x0 = *p[i], d4 = 0;
        uint64_t base = fn->codes ? fn->codes(fn->ctx) : 0;
        int ok = 1;
        for (int k = 0; k < 5 && ok; k++) {
            *p[i] = x0 + (k - 2) * delta;
            if (fn->codes && fn->codes(fn->ctx) != base)
                ok = 0;
            else
                d4 += c[k] * fn->f(fn->ctx);
        }
        *p[i] = x0;
        if (!ok) continue;
        ss += d4 * d4;
        used++;
    }
    if (n_used) *n_used = used;
    return used ? sqrt(ss / (70.0 * used)) : 0;
}

void aq_fd_print(const char *what, const aq_fd_probe *pr)
{
    static const char *v[3] = {"pass", "FAIL", "straddles a rounding boundary at every step"};
    printf("  %s: %s: gradient %.8g, finite difference %.8g (h %.3g, tolerance %.3g of which noise %.3g; "
           "h halved %d times, moved %d candidates)\n",
           what, v[pr->verdict], pr->g, pr->fd, pr->h, pr->tol, pr->noise_tol, pr->halvings, pr->moved);
}
