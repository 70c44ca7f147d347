// `fedsim calibrate [--out profile.yaml]`: this machine's multiply-adds per
// second at each precision with the packed kernels (tools/bench_kernels.h:
// least-squares SGD epochs on Fashion-MNIST, MACs counted as the device model
// bills them), written as a device profile for a scenario's `profiles:` map.
// Joules per MAC come from the RAPL package energy counters
// (/sys/class/powercap/intel-rapl:N/energy_uj, N a package, summed) over the
// same runs when they are readable; otherwise they and idle_w are written as
// `unknown`, which a scenario refuses (InputError naming the key) until the
// user fills them in: never a silent zero.
#pragma once

#include <optional>
#include <ostream>
#include <string>

namespace fedsim {

struct CalibrateSettings {
  std::string out;                    // file to write; empty: print the profile
  std::string name = "calibrated";    // the profile's name under profiles:
  double seconds = 2.0;               // per precision
  std::size_t samples = 10000;
  std::string rapl_root = "/sys/class/powercap";  // tests point this elsewhere
};

// Sum of the package energy counters in microjoules, or nullopt when none is
// readable (no RAPL, or no permission).
std::optional<double> read_rapl_uj(const std::string& root);

int run_calibrate(std::ostream& out, const CalibrateSettings& settings);

}  // namespace fedsim
