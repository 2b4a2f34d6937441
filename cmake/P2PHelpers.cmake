# p2p_add_library(name SOURCES ... [DEPS ...] [PRIVATE_DEPS ...]): one library per top-level folder;
# includes are rooted at the project root ("ml/model.h").
# DEPS are PUBLIC: what the library's own headers expose (our libraries, and a third-party library
# only when a public header includes it). PRIVATE_DEPS are implementation details (rabbitmq-c,
# OpenSSL, ...): users of the library link them but do not compile against them.
# Every library's folder and the p2p_* libraries it links are recorded for the layering check
# (p2p_write_layering_map; scripts/check-layering.sh): a folder may include only what it links.
function(p2p_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  file(RELATIVE_PATH folder ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
  set(ours "")
  foreach(dep IN LISTS ARG_DEPS ARG_PRIVATE_DEPS)
    if(dep MATCHES "^p2p_")
      list(APPEND ours ${dep})
    endif()
  endforeach()
  string(JOIN " " line ${folder} ${name} ${ours})
  set_property(GLOBAL APPEND PROPERTY P2P_LAYERING_LINES "${line}")
endfunction()

# Writes <build>/layering.txt: one line per library, "folder library linked-p2p-libraries...".
function(p2p_write_layering_map)
  get_property(lines GLOBAL PROPERTY P2P_LAYERING_LINES)
  string(JOIN "\n" text ${lines})
  file(WRITE ${PROJECT_BINARY_DIR}/layering.txt "${text}\n")
endfunction()

# p2p_add_test(name SOURCES ... DEPS ... [LABELS ...] [TIMEOUT s]): one gtest executable, its
# tests registered individually with CTest.
function(p2p_add_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main GTest::gmock)
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  gtest_discover_tests(${name}
    PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT}
    ENVIRONMENT "P2PTRAIN_BIN=$<TARGET_FILE:p2ptrain>;P2P_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
    DISCOVERY_TIMEOUT 60)
endfunction()
