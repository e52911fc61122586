# Unit tests of events.raw (RawWriter, ReadRawFile, RawFileSource) and of
# DiffWriter (no Python needed). Included from tests/unit/CMakeLists.txt;
# paths are relative to this file so the include works from any directory.

include(GoogleTest)

add_executable(raw_tests
  ${CMAKE_CURRENT_LIST_DIR}/raw_file_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/diff_writer_test.cc
)
target_include_directories(raw_tests PRIVATE ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(raw_tests PRIVATE gilscope::report GTest::gmock GTest::gtest_main)
target_compile_definitions(raw_tests PRIVATE GILSCOPE_GOLDEN_DIR="${PROJECT_SOURCE_DIR}/tests/golden")
gtest_discover_tests(raw_tests)

# RawFileSource, in a binary of its own: it replaces operator new to count
# what the source allocates.
add_executable(raw_source_tests ${CMAKE_CURRENT_LIST_DIR}/raw_file_source_test.cc)
target_include_directories(raw_source_tests PRIVATE ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(raw_source_tests PRIVATE gilscope::report GTest::gtest_main)
gtest_discover_tests(raw_source_tests)

# A measuring tool, not a test: RawFileSource's read rate over a file.
add_executable(raw_source_scan ${CMAKE_CURRENT_LIST_DIR}/raw_source_scan.cc)
target_link_libraries(raw_source_scan PRIVATE gilscope::report)
