/* test_progress.c — the progress display (mpi/pipeline/progress.c) without MPI:
 * the auto rule on hand-made environments (each branch, with the mode the
 * rule in progress.h / docs/PIPELINE.md prescribes), mode names, the exact
 * text of plain and bar lines against hand-computed ETA and rate, control
 * bytes in layer names, and the header line printed through a real stream.
 * The batch log of a real mpirun run is tests/test_progress_log.py. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../mpi/pipeline/progress.h"
#include "testutil.h"

static int has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t') return 1;
    return 0;
}

static void test_auto_rule(void)
{
    char why[200];
    aq_progress_env e;
    /* no launcher: the stream itself decides */
    memset(&e, 0, sizeof e);
    e.own_tty = 1;
    CHECK(aq_progress_auto(&e, why, sizeof why) == AQ_PROGRESS_BAR);
    e.own_tty = 0;
    CHECK(aq_progress_auto(&e, why, sizeof why) == AQ_PROGRESS_PLAIN);
    CHECK(strstr(why, "not a terminal") != NULL);
    /* TERM=dumb wins over a terminal */
    e.own_tty = 1, e.term_dumb = 1;
    CHECK(aq_progress_auto(&e, why, sizeof why) == AQ_PROGRESS_PLAIN);
    CHECK(strstr(why, "TERM=dumb") != NULL);
    /* under mpirun the rank's own stream is ignored (its stdout is always a
     * pty): a redirected mpirun means plain even with own_tty set */
    memset(&e, 0, sizeof e);
    e.orte = 1, e.own_tty = 1, e.launcher_found = 1, e.launcher_tty = 0;
    snprintf(e.launcher_out, sizeof e.launcher_out, "/scratch/job.log");
    CHECK(aq_progress_auto(&e, why, sizeof why) == AQ_PROGRESS_PLAIN);
    CHECK_MSG(strstr(why, "/scratch/job.log") != NULL, "the reason names the log: %s", why);
    e.launcher_tty = 1, e.own_tty = 0; /* interactive mpirun: bar although rank 0's stderr is a pipe */
    CHECK(aq_progress_auto(&e, why, sizeof why) == AQ_PROGRESS_BAR);
    e.per_rank_output = 1; /* --tag-output prefixes every line: no redraws */
    CHECK(aq_progress_auto(&e, why, sizeof why) == AQ_PROGRESS_PLAIN);
    e.per_rank_output = 0, e.launcher_found = 0; /* rank 0 under orted on another node */
    CHECK(aq_progress_auto(&e, why, sizeof why) == AQ_PROGRESS_PLAIN);
    CHECK(aq_progress_auto(&e, NULL, 0) == AQ_PROGRESS_PLAIN); /* why may be NULL */
}

static void test_mode_names(void)
{
    const char *names[] = {"auto", "bar", "plain", "none"};
    const aq_progress_mode modes[] = {AQ_PROGRESS_AUTO, AQ_PROGRESS_BAR, AQ_PROGRESS_PLAIN, AQ_PROGRESS_NONE};
    for (int i = 0; i < 4; i++) {
        aq_progress_mode m = AQ_PROGRESS_NONE;
        CHECK(aq_progress_mode_parse(names[i], &m) == 0 && m == modes[i]);
        CHECK(!strcmp(aq_progress_mode_name(modes[i]), names[i]));
    }
    aq_progress_mode m = AQ_PROGRESS_BAR;
    CHECK(aq_progress_mode_parse("Plain", &m) == -1 && m == AQ_PROGRESS_BAR);
    CHECK(aq_progress_mode_parse("", &m) == -1);
}

/* A display state set by hand: 10 tasks, 1 reused, 4 computed in 10 s,
 * which cost 4 of the 8 cost units to do. */
static aq_progress state(int tty)
{
    aq_progress p;
    memset(&p, 0, sizeof p);
    p.tty = tty;
    p.t0 = 100.0;
    p.total = 10, p.reused = 1, p.done = 5;
    p.cost_total = 8, p.cost_done = 4;
    snprintf(p.last_task, sizeof p.last_task, "blk.0.q w4a16 loss 0.5");
    return p;
}

static void test_format(void)
{
    char buf[512];
    aq_progress p = state(0);
    /* rate = 4 computed / 10 s = 0.40 task/s; ETA = (8 - 4) cost left at
     * 4 cost per 10 s = 10 s; 5 of 10 done = 50% */
    aq_progress_format(&p, 110.0, 0, buf, sizeof buf);
    CHECK_MSG(!strcmp(buf, "adaquant: 5/10 tasks (50%, 1 reused) | last blk.0.q w4a16 loss 0.5 | 0.40 task/s | ETA 0:10\n"),
              "%s", buf);
    aq_progress_format(&p, 110.0, 1, buf, sizeof buf);
    CHECK_MSG(strstr(buf, "| done in 0:10\n") != NULL, "%s", buf);
    /* past an hour: 4 cost units left at 4 per 3725 s = 3725 s = 1:02:05 */
    aq_progress_format(&p, 100.0 + 3725.0, 0, buf, sizeof buf);
    CHECK_MSG(strstr(buf, "ETA 1:02:05\n") != NULL, "%s", buf);
    /* nothing computed yet: the ETA is unknown, not 0 */
    p.cost_done = 0, p.done = p.reused;
    aq_progress_format(&p, 101.0, 0, buf, sizeof buf);
    CHECK_MSG(strstr(buf, "ETA ?\n") != NULL, "%s", buf);
    CHECK(!has_control(buf));
    /* the bar redraws: carriage return + erase line, 50% = 10 of 20 cells */
    p = state(1);
    aq_progress_format(&p, 110.0, 0, buf, sizeof buf);
    CHECK_MSG(!strcmp(buf, "\r\033[K[##########----------] 5/10  50% blk.0.q w4a16 loss 0.5 | 0.40 task/s | ETA 0:10"),
              "%s", buf);
}

