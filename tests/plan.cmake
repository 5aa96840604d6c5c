# `adaquant plan` (mpi/dist/plan.h): task list and FLOPs of Llama-2-7B by hand,
# the memory formula against the engine, the schedule against brute force,
# the rate cache, bad input. tests/configs holds the public config.json
# values of Llama-2-7B/70B and Llama-3.1-405B (our own files of public numbers).
aq_test(NAME test_plan SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_plan.c LIBS aq_dist LABELS unit
        ARGS ${CMAKE_CURRENT_SOURCE_DIR}/configs ASSETS models/stories260K/stories260K.bin)
