/* svg.c — the two plots of the allocation report (report.h) as plain SVG
 * text: loss vs average bits of a sweep with the chosen point marked, and
 * the weight bits of each layer of one solution (labelled bars for small
 * models, a blocks x linear types heat map for large ones). No plotting
 * dependency. Axis ticks sit at round values (svg.h) and every legend is
 * drawn in a band between the title and the plot frame, never over data. */
#include "svg.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

enum { W = 720, MR = 30, TOP = 36, MB = 56, ROW_H = 20 };

static void xml_str(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            /* XML 1.0 forbids most control characters: a hostile layer name
             * must not make the file unreadable */
            fputc((unsigned char)*s < 0x20 ? '?' : *s, f);
        }
    }
}

/* Width of text at a font size in px, for sans-serif (about 0.6 em per
 * character: generous for digits and lower case, so layouts do not collide). */
static double text_w(const char *s, double size) { return (double)strlen(s) * size * 0.6; }

static void header(FILE *f, int w, int h, const char *title)
{
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
               "<text x=\"%d\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">",
            w, h, w, h, w / 2);
    xml_str(f, title);
    fputs("</text>\n", f);
}

/* ---- ticks -------------------------------------------------------------- */

void aq_svg_ticks_choose(double lo, double hi, int max_intervals, int integer, aq_svg_ticks *t)
{
    if (!isfinite(lo) || !isfinite(hi)) lo = 0, hi = 1;
    if (lo > hi) {
        double s = lo;
        lo = hi, hi = s;
    }
    if (hi - lo < 1e-12 * fmax(1.0, fabs(hi))) lo -= 0.5, hi += 0.5;
    if (max_intervals < 1) max_intervals = 1;
    static const double mant[] = {1, 2, 2.5, 5};
    /* start one decade below the average step: the loop then only grows */
    int e = (int)floor(log10((hi - lo) / max_intervals)) - 1;
    for (;; e++) {
        for (int k = 0; k < 4; k++) {
            double step = mant[k] * pow(10.0, e);
            if (integer && (step < 1 || (mant[k] == 2.5 && e == 0))) continue;
            /* a data end within 1e-9 of a step multiple counts as on it */
            double a = floor(lo / step + 1e-9), b = ceil(hi / step - 1e-9);
            if (b - a <= max_intervals) {
                t->step = step;
                t->i_lo = (long)a;
                t->n = (int)(b - a);
                t->lo = a * step;
                t->hi = b * step;
                int d = -e + (mant[k] == 2.5 ? 1 : 0);
                t->decimals = d > 0 ? d : 0;
                return;
            }
        }
    }
}

double aq_svg_tick_value(const aq_svg_ticks *t, int i) { return (double)(t->i_lo + i) * t->step; }

void aq_svg_tick_label(const aq_svg_ticks *t, int i, char *buf, size_t n)
{
    double v = aq_svg_tick_value(t, i);
    if (fabs(v) < 0.5 * t->step) v = 0; /* no "-0" */
    if (t->decimals > 4 || fmax(fabs(t->lo), fabs(t->hi)) >= 1e7)
        snprintf(buf, n, "%.3g", v);
    else
        snprintf(buf, n, "%.*f", t->decimals, v);
}

/* Frame, grid lines and tick labels of a plot area; xt may be NULL (no x
 * ticks: categorical axis). Values map linearly from the ticks' lo..hi. */
typedef struct area {
    double x, y, w, h;
} area;

