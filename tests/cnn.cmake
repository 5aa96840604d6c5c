# The CNN engine (src/cnn, issue 17): every operator against float64 NumPy
# references written by tests/scripts/cnn_ref.py (one Python run), small
# networks batched vs one image at a time, bad graphs, and the evaluation
# helpers on a graph with a known answer.
aq_test(NAME test_cnn SOURCES test_cnn.c test_cnn_bad.c test_cnn_build.c LIBS aq_cnn aq_adaquant TIMEOUT 60)
