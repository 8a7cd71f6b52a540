# IMGBAKE_SANITIZE=ON builds everything with AddressSanitizer and UndefinedBehaviorSanitizer.
option(IMGBAKE_SANITIZE "Build with ASan+UBSan" OFF)
if(IMGBAKE_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined)
endif()
