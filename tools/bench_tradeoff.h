// `fedsim bench tradeoff`: every quantizer over a range of its settings, the
// measured normalized distortion E||C(v) - v||^2 / ||v||^2 against the
// measured bits per coordinate, on a synthetic source (i.i.d. Gaussian or
// Laplace, unit variance) or on real client updates of a scenario; a table,
// a CSV and a distortion-rate plot (tools/plot_tradeoff.py) with the Shannon
// curve D(R) = 2^(-2R) (the exact limit for the Gaussian source, a reference
// for the others), the Shannon lower bound of the Laplace source, and QSGD's
// variance bound.
#pragma once

#include <cstddef>
#include <ostream>
#include <string>

namespace fedsim {

struct TradeoffSettings {
  std::string source = "gaussian";  // gaussian | laplace | updates:SCENARIO
  std::size_t n = 1 << 16;          // coordinates per synthetic vector
  std::size_t vectors = 8;          // synthetic vectors (a sequence, for stages with memory of the last one)
  std::size_t rounds = 30;          // updates: FedPAQ rounds simulated to capture them
  std::string out_dir;              // CSV and plot; empty = out/tradeoff/<source>
  bool plot = true;
};

// Prints the table; writes tradeoff.csv (and tradeoff.png) to the folder.
// Returns the exit code.
int run_tradeoff_bench(std::ostream& out, const TradeoffSettings& settings);

}  // namespace fedsim
