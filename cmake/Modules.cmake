# The module targets and the rule that keeps their links pointing down.
#
# imgbake_module(NAME LAYER N [OBJECT] DIR folder [DEPS mod...] [LIBS lib...])
#   A library target imgbake_NAME of the .cpp files in `folder` (main.cpp excepted: it is the
#   binary's), so that splitting a file edits no list. Its public headers live in include/NAME/imgbake/ (PUBLIC
#   include directory, so only targets that link it can include them); everything else in its
#   folder is private. DEPS are other modules; each must sit on a lower LAYER, or configuring
#   fails. So a wrong-way include is a compile error ("imgbake/store.h: No such file or
#   directory"), and a wrong-way link a configure error. The layers are drawn in
#   docs/architecture.md.
#   OBJECT: the component folders (builders, provisioners, post-processors) register themselves
#   from static initialisers, so their objects are linked in whole, not picked from an archive.
set_property(GLOBAL PROPERTY IMGBAKE_MODULES "")

function(imgbake_module name)
  cmake_parse_arguments(M "OBJECT" "LAYER;DIR" "DEPS;LIBS" ${ARGN})
  if(NOT DEFINED M_LAYER)
    message(FATAL_ERROR "imgbake_module(${name}): LAYER is required")
  endif()
  foreach(dep IN LISTS M_DEPS)
    get_property(dep_layer GLOBAL PROPERTY IMGBAKE_LAYER_${dep})
    if("${dep_layer}" STREQUAL "")
      message(FATAL_ERROR "imgbake_module(${name}): module '${dep}' is not defined (define it first)")
    endif()
    if(NOT dep_layer LESS M_LAYER)
      message(FATAL_ERROR "imgbake_module(${name}) on layer ${M_LAYER} may not use '${dep}' (layer "
                          "${dep_layer}): a module uses only modules of lower layers (docs/architecture.md)")
    endif()
  endforeach()
  set_property(GLOBAL PROPERTY IMGBAKE_LAYER_${name} ${M_LAYER})
  set_property(GLOBAL APPEND PROPERTY IMGBAKE_MODULES ${name})

  file(GLOB sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/${M_DIR}/*.cpp)
  list(FILTER sources EXCLUDE REGEX "/main\\.cpp$")
  if(NOT sources)
    message(FATAL_ERROR "imgbake_module(${name}): no .cpp files in ${M_DIR}")
  endif()
  if(M_OBJECT)
    add_library(imgbake_${name} OBJECT ${sources})
  else()
    add_library(imgbake_${name} STATIC ${sources})
  endif()
  set(inc ${PROJECT_SOURCE_DIR}/include/${name})
  if(EXISTS ${inc})
    target_include_directories(imgbake_${name} PUBLIC ${inc})
  endif()
  list(TRANSFORM M_DEPS PREPEND imgbake_ OUTPUT_VARIABLE dep_targets)
  target_link_libraries(imgbake_${name} PUBLIC ${dep_targets} ${M_LIBS})
  imgbake_set_warnings(imgbake_${name})
endfunction()
