/* progress.c — progress bar / plain progress lines on rank 0, and the rule
 * that chooses between them (progress.h). */
#include "progress.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double aq_progress_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *const mode_names[] = {"auto", "bar", "plain", "none"};

int aq_progress_mode_parse(const char *s, aq_progress_mode *m)
{
    for (int i = 0; i < 4; i++)
        if (s && !strcmp(s, mode_names[i])) {
            *m = (aq_progress_mode)i;
            return 0;
        }
    return -1;
}

const char *aq_progress_mode_name(aq_progress_mode m)
{
    return (unsigned)m < 4 ? mode_names[m] : "?";
}

aq_progress_mode aq_progress_auto(const aq_progress_env *e, char *why, size_t n)
{
    char tmp[8];
    if (!why) why = tmp, n = sizeof tmp;
    if (e->term_dumb) {
        snprintf(why, n, "TERM=dumb cannot redraw a line");
        return AQ_PROGRESS_PLAIN;
    }
    if (e->orte) {
        /* Rank 0's own stdout is the pty Open MPI always allocates and its
         * stderr a pipe: only mpirun's own streams say where the text goes. */
        if (e->per_rank_output) {
            snprintf(why, n, "mpirun tags the output or writes it to per-rank files");
            return AQ_PROGRESS_PLAIN;
        }
        if (!e->launcher_found) {
            snprintf(why, n, "mpirun is not on rank 0's node, its terminal cannot be checked");
            return AQ_PROGRESS_PLAIN;
        }
        if (!e->launcher_tty) {
            snprintf(why, n, "mpirun's output goes to %s, not a terminal",
                     e->launcher_out[0] ? e->launcher_out : "a file or pipe");
            return AQ_PROGRESS_PLAIN;
        }
        snprintf(why, n, "mpirun's stdout and stderr are terminals");
        return AQ_PROGRESS_BAR;
    }
    if (e->own_tty) {
        snprintf(why, n, "stderr is a terminal");
        return AQ_PROGRESS_BAR;
    }
    snprintf(why, n, "stderr is not a terminal");
    return AQ_PROGRESS_PLAIN;
}

/* A path that names a terminal device (readlink of /proc/PID/fd/K). */
static int is_terminal_path(const char *t)
{
    return !strncmp(t, "/dev/pts/", 9) || !strncmp(t, "/dev/tty", 8) || !strcmp(t, "/dev/console");
}

/* mpirun's pid: its session directory is named after it ("…/pid.N"); a
 * rank started through a wrapper script still finds it there. Else the
 * parent process. */
static long launcher_pid(void)
{
    const char *d = getenv("OMPI_MCA_orte_jobfam_session_dir");
    const char *s = d ? strrchr(d, '/') : NULL;
    if (s && !strncmp(s, "/pid.", 5)) {
        char *end;
        long v = strtol(s + 5, &end, 10);
        if (v > 0 && !*end) return v;
    }
    return (long)getppid();
}

/* Is process pid mpirun itself (not orted on another node, not a shell)? */
static int is_mpirun(long pid)
{
    char path[64], comm[64] = "";
    snprintf(path, sizeof path, "/proc/%ld/comm", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    if (!fgets(comm, sizeof comm, f)) comm[0] = 0;
    fclose(f);
    comm[strcspn(comm, "\n")] = 0;
    static const char *const names[] = {"mpirun", "mpiexec", "orterun", "oshrun"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(comm, names[i])) return 1;
    return 0;
}

static int fd_target(long pid, int fd, char *buf, size_t n)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/fd/%d", pid, fd);
    ssize_t k = readlink(path, buf, n - 1);
    if (k < 0) {
        buf[0] = 0;
        return -1;
    }
    buf[k] = 0;
    return 0;
}

void aq_progress_probe(FILE *out, aq_progress_env *e)
{
    memset(e, 0, sizeof *e);
    const char *term = getenv("TERM");
    e->term_dumb = term && !strcmp(term, "dumb");
    e->own_tty = out && isatty(fileno(out));
    /* mpirun exports its URI to the ranks; a process started without it
     * (Open MPI "singleton") sets orte_launch in MPI_Init as well, but with
     * ess=singleton and no URI: that one owns its streams */
    const char *ess = getenv("OMPI_MCA_ess");
    e->orte = getenv("OMPI_MCA_orte_hnp_uri") || (getenv("OMPI_MCA_orte_launch") && !(ess && !strcmp(ess, "singleton")));
    if (!e->orte) return;
    static const char *const tags[] = {"OMPI_MCA_orte_tag_output", "OMPI_MCA_orte_timestamp_output",
                                       "OMPI_MCA_orte_output_filename", "OMPI_MCA_orte_xml_output"};
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        const char *v = getenv(tags[i]);
        if (v && *v && strcmp(v, "0") && strcmp(v, "false")) e->per_rank_output = 1;
    }
    long pid = launcher_pid();
    if (!is_mpirun(pid)) return;
    char o[256], r[256];
    if (fd_target(pid, 1, o, sizeof o) || fd_target(pid, 2, r, sizeof r)) return;
    e->launcher_found = 1;
    /* both: --merge-stderr-to-stdout sends rank stderr to mpirun's stdout,
     * invisibly to the ranks */
    e->launcher_tty = is_terminal_path(o) && is_terminal_path(r);
    const char *shown = is_terminal_path(r) ? o : r;
    snprintf(e->launcher_out, sizeof e->launcher_out, "%.95s", shown);
}

