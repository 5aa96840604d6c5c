# fuzz.cmake — libFuzzer harnesses, built only with -DAQ_FUZZ=ON and clang
# (CC=clang cmake -S . -B build-fuzz -DAQ_FUZZ=ON).
#
# Every tests/fuzz/fuzz_<name>.c becomes an executable fuzz_<name> and a ctest
# of the same name (label `fuzz`) that runs it for AQ_FUZZ_SECONDS on a seed
# corpus: the files in tests/fuzz/seeds/fuzz_<name>/ if that folder exists,
# plus those written by the program named in AQ_FUZZ_SEEDGEN_fuzz_<name> (set
# below) if any. A harness defines LLVMFuzzerTestOneInput and may use any of
# io/ (linked as aq_io_fuzz, a copy of aq_io instrumented for coverage); the
# fuzz_hftok_* and fuzz_datasrc harnesses also get src/text/ (aq_text_fuzz, likewise).
if(AQ_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "AQ_FUZZ=ON needs clang: CC=clang cmake -DAQ_FUZZ=ON ...")
  endif()
  set(AQ_FUZZ_SECONDS 45 CACHE STRING "Seconds each fuzz test runs (ctest -L fuzz)")
  set(aq_fuzz_san -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)

  # aq_io again, compiled with coverage instrumentation so libFuzzer sees inside the parsers.
  get_target_property(io_srcs aq_io_obj SOURCES)
  get_target_property(io_libs aq_io_obj LINK_LIBRARIES)
  get_target_property(io_incs aq_io_obj INCLUDE_DIRECTORIES)
  add_library(aq_io_fuzz STATIC ${io_srcs})
  target_link_libraries(aq_io_fuzz PUBLIC ${io_libs})
  if(io_incs)
    target_include_directories(aq_io_fuzz PRIVATE ${io_incs})
  endif()
  target_compile_options(aq_io_fuzz PRIVATE -fsanitize=fuzzer-no-link ${aq_fuzz_san})
  # io's generated ONNX protobuf code (top-level CMakeLists.txt): made there, warnings off here too.
  add_dependencies(aq_io_fuzz aq_onnx_pb)
  set_source_files_properties(${AQ_ONNX_PB_C} PROPERTIES COMPILE_OPTIONS "-w")

  # aq_text again, instrumented, for the tokenizer.json harnesses (fuzz_hftok_*).
  get_target_property(text_srcs aq_text_obj SOURCES)
  add_library(aq_text_fuzz STATIC ${text_srcs})
  target_link_libraries(aq_text_fuzz PUBLIC aq_io_fuzz PkgConfig::JANSSON PkgConfig::PCRE2 PkgConfig::UTF8PROC)
  target_compile_options(aq_text_fuzz PRIVATE -fsanitize=fuzzer-no-link ${aq_fuzz_san})

  set(AQ_FUZZ_SEEDGEN_fuzz_safetensors $<TARGET_FILE:aq_gen_malformed>)
  # Shorter runs for the tokenizer.json harnesses (CI time is budgeted): 20 s
  # reach most of the edges a 120 s run reaches (measured 2026-12-07); CI runs
  # every harness for 15 s (scripts/test.sh); run them longer by hand after
  # changing src/text/hf_*.c.
  set(AQ_FUZZ_SECONDS_fuzz_hftok_json 20)
  set(AQ_FUZZ_SECONDS_fuzz_hftok_encode 20)
  # The data-source readers (JSONL, .tok, text): small parsers over jansson;
  # 15 s (the JSONL path's edges are mostly jansson's, fuzzed upstream).
  set(AQ_FUZZ_SECONDS_fuzz_datasrc 15)
  # The GGUF reader: 15 s reach 405 of the 411 edges a 60 s run reaches (measured 2026-12-07).
  set(AQ_FUZZ_SECONDS_fuzz_gguf 15)
  # The ONNX reader (protobuf-c's generated unpacking + io/onnx_*.c) and the idx reader: 15 s each
  # (the issue-17 budget); seeds are small models and idx files written by tests/scripts/onnx_pb.py / struct.
  set(AQ_FUZZ_SECONDS_fuzz_onnx 15)
  set(AQ_FUZZ_SECONDS_fuzz_idx 15)

  # `aq_fuzzers` builds every harness and its seed generator (scripts/test.sh
  # builds it and the CLI only: the tests and benchmarks are compiled by gcc
  # with -Werror in the other passes).
  add_custom_target(aq_fuzzers)
  add_dependencies(aq_fuzzers aq_gen_malformed)
  file(GLOB aq_fuzzers CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_*.c)
  foreach(src ${aq_fuzzers})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src})
    add_dependencies(aq_fuzzers ${name})
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer ${aq_fuzz_san})
    target_link_options(${name} PRIVATE -fsanitize=fuzzer ${aq_fuzz_san})
    target_link_libraries(${name} PRIVATE aq_io_fuzz)
    if(name MATCHES "^fuzz_(hftok_|datasrc)")
      target_link_libraries(${name} PRIVATE aq_text_fuzz)
    endif()
    set(secs ${AQ_FUZZ_SECONDS})
    if(DEFINED AQ_FUZZ_SECONDS_${name} AND AQ_FUZZ_SECONDS_${name} LESS secs)
      set(secs ${AQ_FUZZ_SECONDS_${name}})
    endif()
    add_test(NAME ${name}
      COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/run_fuzzer.sh $<TARGET_FILE:${name}> ${secs}
              ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/seeds/${name} "${AQ_FUZZ_SEEDGEN_${name}}")
    set_tests_properties(${name} PROPERTIES LABELS fuzz TIMEOUT 300
      ENVIRONMENT "AQ_SHARED_DIR=${AQ_SHARED_DIR};AQ_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
  endforeach()
endif()
