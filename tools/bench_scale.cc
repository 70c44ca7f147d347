#include "tools/bench_scale.h"

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <numeric>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <string>

#include "core/base/errors.h"
#include "server/checkpoint.h"
#include "server/scenario.h"
#include "server/simulation.h"
#include "tools/mpi_cluster.h"

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

std::string cluster_scenario(std::size_t per_round, std::size_t rounds, std::size_t threads) {
  std::ostringstream y;
  y << "name: bench-cluster\n"
    << "data: {source: procedural_classification, classes: 10, dim: 256, samples_per_client: 256, label_skew: 0.5, "
       "feature_shift: 0.5}\n"
    << "model: {name: mlp, hidden: [256]}\n"
    << "clients: " << 16 * per_round << "\nclients_per_round: " << per_round << "\nrounds: " << rounds
    << "\neval_every: " << rounds << "\nlocal_steps: 20\nbatch_size: 32\nlearning_rate: 0.05\nthreads: " << threads
    << "\noutput: {progress: false}\n"
    << "uplink: [error_feedback, {qsgd: {levels: 255, coding: fixed}}]\n"
    << "server: {policy: wait_all}\n";
  return y.str();
}

int run_cluster_bench(std::ostream& out, const ScaleBenchSettings& settings, MpiSession& mpi) {
  const Scenario sc = parse_scenario(cluster_scenario(settings.per_round, settings.rounds, settings.threads),
                                     "bench-cluster.yaml");
  mpi.agree(scenario_fingerprint(sc));
  if (mpi.rank() != 0) {
    mpi.serve(sc);
    return 0;
  }
  const std::size_t k = static_cast<std::size_t>(mpi.size());
  out << "bench scale (cluster): " << k << " ranks x " << settings.threads << " thread(s); " << settings.per_round
      << " clients per round, " << settings.rounds << " rounds, MLP 256-256-10 on procedural data, 20 local steps "
      << "of 32 samples (scenario: tools/bench_scale.cc)\n";
  {
    // Warm-up (OpenBLAS's buffers, the allocator's arenas), paid by neither row.
    const Scenario warm_scenario =
        parse_scenario(cluster_scenario(settings.per_round, 1, settings.threads), "bench-cluster.yaml");
    Simulation warm(warm_scenario);
    warm.run();
  }
  Simulation one(sc);
  const RunSummary a = one.run();  // every client on rank 0; the other ranks wait
  Simulation many(sc);
  const std::unique_ptr<ClientCluster> cluster = mpi.cluster();
  many.set_cluster(cluster.get());
  const RunSummary b = many.run();
  const Server::ClusterTime& c = many.cluster_time();
  bool same = a.final_accuracy == b.final_accuracy && a.bytes_up == b.bytes_up && a.rounds.size() == b.rounds.size();
  for (std::size_t i = 0; same && i < a.rounds.size(); ++i)
    same = a.rounds[i].train_loss == b.rounds[i].train_loss && a.rounds[i].sim_time_s == b.rounds[i].sim_time_s;
  if (!same) throw std::runtime_error("bench scale: the 1-rank and " + std::to_string(k) + "-rank runs differ");
  const double rounds = static_cast<double>(a.rounds.size());
  const double round1 = a.wall_s / rounds, roundk = b.wall_s / rounds;
  // The 1-rank run's client compute (summed over its threads) and the rest
  // (sampling, decoding, aggregating, evaluating: rank 0's alone).
  const double compute1 = a.model_math_s / rounds / static_cast<double>(settings.threads);
  const double serial1 = std::max(0.0, round1 - compute1);
  const double messages = c.comm_s / rounds;
  // Clients go to ranks by id (client mod K), so a round's slowest rank has
  // more than r / K of them: the model takes the measured share.
  std::map<std::uint32_t, std::vector<std::size_t>> per_rank;
  for (const ArrivalRecord& r : many.trace()) {
    std::vector<std::size_t>& n = per_rank[r.round];
    n.resize(k);
    ++n[static_cast<std::size_t>(many.rank_of(r.client))];
  }
  double imbalance = 0.0;
  for (const auto& [round, n] : per_rank) {
    const double total = static_cast<double>(std::accumulate(n.begin(), n.end(), std::size_t{0}));
    imbalance += static_cast<double>(*std::max_element(n.begin(), n.end())) * static_cast<double>(k) / total;
  }
  imbalance = per_rank.empty() ? 1.0 : imbalance / static_cast<double>(per_rank.size());
  const double predicted = serial1 + compute1 / static_cast<double>(k) * imbalance + messages;
  out << std::fixed << std::setprecision(3);
  out << "  1 rank          " << round1 << " s/round (client compute " << compute1 << " s, the rest " << serial1
      << " s)\n";
  out << "  " << k << " ranks         " << roundk << " s/round, speed-up x" << std::setprecision(2) << round1 / roundk
      << std::setprecision(3) << "\n";
  out << "  messages        " << messages << " s/round = " << std::setprecision(1) << 100.0 * c.comm_s / b.wall_s
      << "% of the wall time; " << std::setprecision(2)
      << static_cast<double>(c.bytes_out + c.bytes_in) / rounds / (1024.0 * 1024.0) << " MiB/round over "
      << c.orders << " orders" << std::setprecision(3) << "\n";
  out << "  model           serial + compute/" << k << " x imbalance " << std::setprecision(2) << imbalance
      << std::setprecision(3) << " + messages = " << predicted << " s/round (measured "
      << roundk << ", " << std::showpos << std::setprecision(1) << 100.0 * (roundk - predicted) / predicted
      << std::noshowpos << "%)\n";
  out << "  metrics of the two runs: identical\n";
  return 0;
}

}  // namespace fedsim
