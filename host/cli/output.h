// Writing output files whole or not at all.
//
// WriteFileAtomically() renders into `path.tmp` and renames it over `path`,
// so a reader (or a crash) never sees half a report.
#pragma once

#include <filesystem>
#include <functional>
#include <ostream>
#include <stdexcept>

namespace gilscope::cli {

// The output folder cannot be created or written: exit 2.
class OutputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Creates `dir` (and parents). Throws OutputError naming it.
void EnsureFolder(const std::filesystem::path& dir);

// Calls render(stream) into a temporary file beside `path`, then renames it.
// Throws OutputError when the file cannot be written.
void WriteFileAtomically(const std::filesystem::path& path,
                         const std::function<void(std::ostream&)>& render);

}  // namespace gilscope::cli
