/* test_fdcheck.c — the shared finite-difference check (fdcheck.h) on
 * functions whose derivative and rounding boundaries are known in closed form:
 *  - a probe whose stencil provably straddles a rounding boundary is detected
 *    (the code fingerprint changes), its step is halved until the stencil is
 *    inside one cell, and it then passes; without the fingerprint the same
 *    probe reports a failure (the jump, not the slope, is measured);
 *  - a parameter sitting exactly on a boundary straddles at every step, so
 *    the probe moves to the next candidate, which passes;
 *  - a wrong derivative fails, at order 2 and 4;
 *  - aq_fd_noise recovers a known noise level, and the noise term of the
 *    tolerance is the stated 5 sigma * stencil gain / h. */
#include <math.h>
#include <string.h>

#include "fdcheck.h"
#include "testutil.h"

/* f(x, y) = sin(x) + y^2 + J (rint(x / S) + rint(y / S)) + SIGMA noise(x, y):
 * smooth plus a jump of J at every half-integer multiple of S in either
 * variable, plus (when sigma > 0) a deterministic pseudo-random function of
 * the bits of x and y with mean 0 and standard deviation 1. */
#define S 0.1
#define J 1e-3
typedef struct toy {
    double x, y, sigma;
} toy;

/* ~N(0, 1) from the bits of (x, y): sum of 12 uniforms minus 6 (variance 1). */
static double noise_of(double x, double y)
{
    uint64_t st = aq_fd_hash(aq_fd_hash(AQ_FD_HASH0, &x, sizeof x), &y, sizeof y) | 1, r = st;
    double s = 0;
    for (int k = 0; k < 12; k++) s += aq_test_urand(&r);
    return s - 6;
}

static double toy_f(void *ctx)
{
    toy *t = ctx;
    double v = sin(t->x) + t->y * t->y + J * (rint(t->x / S) + rint(t->y / S));
    return t->sigma > 0 ? v + t->sigma * noise_of(t->x, t->y) : v;
}

static uint64_t toy_codes(void *ctx)
{
    toy *t = ctx;
    double c[2] = {rint(t->x / S), rint(t->y / S)};
    return aq_fd_hash(AQ_FD_HASH0, c, sizeof c);
}

/* The boundary at x = S/2; x0 = S/2 - 0.3 h, so the stencil's largest
 * offset m h / 2^k (m = 1 at order 2, 2 at order 4) crosses it while
 * m / 2^k > 0.3: order 2 straddles at h and h/2 and is inside at h/4 (2
 * halvings); order 4 straddles down to h/4 and is inside at h/8 (3). The
 * lowest point, x0 - 2h, stays in x0's cell. */
static void test_straddle_moves(int order)
{
    const double h = 1e-3;
    toy t = {S / 2 - 0.3 * h, 0.03, 0};
    aq_fd_fun with = {toy_f, toy_codes, &t}, without = {toy_f, NULL, &t};
    double g = cos(t.x), x0 = t.x;
    /* provably straddles: x0 + h is across, x0 - 2h is not */
    CHECK(rint((x0 + h) / S) != rint(x0 / S) && rint((x0 - 2 * h) / S) == rint(x0 / S));
    /* rel 1e-6: order-2 truncation h^2/6 |sin'''| <= 1.7e-7 at h = 1e-3, order 4 far less; abs 1e-9:
     * double rounding of f (~1e-16) divided by h/8 */
    aq_fd_opts o = {order, h, 6, 0, 1e-6, 1e-9};
    aq_fd_probe pr;
    /* without the fingerprint the jump J / 2h = 0.5 is read as slope: a false failure */
    CHECK(aq_fd_check(&without, &t.x, g, &o, &pr) == AQ_FD_FAIL);
    CHECK_MSG(fabs(pr.fd - g) > 0.1, "order %d: the straddling quotient %g should show the jump", order, pr.fd);
    aq_fd_print("boundary ignored", &pr);
    /* with it: detected, h halved until the stencil is inside the cell, then it passes */
    CHECK(aq_fd_check(&with, &t.x, g, &o, &pr) == AQ_FD_PASS);
    aq_fd_print("boundary detected", &pr);
    CHECK_MSG(pr.halvings == (order == 4 ? 3 : 2), "order %d: halved %d times", order, pr.halvings);
    CHECK(pr.moved == 0 && pr.h == h / (1 << pr.halvings));
    CHECK(t.x == x0); /* restored exactly */
}

/* x exactly on a boundary: x + h has another code for every h > 0, so no
 * halving helps and the probe moves on to y. */
