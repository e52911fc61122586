#include "cli/output.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <system_error>

namespace gilscope::cli {

void EnsureFolder(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir)) {
    throw OutputError("cannot create output folder '" + dir.string() + "': " +
                      (ec ? ec.message() : "not a folder"));
  }
  // Writable? Found out now, before the run, not after it.
  const std::filesystem::path probe = dir / ".gilscope-write-probe";
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    throw OutputError("cannot write into output folder '" + dir.string() + "': " + std::strerror(errno));
  }
  ::close(fd);
  ::unlink(probe.c_str());
}

void WriteFileAtomically(const std::filesystem::path& path,
                         const std::function<void(std::ostream&)>& render) {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      throw OutputError("cannot write '" + tmp.string() + "': " + std::strerror(errno));
    }
    render(out);
    out.flush();
    if (!out) {
      std::filesystem::remove(tmp);
      throw OutputError("cannot write '" + path.string() + "': write failed");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    throw OutputError("cannot write '" + path.string() + "': " + ec.message());
  }
}

}  // namespace gilscope::cli
