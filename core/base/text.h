// Small text helpers for the CSV inputs fedsim reads (traces).
#pragma once

#include <cmath>
#include <sstream>
#include <string>

namespace fedsim {

// `s` without leading and trailing spaces, tabs and carriage returns.
inline std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

// Whether the whole of `cell` (trimmed) is one finite number; it goes to `out`.
inline bool parse_finite(const std::string& cell, double& out) {
  const std::string t = trim(cell);
  if (t.empty()) return false;
  std::istringstream in(t);
  in >> out;
  return in && in.peek() == std::char_traits<char>::eof() && std::isfinite(out);
}

}  // namespace fedsim
