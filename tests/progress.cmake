# Progress display (mpi/pipeline/progress.c, issue 12 item 5): the auto rule and
# the line formats as a unit test, and the batch log of a real
# `mpirun -np 2 adaquant quantize ... > log 2>&1` run.
aq_test(NAME test_progress SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_progress.c
        ${CMAKE_SOURCE_DIR}/mpi/pipeline/progress.c LABELS unit TIMEOUT 30)

# One quantize run of stories260K at -np 2 with test_pipeline.py's reduced
# settings (about 15 s on an idle 2-core machine, 35 s with five other jobs
# on it) and three resumed runs of a few seconds each (all tasks reused):
# 300 s leaves room for a loaded machine and ASan.
aq_script_test(NAME progress_log LABELS integration mpi TIMEOUT 300
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_progress_log.py ${CMAKE_CURRENT_BINARY_DIR}/progress_log)
