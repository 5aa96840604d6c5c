# Transformer engine benchmark (forward, decode, capture, memory) on stories260K.
aq_bench(NAME bench_model SOURCES bench_model.c LIBS aq_model)
aq_bench(NAME bench_model_grad SOURCES bench_model_grad.c LIBS aq_model aq_text)
