/* pipeline_cli.c — see pipeline_cli.h. */
#include "pipeline_cli.h"

#include <stdlib.h>

#include "cli.h"
#include "export_gguf.h"
#include "pipeline/pipeline_size.h"

int aq_pipe_cli_run(const char *cmd, unsigned mask, aq_pipe_stage_fn stage, int argc, char **argv)
{
    aq_pipe_args *a = calloc(1, sizeof *a); /* large (paths): not on the stack */
    if (!a) return 1;
    if (mask & AQ_ARGS_GGUF) /* --out-format gguf: the pipeline sizes and writes OUTDIR/model.gguf with the exporter (pipeline_size.h) */
        aq_pipe_gguf_hooks = (aq_pipe_gguf_io){aq_export_gguf_size, aq_export_gguf_files};
    int rc = aq_pipe_args_parse(cmd, mask, argc, argv, a);
    /* every stage resolves the display from AQ_PROGRESS (mpi/pipeline/progress.h) */
    if (rc == 0 && a->progress_given) aq_progress_export(a->progress);
    if (rc == 0) {
        aq_error err = {0};
        int rank;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        if (stage(MPI_COMM_WORLD, a, &err) != AQ_OK) rc = rank == 0 ? aq_cli_fail(cmd, &err) : 1;
    }
    free(a);
    if (rc != 0) {
        MPI_Finalize();
        exit(rc);
    }
    return 0;
}
