# Included by the top-level CMakeLists.txt before any library when P2P_FUZZ is ON: every library
# of this build is compiled with libFuzzer's coverage instrumentation and ASan/UBSan, so the fuzz
# targets in this folder see (and check) the real decoders. Needs clang (Debian's clang 14 works);
# scripts/fuzz.sh configures such a build in its own directory (build-fuzz).
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "P2P_FUZZ needs clang (libFuzzer), not ${CMAKE_CXX_COMPILER_ID}: "
                      "configure with -DCMAKE_CXX_COMPILER=clang++ (scripts/fuzz.sh does)")
endif()
# UBSan findings abort instead of printing and going on, so libFuzzer records them as crashes.
set(P2P_FUZZ_SANITIZERS -fsanitize=address,undefined -fno-sanitize-recover=all
                        -fno-omit-frame-pointer)
add_compile_options(-fsanitize=fuzzer-no-link ${P2P_FUZZ_SANITIZERS})
add_link_options(${P2P_FUZZ_SANITIZERS})
