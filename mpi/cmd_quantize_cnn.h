/* cmd_quantize_cnn.h — `adaquant quantize MODEL.onnx`: the CNN branch of the
 * quantize command (cmd_quantize.c hands over when an argument ends in .onnx). */
#ifndef AQ_CMD_QUANTIZE_CNN_H
#define AQ_CMD_QUANTIZE_CNN_H

#include <stdio.h>

/* The command (argv as aq_command.run gets it, MPI initialised); the exit status. */
int aq_quantize_cnn_main(int argc, char **argv);
/* Its part of `adaquant quantize --help`. */
void aq_quantize_cnn_help(FILE *out);

#endif
