/* progress.c — progress bar / plain progress lines on rank 0 (progress.h). */
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

/* AQ_PROGRESS=bar|plain|none overrides the detection. Open MPI gives a
 * rank's stdout a pty but its stderr a pipe, so under mpirun the terminal
 * is recognised through stdout. */
static int detect_tty(FILE *out)
{
    const char *e = getenv("AQ_PROGRESS");
    if (e && !strcmp(e, "bar")) return 1;
    if (e && !strcmp(e, "plain")) return 0;
    if (isatty(fileno(out))) return 1;
    return out == stderr && getenv("OMPI_COMM_WORLD_SIZE") && isatty(STDOUT_FILENO);
}

void aq_progress_init(aq_progress *p, FILE *out, int tty, double interval, size_t total, size_t reused,
                      double cost_todo)
{
    memset(p, 0, sizeof *p);
    const char *e = getenv("AQ_PROGRESS");
    p->out = e && !strcmp(e, "none") ? NULL : out;
    p->tty = tty >= 0 ? tty : (p->out && detect_tty(p->out));
    p->interval = interval > 0 ? interval : 5.0;
    p->t0 = p->last = aq_progress_now();
    p->total = total;
    p->done = p->reused = reused;
    p->cost_total = cost_todo;
    if (out && !p->tty)
        fprintf(out, "adaquant: %zu tasks, %zu reused from the work directory, %zu to compute\n", total,
                reused, total - reused);
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

static void draw(aq_progress *p, double now, int final)
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
        fprintf(p->out, "\r\033[K[%s] %zu/%zu %3d%% %s | %.2f task/s | %s%s", bar, p->done, p->total, pct,
                p->last_task, rate, final ? "" : "ETA ", eta);
        if (final) fputc('\n', p->out);
        p->drawn = !final;
    } else {
        fprintf(p->out, "adaquant: %zu/%zu tasks (%d%%, %zu reused) | last %s | %.2f task/s | %s%s\n", p->done,
                p->total, pct, p->reused, p->last_task[0] ? p->last_task : "-", rate, final ? "" : "ETA ", eta);
    }
    fflush(p->out);
    p->last = now;
}

void aq_progress_task(aq_progress *p, const char *layer, const char *option, double loss, double cost)
{
    p->done++;
    p->cost_done += cost;
    snprintf(p->last_task, sizeof p->last_task, "%s %s loss %.4g", layer, option, loss);
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
