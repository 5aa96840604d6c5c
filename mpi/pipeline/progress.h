/* progress.h — the progress display of a distributed run, printed by rank 0:
 * tasks done/total, the last finished layer/option/loss, throughput and ETA.
 * Three modes: bar redraws one line ("\r" + erase, for terminals); plain
 * prints one line per finished task with its ETA and no control character at
 * all (batch logs); none is silent. The mode comes from --progress (exported
 * as AQ_PROGRESS), else the auto rule below, which looks at where the text
 * really ends up: under Open MPI's mpirun a rank's own stdout is always a pty
 * (Open MPI's I/O forwarding allocates one whatever the user redirected), so
 * isatty on the rank says nothing and mpirun's own streams are examined.
 * The ETA divides the estimated cost still to do by the cost rate so far, so
 * large and small layers are weighed by their cost, not counted alike. */
#ifndef AQ_DIST_PROGRESS_H
#define AQ_DIST_PROGRESS_H

#include <stddef.h>
#include <stdio.h>

typedef enum aq_progress_mode {
    AQ_PROGRESS_AUTO = 0,
    AQ_PROGRESS_BAR,
    AQ_PROGRESS_PLAIN,
    AQ_PROGRESS_NONE
} aq_progress_mode;

/* "auto", "bar", "plain", "none" <-> the mode. parse returns 0, or -1 for
 * any other string (m untouched). */
int aq_progress_mode_parse(const char *s, aq_progress_mode *m);
const char *aq_progress_mode_name(aq_progress_mode m);

/* What the auto rule looks at; aq_progress_probe fills it from the process
 * (environment, isatty, /proc), tests fill it by hand. */
typedef struct aq_progress_env {
    int term_dumb;       /* TERM=dumb: the terminal cannot redraw a line */
    int own_tty;         /* isatty() of the progress stream itself */
    int orte;            /* started by Open MPI's mpirun (OMPI_MCA_orte_hnp_uri; not a singleton) */
    int per_rank_output; /* mpirun --tag-output, --timestamp-output, --output-filename, --xml */
    int launcher_found;  /* mpirun's process is on this node and readable */
    int launcher_tty;    /* mpirun's stdout and stderr are both terminals */
    char launcher_out[96]; /* where mpirun's stderr goes (for the reason text) */
} aq_progress_env;

/* The auto rule (pure): BAR or PLAIN, with a one-line reason in why[n]:
 *   TERM=dumb -> plain;
 *   under mpirun (orte): plain if output is tagged or per-rank files, if
 *     mpirun is not on this node, or if mpirun's stdout or stderr is not a
 *     terminal (a file, a pipe, /dev/null); bar only when both are;
 *   otherwise (no launcher, or srun, which gives a task a terminal only with
 *     --pty): bar if the progress stream is a terminal, else plain. */
aq_progress_mode aq_progress_auto(const aq_progress_env *e, char *why, size_t n);
/* Fill e for the progress stream out (rank 0's stderr in practice). */
void aq_progress_probe(FILE *out, aq_progress_env *e);
/* The mode for out: AQ_PROGRESS (bar|plain|none; auto or unset = the auto
 * rule on aq_progress_probe). why[n] (may be NULL) receives the auto rule's
 * reason, or "" when the user chose the mode. */
aq_progress_mode aq_progress_resolve(FILE *out, char *why, size_t n);
/* Make m this process's setting by exporting AQ_PROGRESS, which every
 * display resolves (aq_progress_init with tty -1): a CLI flag reaches every
 * stage without being threaded through each stage's options. */
void aq_progress_export(aq_progress_mode m);

typedef struct aq_progress {
    FILE *out;          /* NULL = silent */
    int tty;            /* redraw one line */
    double interval;    /* seconds between plain lines (0 = one per task) */
    double t0, last;    /* start and last print (monotonic seconds) */
    size_t total, done, reused;
    double cost_total, cost_done; /* computed tasks only (reused cost 0) */
    char last_task[160]; /* printable ASCII only (control bytes replaced) */
    int drawn;          /* a TTY line is on screen */
} aq_progress;

/* Monotonic clock in seconds. */
double aq_progress_now(void);
/* Start: total tasks, of which `reused` are already done (cost 0), and the
 * estimated cost of the rest. tty: 1 bar, 0 plain, -1 aq_progress_resolve
 * (which may also silence the display). Plain mode prints a header line
 * first, with the reason when the auto rule chose it. */
void aq_progress_init(aq_progress *p, FILE *out, int tty, double interval, size_t total,
                      size_t reused, double cost_todo);
/* One task finished: its key, loss and estimated cost. Prints if due. */
void aq_progress_task(aq_progress *p, const char *layer, const char *option, double loss, double cost);
/* Print the final line (always) and end the TTY line. */
void aq_progress_finish(aq_progress *p);
/* Before printing anything else to the same terminal: end the bar line. */
void aq_progress_break(aq_progress *p);
/* The text of one display line at time `now` into buf[n] (pure, for tests):
 * bar mode starts with "\r" ESC "[K" and has no newline; plain mode is one
 * line ending in "\n" with printable characters only. final: the last line
 * ("done in" instead of the ETA). */
void aq_progress_format(const aq_progress *p, double now, int final, char *buf, size_t n);

#endif
