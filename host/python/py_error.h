// Python errors as C++ exceptions at the host's boundary with the C API.
//
// ThrowIfError() turns a pending Python exception into a PyError carrying
// "TypeName: message", clearing the Python error indicator.
// PRECONDITION: the GIL is held.
#pragma once

#include <stdexcept>
#include <string>

namespace gilscope::python {

class PyError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws PyError(context + ": " + the pending exception) if one is pending.
void ThrowIfError(const std::string& context);
// Fetches and clears the pending exception as "TypeName: message" ("" if none).
std::string FetchErrorText();

}  // namespace gilscope::python
