#include "tools/bench_scale.h"

#include <malloc.h>

#include <chrono>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <string>

#include "server/scenario.h"
#include "server/simulation.h"

namespace fedsim {

std::size_t resident_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return static_cast<std::size_t>(std::stoull(line.substr(6))) * 1024;
  return 0;
}

std::string scale_scenario(std::size_t clients, std::size_t per_round, std::size_t rounds, std::size_t threads) {
  std::ostringstream y;
  y << "name: bench-scale\n"
    << "data: {source: procedural_classification, classes: 10, dim: 32, samples_per_client: 32, label_skew: 0.5, "
       "feature_shift: 0.5}\n"
    << "model: {name: softmax_regression}\n"
    << "clients: " << clients << "\nclients_per_round: " << per_round << "\nrounds: " << rounds
    << "\neval_every: " << rounds << "\nlocal_steps: 2\nbatch_size: 16\nlearning_rate: 0.1\nthreads: " << threads
    << "\noutput: {progress: false}\n"
    << "uplink: [error_feedback, {qsgd: {levels: 4}}]\n"
    << "server: {policy: deadline, deadline_s: 5.0}\n"
    << "population:\n"
    << "  - {name: phones, fraction: 0.7, profile: phone_cpu, link: {uplink_bps: {lognormal: {median: 5e6, sigma: "
       "0.8}}, downlink_bps: 2e7, latency_s: 0.05}, availability: {online_probability: 0.9}, "
       "dropout_probability: 0.02}\n"
    << "  - {name: edge, fraction: 0.3, profile: edge_gpu, link: {uplink_bps: {uniform: {min: 2e7, max: 1e8}}, "
       "downlink_bps: 1e8, latency_s: 0.01}}\n";
  return y.str();
}

int run_scale_bench(std::ostream& out, const ScaleBenchSettings& settings) {
  out << "bench scale: " << settings.per_round << " clients per round, " << settings.rounds << " rounds, "
      << settings.threads << " thread(s), procedural data (scenario: tools/bench_scale.cc)\n";
  out << std::setw(13) << "registered" << std::setw(14) << "resident_MiB" << std::setw(16) << "bytes/client"
      << std::setw(14) << "took_part" << std::setw(12) << "build_s" << std::setw(14) << "round_ms" << "\n";
  {
    // Warm-up: one-time costs of the process (OpenBLAS's buffers, the
    // allocator's arenas) are paid here, not by the first row.
    const Scenario warm_scenario =
        parse_scenario(scale_scenario(settings.per_round, settings.per_round, 1, settings.threads), "bench-scale.yaml");
    Simulation warm(warm_scenario);
    warm.run();
  }
  double first_round_ms = 0.0;
  for (std::size_t n : settings.clients) {
    malloc_trim(0);
    const std::size_t before = resident_bytes();
    const auto t0 = std::chrono::steady_clock::now();
    const Scenario sc = parse_scenario(scale_scenario(n, settings.per_round, settings.rounds, settings.threads),
                                       "bench-scale.yaml");
    Simulation sim(sc);
    const double build_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const RunSummary s = sim.run();
    const std::size_t after = resident_bytes();
    const double added = static_cast<double>(after) - static_cast<double>(before);
    const double round_ms = 1e3 * s.wall_s / static_cast<double>(s.rounds.size());
    if (first_round_ms == 0.0) first_round_ms = round_ms;
    out << std::setw(13) << n << std::fixed << std::setprecision(1) << std::setw(14) << added / (1024.0 * 1024.0)
        << std::setprecision(4) << std::setw(16) << added / static_cast<double>(n) << std::setw(14)
        << s.clients_participated << std::setprecision(3) << std::setw(12) << build_s << std::setprecision(2)
        << std::setw(14) << round_ms << "  (x" << std::setprecision(2) << round_ms / first_round_ms << ")\n";
  }
  out << "resident_MiB: VmRSS after the run minus before building it (after a warm-up run); round_ms: wall time per round "
         "(x: against the first row)\n";
  return 0;
}

}  // namespace fedsim
