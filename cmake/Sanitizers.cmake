# IMGBAKE_SANITIZE=ON builds everything with AddressSanitizer and UndefinedBehaviorSanitizer.
option(IMGBAKE_SANITIZE "Build with ASan+UBSan" OFF)
if(IMGBAKE_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
  # Executables are linked without PIE: the sanitizers' per-check data makes a position-independent
  # imgbake carry 5.2 million relative relocations (126 MB) that the dynamic loader applies at every
  # start — 1.3 s of CPU per `imgbake version`, 0.55 s without PIE (measured on the CI machine), and
  # the end-to-end suites start imgbake thousands of times. The objects are the same (-fPIE).
  add_link_options(-fsanitize=address,undefined -no-pie)
endif()