static void axes(FILE *f, area a, const aq_svg_ticks *xt, const aq_svg_ticks *yt, const char *xl, const char *yl)
{
    fprintf(f, "<rect id=\"plot-area\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
               "stroke=\"black\"/>\n",
            a.x, a.y, a.w, a.h);
    char lab[48];
    for (int i = 0; xt && i <= xt->n; i++) {
        double fx = a.x + a.w * i / xt->n;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", fx, a.y, fx, a.y + a.h);
        aq_svg_tick_label(xt, i, lab, sizeof lab);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", fx, a.y + a.h + 16, lab);
    }
    for (int i = 0; yt && i <= yt->n; i++) {
        double fy = a.y + a.h - a.h * i / yt->n;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", a.x, fy, a.x + a.w, fy);
        aq_svg_tick_label(yt, i, lab, sizeof lab);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", a.x - 6, fy + 4, lab);
    }
    if (xl && *xl)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", a.x + a.w / 2, a.y + a.h + 38, xl);
    if (yl && *yl)
        fprintf(f, "<text x=\"16\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 16 %.1f)\">%s</text>\n",
                a.y + a.h / 2, a.y + a.h / 2, yl);
}

/* ---- legend (a band above the plot area) -------------------------------- */

enum { LG_DOT, LG_RING, LG_LINE, LG_SWATCH, LG_DASH, LG_MARK };
typedef struct lg_entry {
    int kind;
    const char *colour;
    char text[128];
} lg_entry;

static double lg_width(const lg_entry *e) { return 22 + text_w(e->text, 12) + 18; }

/* Rows needed for entries laid out from x0 to x1 (wrapping). */
static int lg_rows(const lg_entry *e, int n, double x0, double x1)
{
    int rows = n ? 1 : 0;
    double x = x0;
    for (int i = 0; i < n; i++) {
        if (x > x0 && x + lg_width(&e[i]) > x1) rows++, x = x0;
        x += lg_width(&e[i]);
    }
    return rows;
}

/* Draw the legend with its box (id legend-box) from (x0, y0); returns the
 * band height used (0 for no entry). */
static double lg_draw(FILE *f, const lg_entry *e, int n, double x0, double x1, double y0)
{
    if (!n) return 0;
    int rows = lg_rows(e, n, x0, x1);
    double wmax = 0, x = x0;
    for (int i = 0; i < n; i++) {
        if (x > x0 && x + lg_width(&e[i]) > x1) x = x0;
        x += lg_width(&e[i]);
        wmax = fmax(wmax, x - x0);
    }
    double h = rows * ROW_H + 6;
    fprintf(f, "<g id=\"legend\">\n<rect id=\"legend-box\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
               "fill=\"white\" stroke=\"#bbb\"/>\n",
            x0 - 6, y0, wmax + 6, h);
    x = x0;
    double y = y0 + 3 + ROW_H / 2.0;
    for (int i = 0; i < n; i++) {
        if (x > x0 && x + lg_width(&e[i]) > x1) x = x0, y += ROW_H;
        double cx = x + 9;
        switch (e[i].kind) {
        case LG_DOT: fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n", cx, y, e[i].colour); break;
        case LG_RING:
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"none\" stroke=\"%s\" stroke-width=\"2.5\"/>\n", cx,
                    y, e[i].colour);
            break;
        case LG_LINE:
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>"
                       "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n",
                    x, y, x + 18, y, e[i].colour, cx, y, e[i].colour);
            break;
        case LG_DASH:
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-dasharray=\"5,4\"/>\n",
                    x, y, x + 18, y, e[i].colour);
            break;
        case LG_MARK:
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"#ccc\"/>"
                       "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"black\" stroke=\"white\" stroke-width=\"0.8\"/>\n",
                    cx - 6, y - 6, cx, y);
            break;
        default:
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\"/>\n", cx - 6, y - 6, e[i].colour);
        }
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">", x + 22, y + 4);
        xml_str(f, e[i].text);
        fputs("</text>\n", f);
        x += lg_width(&e[i]);
    }
    fputs("</g>\n", f);
    return h;
}

/* ---- loss vs bits ------------------------------------------------------- */

/* Data -> pixel coordinates of an area whose axes span the ticks' lo..hi. */
static double px(const area *a, const aq_svg_ticks *t, double v) { return a->x + a->w * (v - t->lo) / (t->hi - t->lo); }
static double py(const area *a, const aq_svg_ticks *t, double v)
{
    return a->y + a->h - a->h * (v - t->lo) / (t->hi - t->lo);
}

