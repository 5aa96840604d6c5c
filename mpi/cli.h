/* cli.h — the adaquant command line: one entry point, subcommands in cmd_<name>.c.
 *
 * A subcommand file defines `const aq_command aq_cmd_<name>` and is listed in
 * the table in main.c. run() gets argv with argv[0] = the subcommand name,
 * parses its options with getopt_long, and returns the process exit code:
 * 0 success, 1 failure (message already on stderr via aq_cli_fail), 2 usage. */
#ifndef AQ_CLI_H
#define AQ_CLI_H

#include <stdio.h>

#include "../common/status.h"

typedef struct aq_command {
    const char *name;
    const char *summary;         /* one line for `adaquant --help` */
    int (*run)(int argc, char **argv);
    void (*help)(FILE *out);     /* full text for `adaquant NAME --help` */
    int needs_mpi;               /* MPI_Init before run, MPI_Finalize after */
} aq_command;

/* Print "adaquant <cmd>: error: <msg>" to stderr; returns 1. */
int aq_cli_fail(const char *cmd, const aq_error *err);
/* Print "adaquant <cmd>: <formatted usage problem>" and a --help hint; returns 2. */
int aq_cli_usage(const char *cmd, const char *fmt, ...) AQ_PRINTF(2, 3);
/* True if argv contains -h or --help (checked before getopt). */
int aq_cli_wants_help(int argc, char **argv);

#endif
