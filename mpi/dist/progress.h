/* progress.h — the progress display of a distributed run, printed by rank 0:
 * tasks done/total, the last finished layer/option/loss, throughput and ETA.
 * On a TTY it redraws one line ("\r" + erase); otherwise (batch logs) it
 * prints plain lines, at most one per `interval` seconds, plus a final line.
 * The ETA divides the estimated cost still to do by the cost rate so far, so
 * large and small layers are weighed by their cost, not counted alike. */
#ifndef AQ_DIST_PROGRESS_H
#define AQ_DIST_PROGRESS_H

#include <stddef.h>
#include <stdio.h>

typedef struct aq_progress {
    FILE *out;          /* NULL = silent */
    int tty;            /* redraw one line */
    double interval;    /* seconds between plain lines */
    double t0, last;    /* start and last print (monotonic seconds) */
    size_t total, done, reused;
    double cost_total, cost_done; /* computed tasks only (reused cost 0) */
    char last_task[160];
    int drawn;          /* a TTY line is on screen */
} aq_progress;

/* Monotonic clock in seconds. */
double aq_progress_now(void);
/* Start: total tasks, of which `reused` are already done (cost 0), and the
 * estimated cost of the rest. tty: 1 yes, 0 no, -1 detect (isatty; under
 * mpirun, rank 0's stdout). The environment variable AQ_PROGRESS=bar|plain
 * overrides the detection, AQ_PROGRESS=none silences the display. */
void aq_progress_init(aq_progress *p, FILE *out, int tty, double interval, size_t total,
                      size_t reused, double cost_todo);
/* One task finished: its key, loss and estimated cost. Prints if due. */
void aq_progress_task(aq_progress *p, const char *layer, const char *option, double loss, double cost);
/* Print the final line (always) and end the TTY line. */
void aq_progress_finish(aq_progress *p);
/* Before printing anything else to the same terminal: end the bar line. */
void aq_progress_break(aq_progress *p);

#endif
