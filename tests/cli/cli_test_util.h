// Helpers shared by the whole-process tests: run build/gilscope, read JSON.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

namespace gilscope::testing {

struct Result {
  int status = -1;
  std::string output;  // stdout and stderr together
};

// Runs `command` with /bin/sh; stdout and stderr together.
inline Result Shell(const std::string& command) {
  const std::string cmd = "{ " + command + "\n} 2>&1";
  Result r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int raw = pclose(p);
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  return r;
}

inline Result Gilscope(const std::string& args) { return Shell(std::string(GILSCOPE_EXE) + " " + args); }

// `text` quoted for /bin/sh.
inline std::string Quoted(const std::string& text) {
  std::string q = "'";
  for (char c : text) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

inline std::string Workload(const std::string& name) {
  return std::string(GILSCOPE_SOURCE_DIR) + "/scripts/workloads/" + name;
}

inline std::filesystem::path OutDir(const std::string& name) {
  std::filesystem::path d = std::filesystem::path(GILSCOPE_TEST_OUT) / name;
  std::filesystem::remove_all(d);
  return d;
}

// Writes `body` (any bytes) to dir/name, creating dir; returns the path.
inline std::filesystem::path Script(const std::filesystem::path& dir, const std::string& name,
                                    const std::string& body) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << body;
  return dir / name;
}

inline std::string ReadText(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline nlohmann::json ReadJson(const std::filesystem::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

// Every GIL of a report changed hands exactly as often as CPython's own
// switch counter says, where CPython's count is known: a GIL whose process
// was killed (a pool's terminate() sends its workers SIGTERM) never read it
// at the end (null). The run's main GIL always closes.
inline void ExpectSwitchesMatchCpython(const nlohmann::json& rep) {
  int compared = 0;
  for (const nlohmann::json& g : rep["gils"]) {
    if (g["cpython_switches"].is_null()) continue;
    EXPECT_EQ(g["switches"], g["cpython_switches"]) << g.dump();
    ++compared;
  }
  EXPECT_GE(compared, 1) << "no GIL with CPython's own count: " << rep["gils"].dump();
}

}  // namespace gilscope::testing
