# IMGBAKE_FUZZ=ON: a build of the libFuzzer targets in tests/fuzz only (docs/testing.md,
# "Fuzzing"), with clang (libFuzzer is clang's): every module it compiles gets libFuzzer's
# coverage instrumentation and ASan+UBSan, and the modules the targets do not read are skipped.
#   CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DIMGBAKE_FUZZ=ON
option(IMGBAKE_FUZZ "Build only the libFuzzer targets (tests/fuzz; needs clang)" OFF)
if(IMGBAKE_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "IMGBAKE_FUZZ=ON needs clang (libFuzzer): configure with -DCMAKE_CXX_COMPILER=clang++")
  endif()
  if(IMGBAKE_SANITIZE)
    message(FATAL_ERROR "IMGBAKE_FUZZ=ON brings its own sanitizers: leave IMGBAKE_SANITIZE off")
  endif()
  # -O1 (libFuzzer's usual choice) runs several times the inputs a second that -O0 does; -O0
  # compiles in half the time, which is what CI's short round wants (tools/fuzz.sh --opt -O0).
  # Line tables are enough for the stack traces of a report, and cheaper to compile than -g.
  set(IMGBAKE_FUZZ_OPT "-O1" CACHE STRING "Optimisation of the fuzzing build (-O1 or -O0)")
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=all ${IMGBAKE_FUZZ_OPT} -gline-tables-only)
  add_link_options(-fsanitize=address,undefined)
endif()
