/* svg.c — the two plots of the allocation report (report.h) as plain SVG
 * text: loss vs average bits of a sweep with the chosen point marked, and
 * bits per weight of each layer of one solution. No plotting dependency. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

enum { W = 720, H = 440, ML = 80, MR = 30, MT = 40, MB = 60 };

static void xml_str(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

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

/* Axes with 5 ticks each; labels xl/yl. */
static void axes(FILE *f, int w, int h, double x0, double x1, double y0, double y1, const char *xl, const char *yl)
{
    int pw = w - ML - MR, ph = h - MT - MB;
    fprintf(f, "<g stroke=\"black\" fill=\"none\"><rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/></g>\n", ML, MT, pw, ph);
    for (int i = 0; i <= 5; i++) {
        double fx = ML + pw * i / 5.0, fy = MT + ph - ph * i / 5.0;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n", fx, MT, fx, MT + ph);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", ML, fy, ML + pw, fy);
        if (x1 > x0)
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.4g</text>\n", fx, MT + ph + 16,
                    x0 + (x1 - x0) * i / 5.0);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n", ML - 6, fy + 4, y0 + (y1 - y0) * i / 5.0);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", ML + pw / 2, h - 12, xl);
    fprintf(f, "<text x=\"16\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 16 %d)\">%s</text>\n", MT + ph / 2,
            MT + ph / 2, yl);
}

void aq_alloc_write_sweep_svg(FILE *f, const aq_alloc_sweep *s, const aq_alloc_solution *chosen)
{
    double x0 = INFINITY, x1 = -INFINITY, y1 = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->pt[i].feasible) {
            x0 = fmin(x0, s->pt[i].avg_bits), x1 = fmax(x1, s->pt[i].avg_bits), y1 = fmax(y1, s->pt[i].loss);
        }
    if (chosen) x0 = fmin(x0, chosen->avg_bits), x1 = fmax(x1, chosen->avg_bits), y1 = fmax(y1, chosen->loss);
    header(f, W, H, "Loss vs average bits per weight (optimal allocation per budget)");
    if (!(x1 >= x0)) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">no feasible budget</text>\n</svg>\n", W / 2, H / 2);
        return;
    }
    double pad = x1 > x0 ? 0.05 * (x1 - x0) : 0.5;
    x0 -= pad, x1 += pad;
    if (!(y1 > 0)) y1 = 1;
    y1 *= 1.05;
    axes(f, W, H, x0, x1, 0, y1, "average bits per weight", "loss");
    int pw = W - ML - MR, ph = H - MT - MB;
#define PX(x) (ML + pw * ((x) - x0) / (x1 - x0))
#define PY(y) (MT + ph - ph * (y) / y1)
    fputs("<polyline fill=\"none\" stroke=\"steelblue\" stroke-width=\"2\" points=\"", f);
    for (size_t i = 0; i < s->n; i++)
        if (s->pt[i].pareto) fprintf(f, "%.1f,%.1f ", PX(s->pt[i].avg_bits), PY(s->pt[i].loss));
    fputs("\"/>\n", f);
    for (size_t i = 0; i < s->n; i++) {
        const aq_alloc_point *p = &s->pt[i];
        if (!p->feasible) continue;
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>budget %.4g: %.4f bits/weight, loss %.6g</title></circle>\n",
                PX(p->avg_bits), PY(p->loss), p->pareto ? "steelblue" : "#aaa", p->budget, p->avg_bits, p->loss);
    }
    if (chosen) {
        double cx = PX(chosen->avg_bits), cy = PY(chosen->loss);
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"7\" fill=\"none\" stroke=\"red\" stroke-width=\"2.5\"/>\n", cx, cy);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"red\" text-anchor=\"%s\">chosen: %.4f bits/weight, loss %.4g</text>\n",
                cx + (cx > ML + pw / 2 ? -10 : 10), cy - 12, cx > ML + pw / 2 ? "end" : "start", chosen->avg_bits,
                chosen->loss);
    }
#undef PX
#undef PY
    fputs("</svg>\n", f);
}

static const char *act_colour(int a)
{
    return a >= 16 ? "steelblue" : a >= 8 ? "darkorange" : a >= 4 ? "crimson" : "gray";
}

void aq_alloc_write_bits_svg(FILE *f, const aq_alloc_table *t, const aq_alloc_solution *s)
{
    size_t n = s->n_layers;
    int labels = n <= 60;
    int w = n * 14 + ML + MR > W ? (int)(n * 14 + ML + MR) : W;
    if (w > 1800) w = 1800;
    int h = H + (labels ? 100 : 0), pw = w - ML - MR, ph = H - MT - MB;
    double y1 = 8;
    for (size_t l = 0; l < n; l++) {
        const aq_alloc_row *r = &t->rows[s->row[l]];
        y1 = fmax(y1, (double)aq_alloc_row_size(r) / (double)r->params);
    }
    y1 = ceil(y1);
    char title[160];
    snprintf(title, sizeof title, "Bits per weight by layer (%zu layers, average %.4f, loss %.4g)", n, s->avg_bits, s->loss);
    header(f, w, h, title);
    axes(f, w, h - (labels ? 100 : 0), 0, 0, 0, y1, labels ? "" : "layer (table order)", "bits per weight");
    double bw = (double)pw / (double)(n ? n : 1);
    for (size_t l = 0; l < n; l++) {
        const aq_alloc_row *r = &t->rows[s->row[l]];
        double v = (double)aq_alloc_row_size(r) / (double)r->params, bh = ph * v / y1;
        fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"><title>", ML + bw * l,
                MT + ph - bh, bw > 2 ? bw * 0.85 : bw, bh, act_colour(r->a_bits));
        xml_str(f, r->layer);
        fputs(": ", f);
        xml_str(f, r->option);
        fprintf(f, ", %.3f bits/weight</title></rect>\n", v);
        if (labels) {
            double x = ML + bw * (l + 0.5);
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"10\" text-anchor=\"end\" transform=\"rotate(-60 %.1f %d)\">", x,
                    MT + ph + 14, x, MT + ph + 14);
            xml_str(f, r->layer);
            fputs("</text>\n", f);
        }
    }
    double ay = MT + ph - ph * s->avg_bits / y1;
    fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"black\" stroke-dasharray=\"5,4\"/>\n", ML, ay, ML + pw, ay);
    static const int acts[] = {16, 8, 4};
    static const char *const names[] = {"a16 (FP)", "a8", "a&lt;=4"};
    for (int i = 0; i < 3; i++)
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">%s</text>\n",
                w - MR - 230 + 75 * i, h - 21, act_colour(acts[i]), w - MR - 216 + 75 * i, h - 12, names[i]);
    fputs("</svg>\n", f);
}
