// gguf_pplmain.cpp — bench/gguf.sh's main() for llama-perplexity, in place of
// tools/perplexity/main.cpp: the same call, then common_log_flush. llama.cpp
// leaks its asynchronous logger on purpose (common/log.cpp, its issue 22142),
// so lines still queued when main returns are lost: short runs lost their
// whole summary ("Mean KLD") here. Flushing before returning keeps them.
#include "log.h"

int llama_perplexity(int argc, char ** argv);

int main(int argc, char ** argv) {
    const int rc = llama_perplexity(argc, argv);
    common_log_flush(common_log_main());
    return rc;
}
