# The allocation report's plots (solver/svg.c, issue 12 item 7): the tick
# chooser and the layer grid as a unit test that also writes sample plots,
# and test_svg.py, which parses those plots as XML and checks their geometry
# (legend outside the data, round tick labels, one heat-map cell per layer).
aq_test(NAME test_svg SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_svg.c LIBS aq_solver LABELS unit TIMEOUT 60)
# Runs test_svg once more into its own directory, then parses: a few seconds.
aq_script_test(NAME svg_plots LABELS unit TIMEOUT 60
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_svg.py $<TARGET_FILE:test_svg> ${CMAKE_CURRENT_BINARY_DIR}/svg_plots)
