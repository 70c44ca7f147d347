#include "tools/cli.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "clients/device_profile.h"
#include "core/compression/compressor.h"
#include "core/data/data_source.h"
#include "core/base/errors.h"
#include "core/models/model.h"
#include "server/aggregator.h"
#include "server/algorithm.h"
#include "server/round_policy.h"
#include "server/metrics.h"
#include "server/scenario.h"
#include "server/simulation.h"
#include "tools/bench_compress.h"
#include "tools/bench_models.h"
#include "tools/bench_server.h"

namespace fedsim {
namespace {

constexpr int kOk = 0;
constexpr int kInternal = 1;
constexpr int kBadInput = 2;

const char* const kUsage =
    "usage:\n"
    "  fedsim run SCENARIO [--out DIR] [--set key=value ...] [--quiet]\n"
    "      run a scenario; --out writes DIR/metrics.csv, DIR/metrics.jsonl, DIR/clients.csv\n"
    "  fedsim validate SCENARIO [--set key=value ...]\n"
    "      check a scenario (schema, data files, profiles) without running it\n"
    "  fedsim list\n"
    "      models, data sources, partitions, algorithms, round policies, aggregators, device profiles,\n"
    "      compression stages\n"
    "  fedsim bench compress [--n N] [SCHEME ...]\n"
    "      encode/decode throughput of every scheme on N floats (default 2^24), against memcpy\n"
    "  fedsim bench server [--clients N] [--per-round R] [--rounds K]\n"
    "      event-loop throughput and per-round overhead with many clients (default 10000/10000/5)\n"
    "  fedsim bench models [--threads T] [--seconds S]\n"
    "      local-training samples per second of the MLPs and (with LibTorch) the CNNs, T threads at once\n";

// Command-line arguments after the subcommand: positionals, --set values and
// the named options a subcommand accepts (each takes one value).
struct Args {
  std::vector<std::string> positional;
  std::vector<std::string> overrides;
  std::map<std::string, std::string> options;
  bool quiet = false;
};

Args parse_args(int argc, char** argv, int first, const std::vector<std::string>& valued) {
  Args a;
  for (int i = first; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quiet") {
      a.quiet = true;
    } else if (arg == "--set" || std::find(valued.begin(), valued.end(), arg) != valued.end()) {
      if (i + 1 >= argc) throw InputError(arg + ": expected a value after it");
      const std::string value = argv[++i];
      if (arg == "--set")
        a.overrides.push_back(value);
      else
        a.options[arg] = value;
    } else if (arg.rfind("--set=", 0) == 0) {
      a.overrides.push_back(arg.substr(6));
    } else if (arg.size() > 1 && arg[0] == '-') {
      throw InputError("unknown option '" + arg + "'");
    } else {
      a.positional.push_back(arg);
    }
  }
  return a;
}

std::size_t parse_count(const Args& a, const std::string& option, std::size_t fallback, std::size_t min_value) {
  const auto it = a.options.find(option);
  if (it == a.options.end()) return fallback;
  const std::string& text = it->second;
  std::size_t used = 0;
  unsigned long long v = 0;
  try {
    v = std::stoull(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty() || text[0] == '-' || v < min_value)
    throw InputError(option + ": expected an integer >= " + std::to_string(min_value) + ", found '" + text + "'");
  return static_cast<std::size_t>(v);
}

std::string human_bytes(double bytes) {
  // Up to EB: a uint64 byte count then stays within "18.4 EB".
  const char* units[] = {"B", "KB", "MB", "GB", "TB", "PB", "EB"};
  int u = 0;
  while (bytes >= 1000.0 && u < 6) bytes /= 1000.0, ++u;
  std::ostringstream s;
  s << std::fixed << std::setprecision(bytes < 10 ? 2 : 1) << bytes << ' ' << units[u];
  return s.str();
}

std::string fixed(double v, int digits) {
  if (std::isnan(v)) return "-";
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

// A table cell for a column of `width`: fixed with `digits` decimals, or
// scientific with as many as fit when fixed would leave no space before the
// cell (a diverged loss of 1e30 has 31 digits before the point).
std::string cell(double v, int digits, int width) {
  std::string s = fixed(v, digits);
  for (int precision = digits; static_cast<int>(s.size()) >= width && precision >= 0; --precision) {
    std::ostringstream e;
    e << std::scientific << std::setprecision(precision) << v;
    s = e.str();
  }
  return s;
}

// A one-line progress bar on stderr, redrawn at most ten times a second.
class ProgressBar {
 public:
  ProgressBar(std::size_t total, bool enabled) : total_(total), enabled_(enabled) {}
  ~ProgressBar() { finish(); }
  void update(const RoundMetrics& m) {
    if (!enabled_) return;
    if (!std::isnan(m.test_accuracy)) last_accuracy_ = m.test_accuracy;
    const auto now = std::chrono::steady_clock::now();
    if (m.round < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    constexpr int kWidth = 30;
    const double f = total_ ? double(m.round) / double(total_) : 1.0;
    const int filled = static_cast<int>(f * kWidth);
    std::fprintf(stderr, "\r[%s%s] %zu/%zu  acc %s  sim %s s ", std::string(filled, '#').c_str(),
                 std::string(kWidth - filled, '.').c_str(), static_cast<std::size_t>(m.round), total_,
                 fixed(last_accuracy_, 4).c_str(), fixed(m.sim_time_s, 1).c_str());
    drawn_ = true;
  }
  void finish() {
    if (drawn_) std::fputc('\n', stderr);
    drawn_ = false;
  }

 private:
  std::size_t total_;
  bool enabled_;
  bool drawn_ = false;
  double last_accuracy_ = NAN;
  std::chrono::steady_clock::time_point last_draw_{};
};

void print_summary(std::ostream& out, const Scenario& sc, const Simulation& sim, const RunSummary& s) {
  // Accuracy at about ten evenly spaced evaluated rounds, then the totals.
  std::vector<const RoundMetrics*> evaluated;
  for (const RoundMetrics& m : s.rounds)
    if (!std::isnan(m.test_accuracy)) evaluated.push_back(&m);
  out << "\n" << (sc.name.empty() ? sc.file : sc.name) << ": " << sc.num_clients << " clients, "
      << sc.clients_per_round << " per round, " << sim.num_params() << " parameters, uplink "
      << sc.uplink.describe() << ", downlink " << sc.downlink.describe() << "\n\n";
  out << std::setw(7) << "round" << std::setw(12) << "sim_time_s" << std::setw(10) << "accuracy" << std::setw(11)
      << "test_loss" << std::setw(12) << "bytes_up" << std::setw(12) << "bytes_down" << std::setw(12) << "energy_j"
      << "\n";
  const std::size_t shown = std::min<std::size_t>(evaluated.size(), 10);
  double energy = 0.0;
  std::size_t next = 0;
  std::uint64_t up = 0, down = 0;
  for (std::size_t k = 0; k < shown; ++k) {
    const std::size_t index = shown == 1 ? evaluated.size() - 1 : k * (evaluated.size() - 1) / (shown - 1);
    const RoundMetrics& m = *evaluated[index];
    for (; next < s.rounds.size() && s.rounds[next].round <= m.round; ++next) {
      up += s.rounds[next].bytes_up;
      down += s.rounds[next].bytes_down;
      energy += s.rounds[next].energy.total_j();
    }
    out << std::setw(7) << cell(static_cast<double>(m.round), 0, 7) << std::setw(12) << cell(m.sim_time_s, 1, 12)
        << std::setw(10) << cell(m.test_accuracy, 4, 10) << std::setw(11) << cell(m.test_loss, 4, 11)
        << std::setw(12) << human_bytes(up) << std::setw(12) << human_bytes(down) << std::setw(12)
        << cell(energy, 1, 12) << "\n";
  }
  double best = NAN;
  for (const RoundMetrics* m : evaluated) best = std::isnan(best) ? m->test_accuracy : std::max(best, m->test_accuracy);
  out << "\nfinal accuracy " << fixed(s.final_accuracy, 4) << " (best " << fixed(best, 4) << "), simulated time "
      << fixed(s.sim_time_s, 1) << " s, uplink " << human_bytes(double(s.bytes_up)) << ", downlink "
      << human_bytes(double(s.bytes_down)) << ", energy " << fixed(s.energy_j, 1) << " J";
  if (s.clients_exhausted) out << ", " << s.clients_exhausted << " clients out of battery";
  out << "\nwall time " << fixed(s.wall_s, 1) << " s, model math "
      << fixed(s.wall_s > 0 ? 100.0 * s.model_math_s / s.wall_s : 0.0, 0) << "% of it (summed over threads)\n";
}

int cmd_run(const Args& a) {
  if (a.positional.size() != 1) throw InputError("run: expected exactly one scenario file");
  Scenario sc = load_scenario(a.positional[0], a.overrides);
  if (const auto it = a.options.find("--out"); it != a.options.end()) sc.output_dir = it->second;
  Simulation sim(sc);
  std::unique_ptr<MetricsWriter> writer;
  if (!sc.output_dir.empty()) writer = std::make_unique<MetricsWriter>(sc.output_dir, sim.population().class_names());
  ProgressBar bar(sc.rounds, sc.progress && !a.quiet && isatty(STDERR_FILENO));
  const RunSummary summary = sim.run([&](const RoundMetrics& m) {
    if (writer) writer->write(m);
    bar.update(m);
  });
  bar.finish();
  if (!sc.output_dir.empty()) sim.ledger().write_client_csv((std::filesystem::path(sc.output_dir) / "clients.csv").string());
  if (!a.quiet) print_summary(std::cout, sc, sim, summary);
  if (!sc.output_dir.empty() && !a.quiet) std::cout << "metrics in " << sc.output_dir << "/metrics.{csv,jsonl}\n";
  return kOk;
}

int cmd_validate(const Args& a) {
  if (a.positional.size() != 1) throw InputError("validate: expected exactly one scenario file");
  const Scenario sc = load_scenario(a.positional[0], a.overrides);
  const Simulation sim(sc);  // loads data and builds every component: all checks run
  std::cout << a.positional[0] << ": ok (" << sc.num_clients << " clients in " << sim.population().num_classes()
            << " class(es), " << sc.clients_per_round << " per round, " << sc.rounds << " rounds, "
            << sim.num_params() << " parameters, " << sim.data().train.size() << " training samples; uplink "
            << sc.uplink.describe() << ", downlink " << sc.downlink.describe() << ")\n";
  return kOk;
}

template <typename R>
void list_registry(std::ostream& out, const char* title, const R& registry) {
  out << title << ":\n";
  for (const auto& [name, entry] : registry.entries()) out << "  " << std::left << std::setw(25) << name << " " << entry.summary << "\n";
  out << std::right;
}

int cmd_list() {
  std::ostream& out = std::cout;
  list_registry(out, "models (model.name)", ModelRegistry::instance());
  list_registry(out, "data sources (data.source)", DataSourceRegistry::instance());
  list_registry(out, "partitions (partition.scheme)", PartitionerRegistry::instance());
  list_registry(out, "algorithms (algorithm.name)", AlgorithmRegistry::instance());
  list_registry(out, "round policies (server.policy)", RoundPolicyRegistry::instance());
  list_registry(out, "aggregators (aggregator.name)", AggregatorRegistry::instance());
  list_registry(out, "device profiles (population[].profile)", DeviceProfileRegistry::instance());
  out << "compression stages (uplink / downlink lists):\n";
  for (const auto& [name, entry] : StageRegistry::instance().entries()) {
    const char* kind = entry.meta == StageKind::kTransform ? "transform"
                       : entry.meta == StageKind::kQuantizer ? "quantizer"
                                                             : "coder";
    out << "  " << std::left << std::setw(25) << name << " " << std::setw(10) << kind << " " << entry.summary << "\n";
  }
  out << std::right;
  return kOk;
}

int cmd_bench(const Args& a) {
  if (a.positional.empty()) throw InputError("bench: expected 'compress', 'server' or 'models'");
  const std::string what = a.positional[0];
  if (what == "compress") {
    const std::size_t n = parse_count(a, "--n", std::size_t{1} << 24, 1024);
    return run_compress_bench(std::cout, n, std::vector<std::string>(a.positional.begin() + 1, a.positional.end()));
  }
  if (what == "server") {
    if (a.positional.size() != 1) throw InputError("bench server: unexpected argument '" + a.positional[1] + "'");
    ServerBenchSettings s;
    s.clients = parse_count(a, "--clients", s.clients, 1);
    s.per_round = parse_count(a, "--per-round", std::min(s.per_round, s.clients), 1);
    s.rounds = parse_count(a, "--rounds", s.rounds, 1);
    if (s.per_round > s.clients)
      throw InputError("--per-round: expected at most --clients (" + std::to_string(s.clients) + "), found " +
                       std::to_string(s.per_round));
    return run_server_bench(std::cout, s);
  }
  if (what == "models") {
    if (a.positional.size() != 1) throw InputError("bench models: unexpected argument '" + a.positional[1] + "'");
    ModelBenchSettings s;
    s.threads = parse_count(a, "--threads", s.threads, 1);
    s.seconds = static_cast<double>(parse_count(a, "--seconds", 3, 1));
    return run_model_bench(std::cout, s);
  }
  throw InputError("bench: unknown benchmark '" + what + "', expected 'compress', 'server' or 'models'");
}

}  // namespace

int cli_main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
      std::strcmp(argv[1], "help") == 0) {
    (argc < 2 ? std::cerr : std::cout) << kUsage;
    return argc < 2 ? kBadInput : kOk;
  }
  const std::string command = argv[1];
  try {
    if (command == "run") return cmd_run(parse_args(argc, argv, 2, {"--out"}));
    if (command == "validate") return cmd_validate(parse_args(argc, argv, 2, {}));
    if (command == "list") {
      const Args a = parse_args(argc, argv, 2, {});
      if (!a.positional.empty()) throw InputError("list: unexpected argument '" + a.positional[0] + "'");
      return cmd_list();
    }
    if (command == "bench") return cmd_bench(parse_args(argc, argv, 2, {"--n", "--clients", "--per-round", "--rounds", "--threads", "--seconds"}));
    std::cerr << "fedsim: unknown command '" << command << "'\n" << kUsage;
    return kBadInput;
  } catch (const InputError& e) {
    std::cerr << "fedsim: error: " << e.what() << "\n";
    return kBadInput;
  } catch (const std::exception& e) {
    std::cerr << "fedsim: internal error: " << e.what() << "\n";
    return kInternal;
  }
}

}  // namespace fedsim