/* A layer name with control bytes (from a hostile checkpoint) reaches
 * neither mode's text. */
static void test_sanitize(void)
{
    aq_progress p;
    memset(&p, 0, sizeof p); /* out NULL: silent, state still kept */
    p.total = 3;
    aq_progress_task(&p, "bad\033[31m\rname", "w4a16", 0.25, 1.0);
    CHECK_MSG(!strcmp(p.last_task, "bad?[31m?name w4a16 loss 0.25"), "%s", p.last_task);
    CHECK(p.done == 1 && p.cost_done == 1.0);
}

/* The header and task lines through a real (non-terminal) stream. */
static void test_stream(void)
{
    FILE *f = tmpfile();
    CHECK(f != NULL);
    if (!f) return;
    unsetenv("OMPI_MCA_orte_launch");
    unsetenv("OMPI_MCA_orte_hnp_uri");
    unsetenv("TERM");
    setenv("AQ_PROGRESS", "auto", 1);
    aq_progress p;
    aq_progress_init(&p, f, -1, 0, 3, 1, 2.0);
    CHECK(p.out == f && p.tty == 0);
    aq_progress_task(&p, "a", "w8a16", 0.1, 1.0);
    aq_progress_task(&p, "b", "w8a16", 0.2, 1.0);
    aq_progress_finish(&p);
    rewind(f);
    char line[512];
    int n = 0, header = 0, eta = 0, final = 0;
    while (fgets(line, sizeof line, f)) {
        n++;
        CHECK_MSG(!has_control(line), "control byte in %s", line);
        if (strstr(line, "3 tasks, 1 reused from the work directory, 2 to compute (progress plain: stderr is not a terminal"))
            header++;
        if (strstr(line, "| ETA ")) eta++;
        if (strstr(line, "adaquant: 3/3 tasks (100%, 1 reused) | last b w8a16") && strstr(line, "done in")) final++;
    }
    /* header + one line per computed task + the final line */
    CHECK_MSG(n == 4 && header == 1 && eta == 2 && final == 1, "n %d header %d eta %d final %d", n, header, eta, final);
    fclose(f);

    /* the user's choice: no reason in the header; none silences */
    f = tmpfile();
    setenv("AQ_PROGRESS", "plain", 1);
    aq_progress_init(&p, f, -1, 0, 1, 0, 1.0);
    rewind(f);
    CHECK(fgets(line, sizeof line, f) && !strstr(line, "progress plain:"));
    fclose(f);
    aq_progress_export(AQ_PROGRESS_NONE);
    CHECK(getenv("AQ_PROGRESS") && !strcmp(getenv("AQ_PROGRESS"), "none"));
    aq_progress_init(&p, stderr, -1, 0, 1, 0, 1.0);
    CHECK(p.out == NULL);
    /* an unknown value falls back to auto and says so */
    setenv("AQ_PROGRESS", "fancy", 1);
    char why[200];
    CHECK(aq_progress_resolve(stderr, why, sizeof why) != AQ_PROGRESS_NONE);
    CHECK_MSG(strstr(why, "AQ_PROGRESS=fancy") != NULL, "%s", why);
    unsetenv("AQ_PROGRESS");
}

/* aq_progress_probe reads Open MPI's environment: a singleton (no mpirun)
 * is not "under mpirun"; a rank whose mpirun is not found says so. */
static void test_probe(void)
{
    aq_progress_env e;
    setenv("OMPI_MCA_orte_launch", "1", 1);
    setenv("OMPI_MCA_ess", "singleton", 1); /* what MPI_Init exports without mpirun */
    aq_progress_probe(stderr, &e);
    CHECK(e.orte == 0);
    setenv("OMPI_MCA_ess", "^singleton", 1); /* what mpirun exports */
    setenv("OMPI_MCA_orte_hnp_uri", "1.0;tcp://127.0.0.1:1", 1);
    /* a session directory naming a process that is not mpirun (ourselves) */
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/ompi.x/pid.%ld", (long)getpid());
    setenv("OMPI_MCA_orte_jobfam_session_dir", dir, 1);
    setenv("OMPI_MCA_orte_tag_output", "1", 1);
    aq_progress_probe(stderr, &e);
    CHECK(e.orte == 1 && e.per_rank_output == 1 && e.launcher_found == 0);
    CHECK(aq_progress_auto(&e, NULL, 0) == AQ_PROGRESS_PLAIN);
    unsetenv("OMPI_MCA_orte_tag_output");
    unsetenv("OMPI_MCA_orte_jobfam_session_dir");
    unsetenv("OMPI_MCA_orte_hnp_uri");
    unsetenv("OMPI_MCA_orte_launch");
    unsetenv("OMPI_MCA_ess");
}

int main(void)
{
    test_probe();
    test_auto_rule();
    test_mode_names();
    test_format();
    test_sanitize();
    test_stream();
    AQ_TEST_END();
}