void aq_alloc_write_sweep_svg(FILE *f, const aq_alloc_sweep *s, const aq_alloc_solution *chosen)
{
    double x0 = INFINITY, x1 = -INFINITY, y1 = 0;
    int dominated = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->pt[i].feasible) {
            x0 = fmin(x0, s->pt[i].avg_bits), x1 = fmax(x1, s->pt[i].avg_bits), y1 = fmax(y1, s->pt[i].loss);
            dominated |= !s->pt[i].pareto;
        }
    if (chosen) x0 = fmin(x0, chosen->avg_bits), x1 = fmax(x1, chosen->avg_bits), y1 = fmax(y1, chosen->loss);
    const char *title = "Loss vs average bits per weight (optimal allocation per budget)";
    if (!(x1 >= x0)) {
        header(f, W, 200, title);
        fprintf(f, "<text x=\"%d\" y=\"100\" text-anchor=\"middle\">no feasible budget</text>\n</svg>\n", W / 2);
        return;
    }
    lg_entry lg[3];
    int nl = 0;
    lg[nl++] = (lg_entry){LG_LINE, "steelblue", "Pareto-optimal budgets"};
    if (dominated) lg[nl++] = (lg_entry){LG_DOT, "#aaa", "dominated"};
    if (chosen) {
        lg[nl] = (lg_entry){LG_RING, "red", ""};
        snprintf(lg[nl++].text, sizeof lg[0].text, "chosen: %.4f bits/weight, loss %.4g", chosen->avg_bits,
                 chosen->loss);
    }
    area a = {80, 0, W - 80 - MR, 340};
    int rows = lg_rows(lg, nl, a.x, W - MR);
    a.y = TOP + rows * ROW_H + 6 + 12;
    int h = (int)(a.y + a.h + MB);
    header(f, W, h, title);
    lg_draw(f, lg, nl, a.x, W - MR, TOP);
    /* a margin of 3% of the span so end points do not sit on the frame */
    double pad = x1 > x0 ? 0.03 * (x1 - x0) : 0.5;
    aq_svg_ticks xt, yt;
    aq_svg_ticks_choose(x0 - pad, x1 + pad, (int)(a.w / AQ_SVG_TICK_PX), 0, &xt);
    aq_svg_ticks_choose(0, y1 > 0 ? y1 * 1.03 : 1, (int)(a.h / AQ_SVG_TICK_PX), 0, &yt);
    axes(f, a, &xt, &yt, "average bits per weight", "loss");
    fputs("<g id=\"data\">\n<polyline fill=\"none\" stroke=\"steelblue\" stroke-width=\"2\" points=\"", f);
    for (size_t i = 0; i < s->n; i++)
        if (s->pt[i].pareto) fprintf(f, "%.1f,%.1f ", px(&a, &xt, s->pt[i].avg_bits), py(&a, &yt, s->pt[i].loss));
    fputs("\"/>\n", f);
    for (size_t i = 0; i < s->n; i++) {
        const aq_alloc_point *p = &s->pt[i];
        if (!p->feasible) continue;
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>budget %.4g: %.4f bits/weight, loss %.6g</title></circle>\n",
                px(&a, &xt, p->avg_bits), py(&a, &yt, p->loss), p->pareto ? "steelblue" : "#aaa", p->budget, p->avg_bits, p->loss);
    }
    if (chosen)
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"7\" fill=\"none\" stroke=\"red\" stroke-width=\"2.5\"/>\n",
                px(&a, &xt, chosen->avg_bits), py(&a, &yt, chosen->loss));
    fputs("</g>\n</svg>\n", f);
}

/* ---- bits per layer: bars ------------------------------------------------ */

static const char *act_colour(int a)
{
    return a >= 16 ? "steelblue" : a >= 8 ? "darkorange" : a >= 4 ? "crimson" : "gray";
}

