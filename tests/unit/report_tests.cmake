# Unit tests of gilscope::report (no Python needed). Included from
# tests/unit/CMakeLists.txt; paths are relative to this file so the include
# works from any directory.

include(GoogleTest)

add_executable(report_tests
  ${CMAKE_CURRENT_LIST_DIR}/report_analysis_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/report_attribution_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/report_findings_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/report_html_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/report_phases_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/report_streaming_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/reference_analysis.cc
  ${CMAKE_CURRENT_LIST_DIR}/report_writers_test.cc
)
target_include_directories(report_tests PRIVATE ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(report_tests PRIVATE gilscope::report GTest::gtest_main)
target_compile_definitions(report_tests PRIVATE GILSCOPE_GOLDEN_DIR="${PROJECT_SOURCE_DIR}/tests/golden")
gtest_discover_tests(report_tests)
