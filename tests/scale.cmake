# Issue 13 items 3-4 (owner: scale): the one-block allocation losses against a
# float64 NumPy reference (tests/scripts/block_loss_ref.py on hf_ref.py's block,
# Fisher weights by finite differences) on a tiny synth_model.py checkpoint.
# Python runs (~2 s): integration, once per CI run.
aq_test(NAME test_block_loss SOURCES test_block_loss.c LIBS aq_model LABELS integration TIMEOUT 60)
# Tuning that scales (tests/test_tune_scale.py): block-wise tuning byte-identical
# at P = 1, 2, 4; global tuning at P = 6 > 4 with work on every rank and the
# P = 1 bytes. One tiny capture + calibration, then solve + tune + write only
# (--resume): ~10 s on an idle 2-core machine; integration + mpi (once per CI run).
aq_script_test(NAME tune_scale COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_tune_scale.py
               ${CMAKE_CURRENT_BINARY_DIR}/tune_scale LABELS integration mpi TIMEOUT 600)
# Issue 13 item 1 (owner: stream): the lazily loaded model (aq_model_load_lazy)
# is bit-identical to the eager one (bf16 sharded, f16), holds one block at a
# time, and reports a NaN block when converted. Three synth_model.py runs
# (~1.5 s of Python): integration, once per CI run.
aq_test(NAME test_model_lazy SOURCES test_model_lazy.c LIBS aq_model LABELS integration TIMEOUT 60)
# Issue 13 item 1 (owner: stream): the per-rank memory bound (docs/MEMORY.md):
# --max-rank-memory refuses before any work; the measured peak RSS of each rank
# of a P = 2 quantize of a small synthetic model is within the prediction.
# ~15 s on a quiet 2-core machine: integration + mpi (once per CI run).
aq_script_test(NAME memory_bound COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_memory_bound.py
               ${CMAKE_CURRENT_BINARY_DIR}/memory_bound LABELS integration mpi TIMEOUT 600)
