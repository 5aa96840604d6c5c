# gguf.cmake — tests of the GGUF container (io/gguf*.c).
#   test_gguf  unit: known bytes from the spec, round trips, every truncation,
#              corrupted fields, atomic write failures (unwritable path, full disk).
#   gguf_ref   integration: a file from our writer read by @huggingface/gguf
#              (npm, installed by the npm_refs fixture of tests/hftok.cmake).
aq_test(NAME test_gguf SOURCES test_gguf.c LIBS aq_io)