static double row_bits(const aq_alloc_row *r) { return (double)aq_alloc_row_size(r) / (double)r->params; }

static void write_bars(FILE *f, const aq_alloc_table *t, const aq_alloc_solution *s)
{
    size_t n = s->n_layers;
    int labels = n <= AQ_SVG_BARS_MAX;
    size_t maxlen = 0;
    int acts[3] = {0, 0, 0}; /* a16, a8, a<=4 present */
    double y1 = 0;
    for (size_t l = 0; l < n; l++) {
        const aq_alloc_row *r = &t->rows[s->row[l]];
        maxlen = strlen(r->layer) > maxlen ? strlen(r->layer) : maxlen;
        acts[r->a_bits >= 16 ? 0 : r->a_bits >= 8 ? 1 : 2] = 1;
        y1 = fmax(y1, row_bits(r));
    }
    /* labels at font 10 rotated by 60 degrees: sin 60 x width below the
     * axis, cos 60 x width to the left of the first bar */
    double lab_w = labels ? (double)maxlen * 10 * 0.55 : 0;
    double lab_h = labels ? lab_w * 0.87 + 14 : 0;
    area a = {fmax(80, lab_w * 0.5 + 10), 0, 0, 300};
    int w = (int)(a.x + 14.0 * (double)n + MR);
    w = w < W ? W : w > 1800 ? 1800 : w;
    a.w = w - a.x - MR;
    lg_entry lg[5];
    int nl = 0;
    static const int act_bits[] = {16, 8, 4};
    static const char *const act_name[] = {"a16 (activations FP)", "a8", "a<=4"};
    for (int i = 0; i < 3; i++)
        if (acts[i]) {
            lg[nl] = (lg_entry){LG_SWATCH, act_colour(act_bits[i]), ""};
            snprintf(lg[nl++].text, sizeof lg[0].text, "%s", act_name[i]);
        }
    lg[nl] = (lg_entry){LG_DASH, "black", ""};
    snprintf(lg[nl++].text, sizeof lg[0].text, "average %.4f bits/weight", s->avg_bits);
    int rows = lg_rows(lg, nl, a.x, w - MR);
    a.y = TOP + rows * ROW_H + 6 + 12;
    int h = (int)(a.y + a.h + (labels ? lab_h + 10 : MB));
    char title[160];
    snprintf(title, sizeof title, "Bits per weight by layer (%zu layers, average %.4f, loss %.4g)", n, s->avg_bits, s->loss);
    header(f, w, h, title);
    lg_draw(f, lg, nl, a.x, w - MR, TOP);
    aq_svg_ticks yt;
    aq_svg_ticks_choose(0, y1 > 0 ? y1 : 8, (int)(a.h / AQ_SVG_TICK_PX), 0, &yt);
    axes(f, a, NULL, &yt, "", "bits per weight");
    if (!labels)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">layer (table order)</text>\n", a.x + a.w / 2,
                a.y + a.h + 24);
    double bw = a.w / (double)(n ? n : 1);
    fputs("<g id=\"data\">\n", f);
    for (size_t l = 0; l < n; l++) {
        const aq_alloc_row *r = &t->rows[s->row[l]];
        double v = row_bits(r), bh = a.h * v / yt.hi;
        fprintf(f, "<rect class=\"bar\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"><title>",
                a.x + bw * (double)l, a.y + a.h - bh, bw > 2 ? bw * 0.85 : bw, bh, act_colour(r->a_bits));
        xml_str(f, r->layer);
        fputs(": ", f);
        xml_str(f, r->option);
        fprintf(f, ", %.3f bits/weight</title></rect>\n", v);
    }
    double ay = a.y + a.h - a.h * s->avg_bits / yt.hi;
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\" stroke-dasharray=\"5,4\"/>\n</g>\n",
            a.x, ay, a.x + a.w, ay);
    for (size_t l = 0; labels && l < n; l++) {
        const aq_alloc_row *r = &t->rows[s->row[l]];
        double x = a.x + bw * ((double)l + 0.5), y = a.y + a.h + 10;
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\" transform=\"rotate(-60 %.1f %.1f)\">",
                x, y, x, y);
        xml_str(f, r->layer);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
}

