/* svg.h — the pieces of the SVG plots (svg.c) that have rules of their own,
 * exposed for their tests: the round tick chooser and the blocks x linear
 * types grid read from layer names. The plots themselves are declared in
 * report.h. */
#ifndef AQ_SOLVER_SVG_H
#define AQ_SOLVER_SVG_H

#include <stddef.h>

/* Up to this many layers the bits plot is one labelled bar per layer (the
 * labels stay legible at 14 px per bar); above, a heat map of blocks x
 * linear types when the names allow it. */
#define AQ_SVG_BARS_MAX 64
/* Least distance between two ticks of an axis, in px: room for a label like
 * "0.025" plus a gap. An axis of L px has at most floor(L / this) intervals. */
#define AQ_SVG_TICK_PX 75

/* Round ticks: step = m x 10^k with m in {1, 2, 2.5, 5}, the smallest such
 * step for which the axis [floor(lo/step), ceil(hi/step)] x step spans at
 * most max_intervals steps. The axis grows to those round ends, so the first
 * and last tick sit on the frame. integer: steps >= 1 and no 2.5 (block
 * indices). Ticks: lo + i step (exactly i_lo + i multiples), i = 0..n. */
typedef struct aq_svg_ticks {
    double lo, hi, step; /* the rounded axis */
    long i_lo;           /* lo = i_lo x step */
    int n;               /* intervals: ticks are lo .. hi, n + 1 values */
    int decimals;        /* fractional digits that print every tick exactly */
} aq_svg_ticks;

/* Choose ticks for data in [lo, hi] (swapped if reversed; a single value or
 * a non-finite one gets a unit-wide axis). max_intervals < 1 counts as 1. */
void aq_svg_ticks_choose(double lo, double hi, int max_intervals, int integer, aq_svg_ticks *t);
/* Value of tick i (0..n), computed as a multiple of the step. */
double aq_svg_tick_value(const aq_svg_ticks *t, int i);
/* Label of tick i: fixed with t->decimals digits ("0.25", "3", "-1.5"), or
 * %g when that would take more than 4 decimals or 7 digits. */
void aq_svg_tick_label(const aq_svg_ticks *t, int i, char *buf, size_t n);

/* Layer names of the form PREFIX.B.TYPE (B a decimal block index, e.g.
 * model.layers.12.self_attn.q_proj) as a grid. Owns its arrays. */
typedef struct aq_svg_grid {
    int n_blocks;       /* max block index + 1 */
    int n_types;        /* distinct TYPE strings, in order of first appearance */
    int *block, *type;  /* per layer */
    char **type_name;   /* n_types strings */
} aq_svg_grid;

/* Build the grid of names[n]: 0, or -1 (g zeroed) when a name lacks the
 * form, the prefixes differ, two layers share a cell, there are more than
 * 64 types, or allocation fails. */
int aq_svg_grid_build(const char *const *names, size_t n, aq_svg_grid *g);
void aq_svg_grid_free(aq_svg_grid *g);

#endif
