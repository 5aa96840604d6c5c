# `adaquant plan` (mpi/pipeline/plan.h): task list and FLOPs of Llama-2-7B by hand,
# the memory formula against the engine, the schedule against brute force,
# the rate cache, bad input. tests/configs holds the public config.json
# values of Llama-2-7B/70B and Llama-3.1-405B (our own files of public numbers).
aq_test(NAME test_plan SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_plan.c LIBS aq_dist LABELS unit
        ARGS ${CMAKE_CURRENT_SOURCE_DIR}/configs ASSETS models/stories260K/stories260K.bin)
# The CLI on the three public configs (task counts by hand, JSON, bad input):
# 6 plan runs of well under a second each.
aq_script_test(NAME test_plan_cli LABELS unit TIMEOUT 120
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/plan_cli.py $<TARGET_FILE:adaquant_cli> ${CMAKE_CURRENT_SOURCE_DIR}/configs)