/* ---- bits per layer: heat map of blocks x linear types ------------------- */

int aq_svg_grid_build(const char *const *names, size_t n, aq_svg_grid *g)
{
    memset(g, 0, sizeof *g);
    if (!n || n > (size_t)INT32_MAX) return -1;
    g->block = malloc(n * sizeof *g->block);
    g->type = malloc(n * sizeof *g->type);
    g->type_name = calloc(64, sizeof *g->type_name);
    if (!g->block || !g->type || !g->type_name) goto fail;
    size_t plen = 0;
    for (size_t l = 0; l < n; l++) {
        /* PREFIX '.' DIGITS '.' TYPE, at the last all-digit component */
        const char *s = names[l], *num = NULL;
        for (const char *p = s; *p; p++)
            if (*p == '.' && p[1] >= '0' && p[1] <= '9') {
                const char *q = p + 1;
                while (*q >= '0' && *q <= '9') q++;
                if (*q == '.' && q[1] && q - p <= 7) num = p + 1;
            }
        if (!num) goto fail;
        size_t pl = (size_t)(num - 1 - s);
        if (l == 0) plen = pl;
        if (pl != plen || strncmp(s, names[0], pl)) goto fail; /* one prefix for all */
        char *end;
        long b = strtol(num, &end, 10);
        const char *type = end + 1;
        int k = 0;
        while (k < g->n_types && strcmp(g->type_name[k], type)) k++;
        if (k == g->n_types) {
            if (k == 64 || !(g->type_name[k] = strdup(type))) goto fail;
            g->n_types++;
        }
        g->block[l] = (int)b, g->type[l] = k;
        if (b + 1 > g->n_blocks) g->n_blocks = (int)b + 1;
    }
    /* one layer per cell */
    unsigned char *seen = calloc((size_t)g->n_blocks * (size_t)g->n_types, 1);
    if (!seen) goto fail;
    for (size_t l = 0; l < n; l++) {
        size_t c = (size_t)g->block[l] * (size_t)g->n_types + (size_t)g->type[l];
        if (seen[c]++) {
            free(seen);
            goto fail;
        }
    }
    free(seen);
    return 0;
fail:
    aq_svg_grid_free(g);
    return -1;
}

void aq_svg_grid_free(aq_svg_grid *g)
{
    if (g->type_name)
        for (int k = 0; k < 64; k++) free(g->type_name[k]);
    free(g->type_name);
    free(g->block);
    free(g->type);
    memset(g, 0, sizeof *g);
}

/* Weight bits -> colour (viridis steps, dark = few bits). */
static const char *wbits_colour(int b)
{
    static const char *const c[] = {"#440154", "#3b528b", "#21918c", "#2fb47c", "#5ec962", "#addc30", "#fde725"};
    return b <= 2 ? c[0] : b <= 8 ? c[b - 2] : "#fff3b0";
}

