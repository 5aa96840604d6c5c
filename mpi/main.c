/* main.c — the `adaquant` entry point: dispatches to subcommands (cli.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "../src/blas/blas_kernel.h"
#include "cli.h"

/* Subcommands that exist, one line each (declared in cmd_<name>.c). A command
 * is listed here only once it works. Keep the list NULL-terminated. */
extern const aq_command aq_cmd_inspect;
extern const aq_command aq_cmd_convert;
extern const aq_command aq_cmd_eval;
extern const aq_command aq_cmd_generate;
extern const aq_command aq_cmd_tokenize;
extern const aq_command aq_cmd_layer;
extern const aq_command aq_cmd_allocate;
extern const aq_command aq_cmd_quantize;
extern const aq_command aq_cmd_capture;
extern const aq_command aq_cmd_calibrate;
extern const aq_command aq_cmd_solve;
extern const aq_command aq_cmd_export;
extern const aq_command aq_cmd_plan;
static const aq_command *const commands[] = {
    &aq_cmd_inspect,
    &aq_cmd_convert,
    &aq_cmd_eval,
    &aq_cmd_generate,
    &aq_cmd_tokenize,
    &aq_cmd_layer,
    &aq_cmd_allocate,
    &aq_cmd_quantize,
    &aq_cmd_capture,
    &aq_cmd_calibrate,
    &aq_cmd_solve,
    &aq_cmd_export,
    &aq_cmd_plan,
    NULL,
};

int aq_cli_fail(const char *cmd, const aq_error *err)
{
    fprintf(stderr, "adaquant %s: error: %s\n", cmd, err->msg[0] ? err->msg : aq_status_name(err->code));
    return 1;
}

int aq_cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "adaquant %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'adaquant %s --help'.\n", cmd);
    return 2;
}

int aq_cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
    }
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out, "adaquant — distributed post-training quantization (AdaQuant + integer programming)\n\n"
                 "usage: adaquant COMMAND [options]     (under mpirun/srun for distributed commands)\n\n"
                 "commands:\n");
    for (size_t i = 0; commands[i]; i++)
        fprintf(out, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(out, "\n'adaquant COMMAND --help' describes one command. 'adaquant --version' prints the version.\n");
}

/* Rank 0 of the launch, or not launched by mpirun/srun: the process that logs
 * start-up facts once. Read from the launcher's environment because the BLAS
 * kernel is chosen before MPI_Init, and for commands that never call it.
 * mpirun's variable comes first: inside a Slurm job every rank it starts
 * inherits the batch step's SLURM_PROCID=0. */
static int launch_rank0(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return atoi(v) == 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        if (argc >= 3 && !strcmp(argv[1], "help")) {
            for (size_t i = 0; commands[i]; i++)
                if (!strcmp(argv[2], commands[i]->name)) {
                    commands[i]->help(stdout);
                    return 0;
                }
        }
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    /* Before anything can call BLAS (BLIS fixes its kernel at its first use)
     * and before MPI_Init (the choice forks a child). */
    char blas_log[256];
    aq_blas_kernel_select(blas_log, sizeof blas_log);
    if (!strcmp(argv[1], "--version")) {
        char blas[160];
        aq_blas_kernel_describe(blas, sizeof blas);
        printf("adaquant 0.1.0\n%s\n", blas);
        return 0;
    }
    for (size_t i = 0; commands[i]; i++) {
        const aq_command *c = commands[i];
        if (strcmp(argv[1], c->name) != 0) continue;
        if (aq_cli_wants_help(argc - 1, argv + 1)) {
            c->help(stdout);
            return 0;
        }
        if (blas_log[0] && launch_rank0()) fprintf(stderr, "adaquant: %s\n", blas_log);
        if (!c->needs_mpi) return c->run(argc - 1, argv + 1);
        /* FUNNELED: the capture's statistics writer thread makes no MPI call
         * (mpi/pipeline/stage_capture.c); only this thread does */
        int provided;
        MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
        int rc = c->run(argc - 1, argv + 1);
        if (rc != 0) MPI_Abort(MPI_COMM_WORLD, rc);
        MPI_Finalize();
        return rc;
    }
    fprintf(stderr, "adaquant: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
