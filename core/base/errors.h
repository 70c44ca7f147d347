// Error types of fedsim. Input from outside (scenario files, the command line,
// bytes on the wire) is untrusted: problems with it are reported with these
// exceptions and caught in main (exit code 2). Programmer errors are asserts.
#pragma once

#include <stdexcept>
#include <string>

namespace fedsim {

// A problem with user input: a scenario file, a --set override, a data file.
// The message already says where (file:line), which key, what was expected and
// what was found.
class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A malformed message or payload: truncated, oversized, inconsistent lengths,
// values out of range. Decoders throw it instead of trusting the bytes.
class DecodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace fedsim
