# Unit tests of `gilscope list` / `gilscope suite` (cli/suite.h). No Python
# runs: RunSuite is driven against a fake gilscope the test writes. Included
# from tests/unit/CMakeLists.txt; paths are relative to this file so the
# include works from any directory.

include(GoogleTest)

add_executable(suite_tests ${CMAKE_CURRENT_LIST_DIR}/suite_test.cc)
# gilscope_figure_invariants: tests/figures (the index's figures are checked too).
target_link_libraries(suite_tests PRIVATE gilscope::cli gilscope_figure_invariants GTest::gtest_main)
target_compile_definitions(suite_tests PRIVATE
  GILSCOPE_GOLDEN_DIR="${PROJECT_SOURCE_DIR}/tests/golden"
  GILSCOPE_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
gtest_discover_tests(suite_tests)
