#include "tools/bench_server.h"

#include <iomanip>
#include <sstream>
#include <string>

#include "server/scenario.h"
#include "server/simulation.h"

namespace fedsim {

namespace {

// A heterogeneous many-client scenario whose model math is small, so that the
// server side (sampling, availability, link and energy accounting, message
// serialization and parsing, aggregation, the virtual clock) is what shows.
std::string bench_scenario(const ServerBenchSettings& s) {
  std::ostringstream y;
  y << "name: bench-server\n"
    << "data: {source: synthetic_classification, train_samples: " << s.clients * 20
    << ", test_samples: 2000, dim: 64, classes: 10}\n"
    << "partition: {scheme: iid}\n"
    << "model: {name: softmax_regression}\n"
    << "clients: " << s.clients << "\nclients_per_round: " << s.per_round << "\nrounds: " << s.rounds
    << "\neval_every: " << s.rounds << "\nlocal_steps: 2\nbatch_size: 10\nlearning_rate: 0.1\nthreads: 1\n"
    << "output: {progress: false}\n"
    << "server: {policy: deadline, deadline_s: 2.0}\n"
    << "population:\n"
    << "  - {name: phones, fraction: 0.6, profile: phone_cpu, link: {uplink_bps: {lognormal: {median: 5e6, sigma: 0.8}}, "
       "downlink_bps: 2e7, latency_s: 0.05}, availability: {online_probability: 0.9}, dropout_probability: 0.02}\n"
    << "  - {name: edge, fraction: 0.4, profile: edge_gpu, link: {uplink_bps: {uniform: {min: 2e7, max: 1e8}}, "
       "downlink_bps: 1e8, latency_s: 0.01}}\n";
  return y.str();
}

}  // namespace

int run_server_bench(std::ostream& out, const ServerBenchSettings& settings) {
  const Scenario sc = parse_scenario(bench_scenario(settings), "bench-server.yaml");
  Simulation sim(sc);
  const RunSummary s = sim.run();
  std::uint64_t updates = 0;
  for (const RoundMetrics& m : s.rounds) updates += m.clients;
  const double rest_s = s.wall_s - s.model_math_s;
  const double rounds = static_cast<double>(s.rounds.size());
  out << std::fixed;
  out << "bench server: " << settings.clients << " clients, " << settings.per_round << " sampled per round, "
      << s.rounds.size() << " rounds, one thread, softmax regression on " << sim.num_params() << " parameters\n";
  out << std::setprecision(3) << "  rounds per second         " << rounds / s.wall_s << "\n";
  out << "  updates aggregated        " << updates << "\n";
  out << std::setprecision(1) << "  model math share          " << 100.0 * s.model_math_s / s.wall_s
      << " % of " << std::setprecision(3) << s.wall_s << " s (local SGD, encoding, evaluation)\n";
  out << "  rest of the run (server)  " << std::setprecision(1) << 100.0 * rest_s / s.wall_s << " %\n";
  out << std::setprecision(2) << "  overhead per round        " << 1e3 * rest_s / rounds << " ms (outside model math)\n";
  out << "  overhead per client round " << 1e6 * rest_s / (rounds * double(settings.per_round)) << " us\n";
  return 0;
}

}  // namespace fedsim
