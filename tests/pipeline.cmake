# Pipeline tests (tests/test_pipeline.py): `adaquant quantize` end to end and
# its stage commands on stories260K with reduced settings. pipeline_ref makes
# the single-process reference output the other tests compare with (fixture).
# scripts/test.sh leaves them (label integration) out of its ASan+UBSan pass:
# each runs the whole CLI pipeline many times under mpirun (a minute or more
# each in the normal build on 2 cores), and the sanitizers would multiply that
# beyond the suite's 15-minute budget. The code they drive is covered under the
# sanitizers piece by piece: mpi/pipeline by test_dist_* (under mpirun, label mpi),
# the pipeline's pure parts by test_pipeline_unit, the engine by the unit tests.

# adaquant's own dequantisation of an OUTDIR, for the independent numpy reader,
# is dumped by test_reader_dump (tests/reader.cmake), shared with test_reader.py.

set(pipe_dir ${CMAKE_CURRENT_BINARY_DIR}/pipeline)
set(pipe_py /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_pipeline.py)
# Timeouts: a mode makes 1-5 quantize/stage runs; measured 85-170 s per mode
# (errors: ~10 s) on a 2-core machine at load ~11 (several builds and MPI tests
# at once), ~35 s on an idle one. 900 s leaves a factor > 5 over the loaded
# figure for slower builds (sanitizers); a hung run trips its own RUN_TIMEOUT
# in test_pipeline.py first.
foreach(mode ref ranks resume failure stages sequential)
  aq_script_test(NAME pipeline_${mode} COMMAND ${pipe_py} ${mode} ${pipe_dir} LABELS integration mpi TIMEOUT 900)
endforeach()
aq_script_test(NAME pipeline_errors COMMAND ${pipe_py} errors ${pipe_dir} LABELS integration mpi TIMEOUT 120)
set_tests_properties(pipeline_ref PROPERTIES FIXTURES_SETUP pipeline_ref_out)
set_tests_properties(pipeline_ranks pipeline_resume pipeline_failure pipeline_stages pipeline_sequential
                     PROPERTIES FIXTURES_REQUIRED pipeline_ref_out)

# Pure parts of the pipeline (budget check, statistics files, option menu): unit, ASan-clean.
aq_test(NAME test_pipeline_unit SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_pipeline_unit.c LIBS aq_dist)
# Budgets in file bytes end to end (tests/test_bytes.py): the least feasible
# size named by the error, bytes on disk = the predicted bytes, the quantized
# embedding checked with NumPy, eval --quantized. Three reduced quantize runs;
# integration (runs once).
aq_script_test(NAME pipeline_bytes LABELS integration TIMEOUT 300
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_bytes.py ${CMAKE_CURRENT_BINARY_DIR}/pipeline_bytes)
