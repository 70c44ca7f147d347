#include "tools/cli.h"

#include <unistd.h>

#include <CLI/CLI.hpp>

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
#include <thread>
#include <vector>

#include "clients/attack.h"
#include "clients/device_profile.h"
#include "clients/optimizer.h"
#include "server/radio_model.h"
#include "core/compression/compressor.h"
#include "core/data/data_source.h"
#include "core/base/errors.h"
#include "core/models/model.h"
#include "server/aggregator.h"
#include "server/checkpoint.h"
#include "server/algorithm.h"
#include "server/round_policy.h"
#include "server/metrics.h"
#include "server/scenario.h"
#include "server/simulation.h"
#include "tools/bench_compress.h"
#include "tools/bench_kernels.h"
#include "tools/calibrate.h"
#include "tools/bench_models.h"
#include "tools/bench_scale.h"
#include "tools/bench_server.h"
#include "tools/bench_tradeoff.h"
#include "tools/mpi_cluster.h"
#include "tools/process.h"
#include "tools/study.h"
#include "tools/sweep.h"
#include "tools/tune.h"

namespace fedsim {
namespace {

constexpr int kOk = 0;
constexpr int kInternal = 1;
constexpr int kBadInput = 2;

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
  out << "\n" << s.clients_participated << " of " << sc.num_clients << " registered clients took part";
  if (s.clients_participated)
    out << "; their stages' and optimizers' state " << human_bytes(double(s.client_state_bytes)) << " ("
        << human_bytes(double(s.client_state_bytes) / double(s.clients_participated)) << " each)";
  out << "\nwall time " << fixed(s.wall_s, 1) << " s, model math "
      << fixed(s.wall_s > 0 ? 100.0 * s.model_math_s / s.wall_s : 0.0, 0) << "% of it (summed over threads and ranks)\n";
  if (const Server::ClusterTime& c = sim.cluster_time(); c.orders)
    out << "ranks: " << c.orders << " work orders to the other ranks (" << human_bytes(double(c.bytes_out))
        << " out, " << human_bytes(double(c.bytes_in)) << " back), messages took " << fixed(c.comm_s, 2) << " s ("
        << fixed(s.wall_s > 0 ? 100.0 * c.comm_s / s.wall_s : 0.0, 1) << "% of the wall time)\n";
}

struct RunArgs {
  std::string scenario;
  std::string out;
  std::vector<std::string> overrides;
  bool quiet = false;
  std::size_t checkpoint_every = 0;  // 0: no checkpoints
  std::string resume;                // output folder of the run to continue
};

// Rank 0 of an MPI job (or the only process): the server and the outputs.
int run_here(const RunArgs& a, MpiSession& mpi) {
  Scenario sc = load_scenario(a.scenario, a.overrides);
  if (!a.resume.empty()) {
    if (!a.out.empty() && a.out != a.resume)
      throw InputError("--resume " + a.resume + " continues the run in that folder; --out " + a.out +
                       " names another (drop --out)");
    sc.output_dir = a.resume;
  } else if (!a.out.empty()) {
    sc.output_dir = a.out;
  }
  if (a.checkpoint_every && sc.output_dir.empty())
    throw InputError("--checkpoint-every: expected an output folder for the checkpoint (--out DIR or output.dir in " +
                     sc.file + "), found none");
  const std::uint64_t fingerprint = scenario_fingerprint(sc);
  mpi.agree(fingerprint);
  Simulation sim(sc);
  // Before restore(): a resumed run sends the other ranks their clients' state.
  const std::unique_ptr<ClientCluster> cluster = mpi.cluster();
  if (cluster) sim.set_cluster(cluster.get());
  if (!a.resume.empty()) {
    // Checked whole before anything is restored; a state that does not read
    // back ends the command (the simulation is never half-restored and used).
    const LoadedCheckpoint checkpoint = read_checkpoint(a.resume, fingerprint);
    try {
      sim.restore(checkpoint.state);
    } catch (const DecodeError& e) {
      throw InputError(checkpoint_path(a.resume) + ": the checkpoint's state does not fit this scenario: " + e.what());
    }
    if (sim.rounds_closed() != checkpoint.round)
      throw InputError(checkpoint_path(a.resume) + ": the header says round " + std::to_string(checkpoint.round) +
                       ", the state holds " + std::to_string(sim.rounds_closed()) + " rounds");
  }
  std::unique_ptr<MetricsWriter> writer;
  if (!sc.output_dir.empty()) writer = std::make_unique<MetricsWriter>(sc.output_dir, sim.population().class_names());
  // A resumed run's files are cut back to the checkpoint: rewritten from the
  // rounds it holds, then continued.
  if (writer)
    for (const RoundMetrics& m : sim.summary_so_far().rounds) writer->write(m);
  ProgressBar bar(sc.rounds, sc.progress && !a.quiet && isatty(STDERR_FILENO));
  std::function<void(std::size_t)> checkpoint;
  if (a.checkpoint_every)
    checkpoint = [&](std::size_t closed) {
      if (closed % a.checkpoint_every == 0) write_checkpoint(sc.output_dir, fingerprint, closed, sim.save());
    };
  const RunSummary summary = sim.run(
      [&](const RoundMetrics& m) {
        if (writer) writer->write(m);
        bar.update(m);
      },
      checkpoint);
  bar.finish();
  if (!sc.output_dir.empty()) sim.ledger().write_client_csv((std::filesystem::path(sc.output_dir) / "clients.csv").string());
  if (!a.quiet) print_summary(std::cout, sc, sim, summary);
  if (!sc.output_dir.empty() && !a.quiet) std::cout << "metrics in " << sc.output_dir << "/metrics.{csv,jsonl}\n";
  return kOk;
}

// Ranks 1..K-1 of an MPI job: the same scenario, a server that only runs its
// share of the clients when rank 0 says so. Writes nothing.
int serve_rank(const RunArgs& a, MpiSession& mpi) {
  const Scenario sc = load_scenario(a.scenario, a.overrides);
  mpi.agree(scenario_fingerprint(sc));
  mpi.serve(sc);
  return kOk;
}

int cmd_run(const RunArgs& a) {
  MpiSession mpi;
  return mpi.guard([&] { return mpi.rank() == 0 ? run_here(a, mpi) : serve_rank(a, mpi); });
}

int cmd_validate(const RunArgs& a) {
  const Scenario sc = load_scenario(a.scenario, a.overrides);
  const Simulation sim(sc);  // loads data and builds every component: all checks run
  std::cout << a.scenario << ": ok (" << sc.num_clients << " clients in " << sim.population().num_classes()
            << " class(es), " << sc.clients_per_round << " per round, " << sc.rounds << " rounds, "
            << sim.num_params() << " parameters, " << sim.data().train.size() << " training samples; uplink "
            << sc.uplink.describe() << ", downlink " << sc.downlink.describe() << ")\n";
  return kOk;
}

struct StudyArgs {
  std::string study;
  std::string out;
  std::vector<std::string> overrides;
  std::size_t jobs = 0;  // 0 = the cores
  bool quiet = false;
  bool no_plots = false;
  std::size_t checkpoint_every = SweepOptions{}.checkpoint_every;
};

SweepOptions sweep_options(const StudyArgs& a, const Study& study, const char* kind) {
  SweepOptions o;
  o.out_dir = a.out.empty() ? "out/" + std::string(kind) + "/" + study.name : a.out;
  o.jobs = a.jobs ? a.jobs : std::max(1u, std::thread::hardware_concurrency());
  o.fedsim_exe = self_executable();
  o.progress = !a.quiet && isatty(STDERR_FILENO);
  o.plots = !a.no_plots;
  o.checkpoint_every = a.checkpoint_every;
  return o;
}

int cmd_sweep(const StudyArgs& a) {
  const Study study = load_study(a.study, a.overrides);
  if (study.root.has("tune")) parse_tune(study);  // checks the section's keys
  validate_study(study);  // every configuration builds before any run starts
  const SweepOptions o = sweep_options(a, study, "studies");
  StudyLock lock(o.out_dir);
  const SweepCounts counts = execute_jobs(study_jobs(study), o, study.name);
  if (!a.quiet)
    std::cout << study.name << ": " << counts.total << " runs (" << study.configs.size() << " configurations x "
            << study.seeds.size() << " seeds), " << counts.already_done << " already done, " << counts.executed
            << " run now (" << counts.resumed << " of them from checkpoints); results in " << o.out_dir << "\n";
  std::ostringstream table;
  summarize_study(study, o, a.quiet ? table : std::cout);
  return kOk;
}

int cmd_tune(const StudyArgs& a) {
  const Study study = load_study(a.study, a.overrides);
  const TuneSpec spec = parse_tune(study);
  validate_study(study);
  const SweepOptions o = sweep_options(a, study, "tune");
  StudyLock lock(o.out_dir);
  std::ostringstream quiet;
  run_tune(study, spec, o, a.quiet ? quiet : std::cout);
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
  list_registry(out, "optimizers (server_optimizer.name, client_optimizer.name)", OptimizerRegistry::instance());
  list_registry(out, "device profiles (population[].profile)", DeviceProfileRegistry::instance());
  list_registry(out, "radio models (population[].link.radio.model)", RadioModelRegistry::instance());
  list_registry(out, "attacks (population[].attack.name)", AttackRegistry::instance());
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

}  // namespace

namespace {

// --set, repeatable, one key=value per occurrence.
void add_overrides(CLI::App* cmd, std::vector<std::string>& overrides) {
  cmd->add_option("--set", overrides, "override a scenario key: key.path=value (value in YAML; repeatable)")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
}

void add_study_options(CLI::App* cmd, StudyArgs& a, const char* default_out) {
  cmd->add_option("study", a.study, "study file (see scenarios/studies/)")->required();
  cmd->add_option("--out", a.out, std::string("output folder (default ") + default_out + "/<study name>)");
  cmd->add_option("--jobs", a.jobs, "runs in parallel (default: the cores)")->check(CLI::Range(1, 4096));
  add_overrides(cmd, a.overrides);
  cmd->add_flag("--quiet", a.quiet, "no progress bar and no table");
  cmd->add_flag("--no-plots", a.no_plots, "skip figures and report.html (CSV files only)");
  cmd->add_option("--checkpoint-every", a.checkpoint_every,
                  "rounds between each run's checkpoints, from which a killed sweep continues (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 32));
}

}  // namespace

int cli_main(int argc, char** argv) {
  CLI::App app{"fedsim " FEDSIM_VERSION ": a federated-learning simulator for communication-efficient training",
               "fedsim"};
  app.set_version_flag("--version", "fedsim " FEDSIM_VERSION);
  app.require_subcommand(1);
  app.fallthrough(false);

  RunArgs run_args;
  CLI::App* run = app.add_subcommand("run", "run a scenario; --out writes DIR/metrics.csv, metrics.jsonl, clients.csv");
  run->add_option("scenario", run_args.scenario, "scenario file")->required();
  run->add_option("--out", run_args.out, "output folder (default: the scenario's output.dir)");
  add_overrides(run, run_args.overrides);
  run->add_flag("--quiet", run_args.quiet, "no progress bar and no summary");
  run->add_option("--checkpoint-every", run_args.checkpoint_every,
                  "write the run's whole state to OUT/checkpoint.bin every K rounds (atomically)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 32));
  run->add_option("--resume", run_args.resume,
                  "continue the run whose output folder is DIR from its last checkpoint (same scenario and --set)");

  RunArgs validate_args;
  CLI::App* validate =
      app.add_subcommand("validate", "check a scenario (schema, data files, profiles) without running it");
  validate->add_option("scenario", validate_args.scenario, "scenario file")->required();
  add_overrides(validate, validate_args.overrides);

  CLI::App* list = app.add_subcommand(
      "list", "models, data sources, partitions, algorithms, round policies, aggregators, device profiles, stages");

  StudyArgs sweep_args;
  CLI::App* sweep = app.add_subcommand(
      "sweep", "run a study (configurations x seeds) in parallel, resumably; write runs.csv, summary.csv, plots/, "
               "report.html");
  add_study_options(sweep, sweep_args, "out/studies");

  StudyArgs tune_args;
  CLI::App* tune = app.add_subcommand(
      "tune", "search a study's `tune:` space for the setting that minimises a metric under constraints "
              "(successive halving)");
  add_study_options(tune, tune_args, "out/tune");

  CLI::App* bench = app.add_subcommand("bench", "benchmarks");
  bench->require_subcommand(1);
  std::size_t compress_n = std::size_t{1} << 24;
  std::vector<std::string> schemes;
  CLI::App* compress =
      bench->add_subcommand("compress", "encode/decode throughput of every scheme on N floats, against memcpy");
  compress->add_option("--n", compress_n, "floats per vector (default 2^24)")->check(CLI::Range(1024ull, 1ull << 34));
  compress->add_option("schemes", schemes, "schemes to measure (default: all)");
  bool compress_cpu_time = false;
  compress->add_flag("--cpu-time", compress_cpu_time,
                     "time by this thread's CPU time, not the wall clock (for a shared, loaded machine)");
  ServerBenchSettings server_settings;
  CLI::App* server = bench->add_subcommand("server", "event-loop throughput and per-round overhead with many clients");
  server->add_option("--clients", server_settings.clients, "registered clients")->check(CLI::Range(1ull, 1ull << 40));
  server->add_option("--per-round", server_settings.per_round, "clients per round")->check(CLI::Range(1ull, 1ull << 40));
  server->add_option("--rounds", server_settings.rounds, "rounds")->check(CLI::Range(1ull, 1ull << 40));
  ScaleBenchSettings scale_settings;
  CLI::App* scale = bench->add_subcommand(
      "scale", "resident memory per registered client and round time at 10^4 .. 10^8 registered clients, the "
               "same clients per round; under mpirun -np K: speed-up from 1 to K ranks on a compute-heavy scenario");
  scale->add_option("--clients", scale_settings.clients, "registered clients, one run each (default 1e4 1e5 1e6 1e7 1e8)")
      ->check(CLI::Range(1ull, 4294967295ull));
  scale->add_option("--per-round", scale_settings.per_round, "clients per round (default 1000; under mpirun 64)")
      ->check(CLI::Range(1ull, 10'000'000ull));
  scale->add_option("--rounds", scale_settings.rounds, "rounds per run (default 5)")->check(CLI::Range(1ull, 1ull << 20));
  scale->add_option("--threads", scale_settings.threads, "client threads (default 1)")->check(CLI::Range(1ull, 1024ull));
  ModelBenchSettings model_settings;
  CLI::App* models = bench->add_subcommand(
      "models", "local-training samples per second of the MLPs and (with LibTorch) the CNNs, T threads at once");
  models->add_option("--threads", model_settings.threads, "concurrent trainers")->check(CLI::Range(1ull, 1024ull));
  models->add_option("--seconds", model_settings.seconds, "seconds per model")->check(CLI::Range(0.1, 3600.0));

  KernelBenchSettings kernel_settings;
  CLI::App* kernels = bench->add_subcommand(
      "kernels", "fp32 against the packed int8 / int4 / int2 kernels on the same data: bytes per epoch, samples/s, "
                 "ratio to fp32, per SIMD path");
  kernels->add_option("--samples", kernel_settings.samples, "Fashion-MNIST training samples (default 10000)")
      ->check(CLI::Range(32ull, 60000ull));
  kernels->add_option("--seconds", kernel_settings.seconds, "seconds per precision and path (default 3)")
      ->check(CLI::Range(0.01, 3600.0));

  TradeoffSettings tradeoff_settings;
  bool tradeoff_no_plot = false;
  CLI::App* tradeoff = bench->add_subcommand(
      "tradeoff", "distortion against bits per coordinate of every quantizer over its settings, with the "
                  "rate-distortion bound; table, CSV and plot");
  tradeoff->add_option("--source", tradeoff_settings.source, "gaussian (default), laplace or updates:SCENARIO");
  tradeoff->add_option("--n", tradeoff_settings.n, "coordinates per synthetic vector (default 65536)")
      ->check(CLI::Range(16ull, 1ull << 28));
  tradeoff->add_option("--vectors", tradeoff_settings.vectors, "synthetic vectors (default 8)")
      ->check(CLI::Range(1ull, 1ull << 20));
  tradeoff->add_option("--rounds", tradeoff_settings.rounds, "updates: rounds simulated to capture them (default 30)")
      ->check(CLI::Range(1ull, 1ull << 20));
  tradeoff->add_option("--out", tradeoff_settings.out_dir, "folder for tradeoff.csv and tradeoff.png (default out/tradeoff/<source>)");
  tradeoff->add_flag("--no-plot", tradeoff_no_plot, "do not run tools/plot_tradeoff.py");

  CalibrateSettings calibrate_settings;
  CLI::App* calibrate = app.add_subcommand(
      "calibrate", "measure this machine's MAC/s per precision with the packed kernels (and J/MAC from RAPL when "
                   "readable); write a device profile for `profiles:`");
  calibrate->add_option("--out", calibrate_settings.out, "profile file to write (default: print it)");
  calibrate->add_option("--name", calibrate_settings.name, "the profile's name (default calibrated)");
  calibrate->add_option("--seconds", calibrate_settings.seconds, "seconds per precision (default 2)")
      ->check(CLI::Range(0.01, 3600.0));
  calibrate->add_option("--samples", calibrate_settings.samples, "Fashion-MNIST training samples (default 10000)")
      ->check(CLI::Range(32ull, 60000ull));

  if (argc < 2) {
    std::cerr << app.help();
    return kBadInput;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    const auto known = app.get_subcommands([&](CLI::App* c) { return argc >= 2 && c->get_name() == argv[1]; });
    if (argc >= 2 && argv[1][0] != '-' && known.empty())
      std::cerr << "fedsim: unknown command '" << argv[1] << "'\n";
    else
      std::cerr << "fedsim: error: " << e.what() << "\n";
    std::cerr << "run 'fedsim --help' (or 'fedsim SUBCOMMAND --help') for usage\n";
    return kBadInput;
  }
  try {
    // Under mpirun only the commands that spread clients over ranks run
    // (the others would each run K times, and sweep and tune fork).
    if (const MpiWorld world = launched_world(); world.size > 1 && !*run && !*scale) {
      if (world.rank != 0) return kBadInput;
      throw InputError("under mpirun only `fedsim run` and `fedsim bench scale` run; start this command without mpirun");
    }
    if (*run) return cmd_run(run_args);
    if (*validate) return cmd_validate(validate_args);
    if (*list) return cmd_list();
    if (*sweep) return cmd_sweep(sweep_args);
    if (*tune) return cmd_tune(tune_args);
    if (*compress) return run_compress_bench(std::cout, compress_n, schemes, compress_cpu_time);
    if (*tradeoff) {
      tradeoff_settings.plot = !tradeoff_no_plot;
      return run_tradeoff_bench(std::cout, tradeoff_settings);
    }
    if (*server) {
      if (!server->count("--per-round")) server_settings.per_round = std::min(server_settings.per_round, server_settings.clients);
      if (server_settings.per_round > server_settings.clients)
        throw InputError("--per-round: expected at most --clients (" + std::to_string(server_settings.clients) +
                         "), found " + std::to_string(server_settings.per_round));
      return run_server_bench(std::cout, server_settings);
    }
    if (*models) return run_model_bench(std::cout, model_settings);
    if (*kernels) return run_kernel_bench(std::cout, kernel_settings);
    if (*calibrate) return run_calibrate(std::cout, calibrate_settings);
    if (*scale) {
      if (launched_world().size > 1) {
        if (!scale->count("--per-round")) scale_settings.per_round = 64;
        MpiSession mpi;
        return mpi.guard([&] { return run_cluster_bench(std::cout, scale_settings, mpi); });
      }
      for (std::size_t n : scale_settings.clients)
        if (scale_settings.per_round > n)
          throw InputError("--per-round: expected at most the smallest --clients (" + std::to_string(n) + "), found " +
                           std::to_string(scale_settings.per_round));
      return run_scale_bench(std::cout, scale_settings);
    }
    return kInternal;
  } catch (const InputError& e) {
    std::cerr << "fedsim: error: " << e.what() << "\n";
    return kBadInput;
  } catch (const std::exception& e) {
    std::cerr << "fedsim: error: " << e.what() << "\n";
    return kInternal;
  }
}

}  // namespace fedsim
