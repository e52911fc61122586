// Small text helpers every writer shares: printf-style formatting, UTF-8
// validation, and making user-controlled strings safe for a terminal cell.
// Pure functions; no state.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace gilscope::report {

// printf into a std::string, any length.
std::string Format(const char* format, ...) __attribute__((format(printf, 1, 2)));

// Length of the valid UTF-8 sequence at s[i] (1 for ASCII), or 0 when it is
// not one. RFC 3629: no overlong forms, surrogates or code points above
// U+10FFFF; the same rule as nlohmann::json, which refuses anything else.
std::size_t Utf8SequenceLength(std::string_view s, std::size_t i);
bool IsValidUtf8(std::string_view s);

// Valid UTF-8 with no control characters (C0, DEL, C1), each bad byte or
// control replaced by '?': safe to print in one table cell.
std::string Sanitize(std::string_view s);

// Code points in a UTF-8 string: columns align on code points (right for
// CJK and emoji would need wcwidth tables; a slightly ragged row is accepted).
std::size_t DisplayWidth(std::string_view utf8);

// `arg` sanitised and quoted as a shell word when it needs quoting.
std::string ShellWord(const std::string& arg);

}  // namespace gilscope::report
