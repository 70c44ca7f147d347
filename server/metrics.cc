#include "server/metrics.h"

#include <filesystem>
#include <iomanip>
#include <sstream>

#include "core/base/errors.h"

namespace fedsim {

namespace {
std::string number(double v) {
  if (std::isnan(v)) return "";
  std::ostringstream s;
  s << std::setprecision(9) << v;
  return s.str();
}
}  // namespace

std::vector<std::string> MetricsWriter::columns(const std::vector<std::string>& class_names) {
  std::vector<std::string> c{"round",      "sim_time_s", "test_accuracy",    "test_loss",       "train_loss",
                             "bytes_up",   "bytes_down", "clients",          "energy_j",        "compute_j",
                             "tx_j",       "rx_j",       "idle_j",           "dropped_deadline", "dropped_offline",
                             "dropped_battery", "round_time_s", "uplink_bits_per_coord", "rejected", "censored"};
  for (const auto& n : class_names) c.push_back("energy_j_" + n);
  for (const char* n : {"promotion_j", "tail_j", "server_j", "grid_j", "sparsity", "consensus_distance", "objective",
                        "dropped_network", "attackers"})
    c.push_back(n);
  return c;
}

MetricsWriter::MetricsWriter(const std::string& dir, std::vector<std::string> class_names)
    : columns_(columns(class_names)) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw InputError(dir + ": cannot create output directory: " + ec.message());
  csv_.open(dir + "/metrics.csv");
  jsonl_.open(dir + "/metrics.jsonl");
  if (!csv_ || !jsonl_) throw InputError(dir + ": cannot write metrics files");
  for (std::size_t i = 0; i < columns_.size(); ++i) csv_ << (i ? "," : "") << columns_[i];
  csv_ << "\n";
}

void MetricsWriter::write(const RoundMetrics& m) {
  std::vector<std::string> values{std::to_string(m.round),
                                  number(m.sim_time_s),
                                  number(m.test_accuracy),
                                  number(m.test_loss),
                                  number(m.train_loss),
                                  std::to_string(m.bytes_up),
                                  std::to_string(m.bytes_down),
                                  std::to_string(m.clients),
                                  number(m.energy.total_j()),
                                  number(m.energy.compute_j),
                                  number(m.energy.tx_j),
                                  number(m.energy.rx_j),
                                  number(m.energy.idle_j),
                                  std::to_string(m.dropped_deadline),
                                  std::to_string(m.dropped_offline),
                                  std::to_string(m.dropped_battery),
                                  number(m.round_time_s),
                                  number(m.uplink_bits_per_coord),
                                  std::to_string(m.rejected),
                                  std::to_string(m.censored)};
  for (double e : m.class_energy_j) values.push_back(number(e));
  for (double e : {m.energy.promotion_j, m.energy.tail_j, m.server_j, m.grid_j, m.sparsity, m.consensus_distance,
                   m.objective})
    values.push_back(number(e));
  values.push_back(std::to_string(m.dropped_network));
  values.push_back(std::to_string(m.attackers));
  for (std::size_t i = 0; i < values.size(); ++i) csv_ << (i ? "," : "") << values[i];
  csv_ << "\n";
  jsonl_ << "{";
  for (std::size_t i = 0; i < values.size() && i < columns_.size(); ++i)
    jsonl_ << (i ? "," : "") << "\"" << columns_[i] << "\":" << (values[i].empty() ? "null" : values[i]);
  jsonl_ << "}\n";
  csv_.flush();
  jsonl_.flush();
}

}  // namespace fedsim