static void write_heatmap(FILE *f, const aq_alloc_table *t, const aq_alloc_solution *s, const aq_svg_grid *g)
{
    size_t n = s->n_layers;
    double maxlab = 0;
    for (int k = 0; k < g->n_types; k++) maxlab = fmax(maxlab, text_w(g->type_name[k], 11));
    double cw = (1600.0 - (maxlab + 20) - MR) / g->n_blocks;
    cw = cw < 2 ? 2 : cw > 18 ? 18 : cw;
    double rh = 18;
    area a = {fmax(60, maxlab + 20), 0, cw * g->n_blocks, rh * g->n_types};
    int w = (int)ceil(a.x + a.w + MR);
    w = w < W ? W : w;
    int bits_seen[17] = {0}, actq = 0;
    for (size_t l = 0; l < n; l++) {
        const aq_alloc_row *r = &t->rows[s->row[l]];
        bits_seen[r->w_bits < 16 ? r->w_bits : 16] = 1;
        actq |= r->a_bits < 16;
    }
    lg_entry lg[20];
    int nl = 0;
    for (int b = 0; b <= 16; b++)
        if (bits_seen[b]) {
            lg[nl] = (lg_entry){LG_SWATCH, wbits_colour(b), ""};
            snprintf(lg[nl++].text, sizeof lg[0].text, "w%d", b);
        }
    if (actq) lg[nl++] = (lg_entry){LG_MARK, "black", "activations quantized (a8 or fewer)"};
    if (n < (size_t)g->n_blocks * (size_t)g->n_types) lg[nl++] = (lg_entry){LG_SWATCH, "#eee", "no such layer"};
    int rows = lg_rows(lg, nl, a.x, w - MR);
    a.y = TOP + rows * ROW_H + 6 + 12;
    int h = (int)(a.y + a.h + MB);
    char title[200];
    snprintf(title, sizeof title, "Weight bits by block and linear type (%zu layers, average %.4f bits/weight, loss %.4g)",
             n, s->avg_bits, s->loss);
    header(f, w, h, title);
    lg_draw(f, lg, nl, a.x, w - MR, TOP);
    fprintf(f, "<rect id=\"plot-area\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#eee\" stroke=\"black\"/>\n",
            a.x, a.y, a.w, a.h);
    for (int k = 0; k < g->n_types; k++) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">", a.x - 6, a.y + rh * (k + 0.5) + 4);
        xml_str(f, g->type_name[k]);
        fputs("</text>\n", f);
    }
    /* block ticks at round indices, centred on their column */
    aq_svg_ticks xt;
    aq_svg_ticks_choose(0, g->n_blocks - 1, (int)(a.w / AQ_SVG_TICK_PX), 1, &xt);
    char lab[48];
    for (int i = 0; i <= xt.n; i++) {
        double v = aq_svg_tick_value(&xt, i);
        if (v < 0 || v > g->n_blocks - 1) continue;
        double x = a.x + cw * (v + 0.5);
        aq_svg_tick_label(&xt, i, lab, sizeof lab);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x, a.y + a.h, x,
                a.y + a.h + 4);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", x, a.y + a.h + 17, lab);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">block</text>\n", a.x + a.w / 2, a.y + a.h + 38);
    fputs("<g id=\"data\">\n", f);
    for (size_t l = 0; l < n; l++) {
        const aq_alloc_row *r = &t->rows[s->row[l]];
        double x = a.x + cw * g->block[l], y = a.y + rh * g->type[l];
        fprintf(f, "<rect class=\"cell\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"><title>", x, y,
                cw, rh, wbits_colour(r->w_bits));
        xml_str(f, r->layer);
        fputs(": ", f);
        xml_str(f, r->option);
        fprintf(f, ", %.3f bits/weight</title></rect>\n", row_bits(r));
        if (r->a_bits < 16)
            fprintf(f, "<circle class=\"actq\" cx=\"%.2f\" cy=\"%.2f\" r=\"%.2f\" fill=\"black\" stroke=\"white\" "
                       "stroke-width=\"0.8\"/>\n",
                    x + cw / 2, y + rh / 2, fmin(cw, rh) / 4 < 1 ? 1 : fmin(cw, rh) / 4);
    }
    fputs("</g>\n</svg>\n", f);
}

void aq_alloc_write_bits_svg(FILE *f, const aq_alloc_table *t, const aq_alloc_solution *s)
{
    aq_svg_grid g;
    if (s->n_layers > AQ_SVG_BARS_MAX && aq_svg_grid_build((const char *const *)s->layer, s->n_layers, &g) == 0) {
        write_heatmap(f, t, s, &g);
        aq_svg_grid_free(&g);
    } else {
        write_bars(f, t, s);
    }
}
