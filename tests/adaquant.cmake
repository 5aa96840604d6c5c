# AdaQuant layer optimizer tests (owner: adaq).
aq_test(NAME test_adaquant SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_adaquant.c LIBS aq_adaquant LABELS unit)
aq_test(NAME test_adaquant_qlayer SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_adaquant_qlayer.c LIBS aq_adaquant LABELS unit)
aq_test(NAME test_conv SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_conv.c LIBS aq_adaquant LABELS unit)
# The CLI end to end, checked by an independent numpy dequantisation of --out.
aq_script_test(NAME test_adaquant_cli COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_adaquant_cli.py
               LABELS integration TIMEOUT 300)
