// `fedsim bench compress`: encode/decode throughput of every scheme against
// memcpy of the same buffer, measured in the same run.
#pragma once

#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

namespace fedsim {
// Prints one line per scheme (all when `only` is empty); returns the exit code.
int run_compress_bench(std::ostream& out, std::size_t n, const std::vector<std::string>& only = {},
                       bool cpu_time = false);
}  // namespace fedsim
