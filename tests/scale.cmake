# Issue 13 items 3-4 (owner: scale): the one-block allocation losses against a
# float64 NumPy reference (tests/scripts/block_loss_ref.py on hf_ref.py's block,
# Fisher weights by finite differences) on a tiny synth_model.py checkpoint.
# Python runs (~2 s): integration, once per CI run.
aq_test(NAME test_block_loss SOURCES test_block_loss.c LIBS aq_model LABELS integration TIMEOUT 60)
