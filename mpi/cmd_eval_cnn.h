/* cmd_eval_cnn.h — `adaquant eval MODEL.onnx`: the CNN branch of the eval
 * command (cmd_eval.c hands over when the model is an .onnx file). */
#ifndef AQ_CMD_EVAL_CNN_H
#define AQ_CMD_EVAL_CNN_H

#include <stdio.h>

/* Whether argv names an .onnx model (any argument ending in ".onnx"). */
int aq_eval_is_onnx(int argc, char **argv);
/* The command itself (argv as aq_command.run gets it); the exit status. */
int aq_eval_cnn_main(int argc, char **argv);
/* --eval-range "A:B" (0 <= A < B) into *from, *to; -1 if malformed. */
int aq_cnn_parse_range(const char *s, long *from, long *to);
/* Its part of `adaquant eval --help`. */
void aq_eval_cnn_help(FILE *out);

#endif
