# Unit tests of events.raw (RawWriter, ReadRawFile) and of DiffWriter (no
# Python needed). Included from tests/unit/CMakeLists.txt; paths are relative
# to this file so the include works from any directory.

include(GoogleTest)

add_executable(raw_tests
  ${CMAKE_CURRENT_LIST_DIR}/raw_file_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/diff_writer_test.cc
)
target_include_directories(raw_tests PRIVATE ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(raw_tests PRIVATE gilscope::report GTest::gtest_main)
target_compile_definitions(raw_tests PRIVATE GILSCOPE_GOLDEN_DIR="${PROJECT_SOURCE_DIR}/tests/golden")
gtest_discover_tests(raw_tests)
