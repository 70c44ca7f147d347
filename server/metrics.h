// Per-round metrics and their writers (CSV and JSON lines). Column names are
// a stable interface: other tools read them. New columns go at the end.
#pragma once

#include <cmath>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "server/energy.h"

namespace fedsim {

struct RoundMetrics {
  std::uint64_t round = 0;
  double sim_time_s = 0.0;
  double test_accuracy = NAN;  // NaN on rounds without evaluation
  double test_loss = NAN;
  double train_loss = NAN;     // mean local loss of the aggregated clients
  std::uint64_t bytes_up = 0;    // serialized UpdateUp bytes received this round
  std::uint64_t bytes_down = 0;  // serialized ModelDown bytes sent this round
  std::uint64_t clients = 0;     // updates aggregated this round
  EnergyBreakdown energy;        // columns compute_j, tx_j, rx_j, idle_j; energy_j = their total
  std::uint64_t dropped_deadline = 0;
  std::uint64_t dropped_offline = 0;  // sampled, then dropped out mid-round
  std::uint64_t dropped_battery = 0;  // left the federation this round (battery spent)
  double round_time_s = 0.0;
  double uplink_bits_per_coord = 0.0;  // mean payload bits per model coordinate
  std::uint64_t rejected = 0;  // messages the server received this round and rejected as corrupt
  std::uint64_t censored = 0;  // messages received this round that a censoring stage skipped (UpdateUp.skipped)
  std::vector<double> class_energy_j;  // per client class, appended as energy_j_<class>
  // After the class columns: promotion_j, tail_j (in energy; part of energy_j)
  // server_j (the server's own energy, server_energy:, not in energy_j) and
  // grid_j (the part of energy_j spent while plugged in, not from batteries),
  // then sparsity, consensus_distance, objective, dropped_network, attackers.
  double server_j = 0.0;
  double grid_j = 0.0;
  double sparsity = NAN;  // fraction of exact zeros in the global model at the close
  // Decentralized runs (empty otherwise): mean over nodes of ||x_i - xbar||^2,
  // and the training objective at xbar (mean training loss + regularizer).
  double consensus_distance = NAN;
  double objective = NAN;
  std::uint64_t dropped_network = 0;  // lost to network faults: the model or the update given up
  // Updates of Byzantine clients (population `attack:`) handed to the
  // aggregator this round (what the aggregator then makes of them is its own).
  std::uint64_t attackers = 0;
};

class MetricsWriter {
 public:
  // Opens DIR/metrics.csv and DIR/metrics.jsonl (creating DIR). `class_names`
  // name the per-class energy columns.
  MetricsWriter(const std::string& dir, std::vector<std::string> class_names);
  void write(const RoundMetrics& m);

  static std::vector<std::string> columns(const std::vector<std::string>& class_names);

 private:
  std::ofstream csv_;
  std::ofstream jsonl_;
  std::vector<std::string> columns_;
};

}  // namespace fedsim