static void test_on_boundary_moves(void)
{
    toy t = {S / 2, 0.03, 0};
    CHECK(rint(t.x / S) == 0 && rint((t.x + 1e-12) / S) == 1);
    aq_fd_fun fn = {toy_f, toy_codes, &t};
    double *cand[2] = {&t.x, &t.y}, g[2] = {cos(t.x), 2 * t.y};
    /* tolerances as in test_straddle_moves */
    aq_fd_opts o = {2, 1e-3, 6, 0, 1e-6, 1e-9};
    aq_fd_probe pr;
    CHECK(aq_fd_check(&fn, &t.x, g[0], &o, &pr) == AQ_FD_STRADDLE && pr.halvings == 6);
    CHECK(aq_fd_check_near(&fn, cand, g, 2, &o, &pr) == AQ_FD_PASS);
    aq_fd_print("x on a boundary, moved to y", &pr);
    CHECK(pr.index == 1 && pr.moved == 1 && pr.halvings == 0);
    /* only straddling candidates: reported as such, not as a failure */
    double *only_x[1] = {&t.x};
    CHECK(aq_fd_check_near(&fn, only_x, g, 1, &o, &pr) == AQ_FD_STRADDLE);
}

/* A wrong derivative fails; the right one passes. */
static void test_wrong_fails(void)
{
    toy t = {0.31, 0.012, 0};
    aq_fd_fun fn = {toy_f, toy_codes, &t};
    for (int order = 2; order <= 4; order += 2) {
        /* rel 1e-6 as above: truncation at h = 1e-4 is h^2/6 = 1.7e-9 at order 2 */
        aq_fd_opts o = {order, 1e-4, 6, 0, 1e-6, 1e-9};
        CHECK(aq_fd_check(&fn, &t.x, cos(t.x), &o, NULL) == AQ_FD_PASS);
        CHECK(aq_fd_check(&fn, &t.x, cos(t.x) * (1 + 1e-4), &o, NULL) == AQ_FD_FAIL);
        CHECK(aq_fd_check(&fn, &t.y, 2 * t.y, &o, NULL) == AQ_FD_PASS);
        CHECK(aq_fd_check(&fn, &t.y, 2 * t.y + 1e-5, &o, NULL) == AQ_FD_FAIL);
    }
}

/* Known noise sigma: the pooled fourth-difference estimate recovers it, and
 * the check's noise term is 5 sigma * gain / h. */
static void test_noise(void)
{
    const double sigma = 1e-7;
    toy t = {0.31, 0.012, sigma};
    aq_fd_fun fn = {toy_f, toy_codes, &t};
    /* 200 grids at delta 1e-4 (delta^4 times the fourth derivative of sin is
     * ~1e-16, far below sigma), in x and y alternately, from 100 points */
    double *p[2] = {&t.x, &t.y}, ss = 0;
    for (int k = 0; k < 100; k++) {
        int used = 0;
        t.x = 0.31 + 1e-5 * k;
        t.y = 0.012 + 1e-5 * k;
        double e = aq_fd_noise(&fn, p, 2, 1e-4, &used);
        CHECK(used == 2);
        ss += e * e;
    }
    double est = sqrt(ss / 100);
    /* 200 fourth differences: relative spread of the estimate ~1/sqrt(400) = 5%; 20% is four spreads */
    CHECK_MSG(fabs(est / sigma - 1) < 0.2, "noise estimate %g for sigma %g", est, sigma);
    printf("noise estimate %.4g for sigma %.4g\n", est, sigma);
    t.x = 0.31;
    t.sigma = 0;
    aq_fd_probe pr;
    aq_fd_opts o2 = {2, 1e-3, 0, sigma, 0, 0}, o4 = {4, 1e-3, 0, sigma, 0, 0};
    aq_fd_check(&fn, &t.x, cos(t.x), &o2, &pr);
    CHECK_CLOSE(pr.noise_tol, AQ_FD_NOISE_Z * sigma * sqrt(0.5) / 1e-3, 1e-12);
    aq_fd_check(&fn, &t.x, cos(t.x), &o4, &pr);
    CHECK_CLOSE(pr.noise_tol, AQ_FD_NOISE_Z * sigma * sqrt(130.0) / 12 / 1e-3, 1e-12);
    /* with the noise on, the right derivative passes at a step where noise / h matters */
    t.sigma = sigma;
    o4.rel = 1e-6; /* the order-4 truncation h^4/30 = 3e-14 is far below it */
    int pass = 0;
    for (int k = 0; k < 50; k++) {
        t.x = 0.31 + 6e-4 * k; /* stencils stay in the cell 0.25 < x < 0.35 */
        pass += aq_fd_check(&fn, &t.x, cos(t.x), &o4, NULL) == AQ_FD_PASS;
    }
    CHECK_MSG(pass == 50, "%d of 50 noisy probes passed", pass);
}

int main(void)
{
    test_straddle_moves(2);
    test_straddle_moves(4);
    test_on_boundary_moves();
    test_wrong_fails();
    test_noise();
    AQ_TEST_END();
}
