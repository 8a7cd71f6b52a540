# -Wall -Wextra everywhere; -Werror when IMGBAKE_WERROR is on (CI turns it on).
option(IMGBAKE_WERROR "Treat warnings as errors" OFF)
function(imgbake_set_warnings target)
  # -Wshadow=local is GCC's (the fuzzing build uses clang).
  target_compile_options(${target} PRIVATE -Wall -Wextra $<$<CXX_COMPILER_ID:GNU>:-Wshadow=local> -Wnon-virtual-dtor)
  if(IMGBAKE_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