aq_progress_mode aq_progress_resolve(FILE *out, char *why, size_t n)
{
    aq_progress_mode m = AQ_PROGRESS_AUTO;
    const char *v = getenv("AQ_PROGRESS");
    if (v && *v && aq_progress_mode_parse(v, &m)) {
        aq_progress_env e;
        aq_progress_probe(out, &e);
        char r[160];
        m = aq_progress_auto(&e, r, sizeof r);
        if (why) snprintf(why, n, "AQ_PROGRESS=%.16s is not auto|bar|plain|none; auto: %s", v, r);
        return m;
    }
    if (m != AQ_PROGRESS_AUTO) {
        if (why && n) why[0] = 0; /* the user's choice needs no reason */
        return m;
    }
    aq_progress_env e;
    aq_progress_probe(out, &e);
    return aq_progress_auto(&e, why, n);
}

void aq_progress_export(aq_progress_mode m)
{
    setenv("AQ_PROGRESS", aq_progress_mode_name(m), 1);
}

void aq_progress_init(aq_progress *p, FILE *out, int tty, double interval, size_t total, size_t reused,
                      double cost_todo)
{
    memset(p, 0, sizeof *p);
    char why[200] = "";
    p->out = out;
    if (tty >= 0) {
        p->tty = tty;
    } else if (out) {
        aq_progress_mode m = aq_progress_resolve(out, why, sizeof why);
        if (m == AQ_PROGRESS_NONE) p->out = NULL;
        p->tty = m == AQ_PROGRESS_BAR;
    }
    p->interval = interval > 0 ? interval : 0;
    p->t0 = p->last = aq_progress_now();
    p->total = total;
    p->done = p->reused = reused;
    p->cost_total = cost_todo;
    if (p->out && !p->tty) {
        fprintf(p->out, "adaquant: %zu tasks, %zu reused from the work directory, %zu to compute", total, reused,
                total - reused);
        if (why[0]) fprintf(p->out, " (progress plain: %s; --progress bar|plain|none overrides)", why);
        fputc('\n', p->out);
        fflush(p->out);
    }
}

static void fmt_hms(char *buf, size_t n, double s)
{
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, n, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

void aq_progress_format(const aq_progress *p, double now, int final, char *buf, size_t n)
{
    double el = now - p->t0;
    size_t computed = p->done - p->reused;
    double rate = el > 0 ? (double)computed / el : 0;
    char eta[64], elapsed[32];
    fmt_hms(elapsed, sizeof elapsed, el);
    if (final)
        snprintf(eta, sizeof eta, "done in %s", elapsed);
    else if (p->cost_done > 0)
        fmt_hms(eta, sizeof eta, (p->cost_total - p->cost_done) * el / p->cost_done);
    else
        snprintf(eta, sizeof eta, "?");
    int pct = p->total ? (int)(100.0 * (double)p->done / (double)p->total) : 100;
    if (p->tty) {
        char bar[21];
        int fill = pct / 5;
        for (int i = 0; i < 20; i++) bar[i] = i < fill ? '#' : '-';
        bar[20] = 0;
        snprintf(buf, n, "\r\033[K[%s] %zu/%zu %3d%% %s | %.2f task/s | %s%s", bar, p->done, p->total, pct,
                 p->last_task, rate, final ? "" : "ETA ", eta);
    } else {
        snprintf(buf, n, "adaquant: %zu/%zu tasks (%d%%, %zu reused) | last %s | %.2f task/s | %s%s\n", p->done,
                 p->total, pct, p->reused, p->last_task[0] ? p->last_task : "-", rate, final ? "" : "ETA ", eta);
    }
}

static void draw(aq_progress *p, double now, int final)
{
    char line[512];
    aq_progress_format(p, now, final, line, sizeof line);
    fputs(line, p->out);
    if (p->tty && final) fputc('\n', p->out);
    p->drawn = p->tty && !final;
    fflush(p->out);
    p->last = now;
}

void aq_progress_task(aq_progress *p, const char *layer, const char *option, double loss, double cost)
{
    p->done++;
    p->cost_done += cost;
    snprintf(p->last_task, sizeof p->last_task, "%s %s loss %.4g", layer, option, loss);
    /* Layer names come from the checkpoint: keep the log free of control
     * bytes (and the bar of stray escapes) whatever they contain. */
    for (char *c = p->last_task; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f) *c = '?';
    if (!p->out) return;
    double now = aq_progress_now();
    if (p->tty ? now - p->last >= 0.1 : now - p->last >= p->interval) draw(p, now, 0);
}

void aq_progress_finish(aq_progress *p)
{
    if (p->out) draw(p, aq_progress_now(), 1);
}

void aq_progress_break(aq_progress *p)
{
    if (p->out && p->tty && p->drawn) {
        fputc('\n', p->out);
        p->drawn = 0;
    }
}
