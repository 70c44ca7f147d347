// `fedsim bench server`: throughput of the event loop with many clients.
#pragma once

#include <cstddef>
#include <ostream>

namespace fedsim {

struct ServerBenchSettings {
  std::size_t clients = 10000;
  std::size_t per_round = 10000;
  std::size_t rounds = 5;
};

// Runs a synthetic many-client scenario on one thread (so that the split
// between model math and everything else is exact) and prints rounds per
// second, the share of run time in model math, and the per-round overhead.
int run_server_bench(std::ostream& out, const ServerBenchSettings& settings);

}  // namespace fedsim
