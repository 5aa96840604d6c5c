/* report.c — CSV and JSON text of allocation solutions and sweeps (report.h).
 * Hand-written JSON (solver/ depends on nothing but common/ and CBC): strings
 * are escaped per RFC 8259, non-finite numbers become null. */
#include <math.h>
#include <string.h>

#include "report.h"

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static void json_num(FILE *f, double v)
{
    if (isfinite(v)) fprintf(f, "%.17g", v);
    else fputs("null", f);
}

/* CSV field, quoted when it holds a comma, quote or newline. */
static void csv_str(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static const char *status_name(aq_alloc_result r)
{
    return r == AQ_ALLOC_OPTIMAL ? "optimal" : "time_limit_feasible";
}

void aq_alloc_write_solution_csv(FILE *f, const aq_alloc_table *t, const aq_alloc_solution *s)
{
    fputs("layer,option,params,w_bits,a_bits,size_bits,bits_per_weight,bops,loss\n", f);
    for (size_t l = 0; l < s->n_layers; l++) {
        const aq_alloc_row *r = &t->rows[s->row[l]];
        csv_str(f, r->layer);
        fputc(',', f);
        csv_str(f, r->option);
        int64_t size = aq_alloc_row_size(r);
        fprintf(f, ",%lld,%d,%d,%lld,%.6f,%lld,%.17g\n", (long long)r->params, r->w_bits, r->a_bits, (long long)size,
                (double)size / (double)r->params, (long long)aq_alloc_row_bops(r), r->loss);
    }
}

void aq_alloc_write_solution_json(FILE *f, const aq_alloc_table *t, const aq_alloc_solution *s)
{
    fprintf(f, "{\n  \"status\": \"%s\",\n  \"objective\": ", status_name(s->status));
    json_num(f, s->objective);
    fputs(",\n  \"bound\": ", f);
    json_num(f, s->bound);
    fputs(",\n  \"gap\": ", f);
    json_num(f, s->gap);
    fputs(",\n  \"seconds\": ", f);
    json_num(f, s->seconds);
    fprintf(f, ",\n  \"core_layers\": %zu,\n  \"total_params\": %lld,\n  \"size_bits\": %lld,\n  \"avg_bits\": ",
            s->core_layers, (long long)s->total_params, (long long)s->size_bits);
    json_num(f, s->avg_bits);
    fprintf(f, ",\n  \"bops\": %lld,\n  \"loss\": ", (long long)s->bops);
    json_num(f, s->loss);
    fputs(",\n  \"size_budget_bits\": ", f);
    if (s->size_budget_bits >= 0) fprintf(f, "%lld", (long long)s->size_budget_bits);
    else fputs("null", f);
    fputs(",\n  \"bops_budget\": ", f);
    if (s->bops_budget >= 0) fprintf(f, "%lld", (long long)s->bops_budget);
    else fputs("null", f);
    fputs(",\n  \"loss_budget\": ", f);
    json_num(f, s->loss_budget);
    fputs(",\n  \"layers\": [", f);
    for (size_t l = 0; l < s->n_layers; l++) {
        const aq_alloc_row *r = &t->rows[s->row[l]];
        fputs(l ? ",\n    {\"layer\": " : "\n    {\"layer\": ", f);
        json_str(f, r->layer);
        fputs(", \"option\": ", f);
        json_str(f, r->option);
        fprintf(f, ", \"params\": %lld, \"w_bits\": %d, \"a_bits\": %d, \"size_bits\": %lld, \"bops\": %lld, \"loss\": ",
                (long long)r->params, r->w_bits, r->a_bits, (long long)aq_alloc_row_size(r),
                (long long)aq_alloc_row_bops(r));
        json_num(f, r->loss);
        fputc('}', f);
    }
    fputs("\n  ]\n}\n", f);
}

void aq_alloc_write_sweep_csv(FILE *f, const aq_alloc_sweep *s)
{
    fputs("budget_bits_per_weight,feasible,pareto,status,avg_bits,size_bits,bops,loss,gap,seconds\n", f);
    for (size_t i = 0; i < s->n; i++) {
        const aq_alloc_point *p = &s->pt[i];
        if (!p->feasible) {
            fprintf(f, "%.6g,0,0,infeasible,,,,,,\n", p->budget);
            continue;
        }
        fprintf(f, "%.6g,1,%d,%s,%.6f,%lld,%lld,%.17g,%.3g,%.6f\n", p->budget, p->pareto, status_name(p->status),
                p->avg_bits, (long long)p->size_bits, (long long)p->bops, p->loss, p->gap, p->seconds);
    }
}

void aq_alloc_write_sweep_json(FILE *f, const aq_alloc_sweep *s, const aq_alloc_solution *chosen)
{
    fputs("{\n  \"min_feasible_bits_per_weight\": ", f);
    json_num(f, s->min_feasible);
    fputs(",\n  \"points\": [", f);
    for (size_t i = 0; i < s->n; i++) {
        const aq_alloc_point *p = &s->pt[i];
        fprintf(f, "%s\n    {\"budget_bits_per_weight\": ", i ? "," : "");
        json_num(f, p->budget);
        fprintf(f, ", \"feasible\": %s", p->feasible ? "true" : "false");
        if (p->feasible) {
            fprintf(f, ", \"pareto\": %s, \"status\": \"%s\", \"avg_bits\": ", p->pareto ? "true" : "false",
                    status_name(p->status));
            json_num(f, p->avg_bits);
            fprintf(f, ", \"size_bits\": %lld, \"bops\": %lld, \"loss\": ", (long long)p->size_bits, (long long)p->bops);
            json_num(f, p->loss);
            fputs(", \"gap\": ", f);
            json_num(f, p->gap);
            fputs(", \"seconds\": ", f);
            json_num(f, p->seconds);
        }
        fputc('}', f);
    }
    fputs("\n  ],\n  \"chosen\": ", f);
    if (chosen) {
        fputs("{\"avg_bits\": ", f);
        json_num(f, chosen->avg_bits);
        fprintf(f, ", \"size_bits\": %lld, \"bops\": %lld, \"loss\": ", (long long)chosen->size_bits,
                (long long)chosen->bops);
        json_num(f, chosen->loss);
        fputc('}', f);
    } else
        fputs("null", f);
    fputs("\n}\n", f);
}
