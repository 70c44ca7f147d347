#include "tools/bench_tradeoff.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <armadillo>

#include "clients/local_training.h"
#include "core/base/config.h"
#include "core/base/errors.h"
#include "core/base/rng.h"
#include "core/compression/pipeline.h"
#include "core/data/data_source.h"
#include "core/models/model.h"
#include "server/algorithm.h"
#include "server/scenario.h"
#include "tools/report.h"
#include "tools/process.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;

// One point of the plot: a quantizer (family) at one setting.
struct Setting {
  std::string family;   // legend label
  std::string setting;  // e.g. "s=7"
  std::string pipeline; // the `uplink:` list
  // Stages whose memory is error feedback (dgc, powersgd) are measured one
  // shot from a fresh state: the distortion of C(v) for the v given, not of
  // C(v + memory). Stages whose memory is side information (wyner_ziv,
  // predictive_coding) run over each client's sequence, as in a simulation.
  bool fresh = false;
};

std::string num(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", x);
  return b;
}

std::vector<Setting> settings_list() {
  std::vector<Setting> out;
  for (int s : {1, 3, 7, 15, 63, 255})
    out.push_back({"qsgd (d=512, fixed)", "s=" + num(s),
                   "[{qsgd: {levels: " + num(s) + ", bucket: 512, coding: fixed}}]"});
  for (int s : {1, 3, 7, 15})
    out.push_back({"qsgd (d=512, elias)", "s=" + num(s), "[{qsgd: {levels: " + num(s) + ", bucket: 512}}]"});
  for (int l : {2, 4, 8, 16})
    out.push_back({"natural_dithering (d=512)", "levels=" + num(l),
                   "[{natural_dithering: {levels: " + num(l) + ", bucket: 512}}]"});
  out.push_back({"natural", "", "[natural]"});
  out.push_back({"terngrad", "", "[terngrad]"});
  out.push_back({"sign (biased)", "", "[sign]"});
  for (double f : {0.01, 0.05, 0.1, 0.25, 0.5})
    out.push_back({"top_k (biased)", "fraction=" + num(f), "[{top_k: {fraction: " + num(f) + "}}]"});
  for (double f : {0.05, 0.25, 0.5})
    out.push_back({"rand_k", "fraction=" + num(f), "[{rand_k: {fraction: " + num(f) + "}}]"});
  for (int b : {3, 4, 6, 8}) out.push_back({"log_quant", "bits=" + num(b), "[{log_quant: {bits: " + num(b) + "}}]"});
  for (double r : {0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0})
    out.push_back({"subspace nearest (biased)", "r=" + num(r), "[{subspace: {bits_per_dim: " + num(r) + "}}]"});
  for (double r : {0.5, 1.0, 2.0, 3.0, 4.0, 6.0})
    out.push_back({"subspace stochastic", "r=" + num(r),
                   "[{subspace: {bits_per_dim: " + num(r) + ", rounding: stochastic}}]"});
  for (double f : {0.01, 0.1})
    out.push_back({"dgc (biased, one shot)", "fraction=" + num(f), "[{dgc: {fraction: " + num(f) + "}}]", true});
  for (int r : {1, 2, 4, 8, 16})
    out.push_back({"powersgd (biased, one shot)", "rank=" + num(r), "[{powersgd: {rank: " + num(r) + "}}]", true});
  for (int b : {2, 3, 4, 6, 8}) {
    out.push_back({"wyner_ziv", "bits=" + num(b), "[{wyner_ziv: {bits: " + num(b) + "}}]"});
    out.push_back({"wyner_ziv without side information", "bits=" + num(b),
                   "[{wyner_ziv: {bits: " + num(b) + ", side_information: none}}]"});
  }
  for (double l : {0.01, 0.1, 1.0})
    out.push_back({"predictive_coding (adaptive)", "lambda=" + num(l), "[{predictive_coding: {lambda: " + num(l) + "}}]"});
  return out;
}

// The vectors, as sequences (one per client; synthetic: one sequence).
struct Source {
  std::vector<std::vector<std::vector<float>>> sequences;
  std::vector<Layer> layers;
  std::size_t dim = 0;
};

Source synthetic(const TradeoffSettings& s, bool laplace) {
  Source src;
  src.dim = s.n;
  // One matrix layer (rows x n / rows, rows the largest power of two <= sqrt n) so powersgd has a shape.
  std::size_t rows = 1;
  while ((rows * 2) * (rows * 2) <= s.n) rows *= 2;
  if (s.n % rows == 0)
    src.layers = {Layer{"matrix", 0, s.n, rows, s.n / rows}};
  else
    src.layers = {Layer{"all", 0, s.n}};
  Rng rng = Rng::derive(11, Stream::kSynthetic, {laplace ? 2u : 1u});
  src.sequences.resize(1);
  for (std::size_t k = 0; k < s.vectors; ++k) {
    std::vector<float> v(s.n);
    for (float& x : v) {
      if (laplace) {
        // Unit variance: scale b = 1 / sqrt(2).
        const double u = rng.uniform() - 0.5;
        x = static_cast<float>(-(u < 0 ? -1.0 : 1.0) * std::log(1.0 - 2.0 * std::fabs(u)) / std::sqrt(2.0));
      } else {
        x = static_cast<float>(rng.normal());
      }
    }
    src.sequences[0].push_back(std::move(v));
  }
  return src;
}

// FedPAQ with float32 links, as fedsim runs it (the scenario's data, split,
// model, local SGD and server learning rate), for `rounds` rounds: every
// sampled client's update is captured, in order, per client. Client sampling
// here is a plain uniform draw, not the simulator's round policy.
Source updates(const std::string& file, const TradeoffSettings& s) {
  const Scenario sc = load_scenario(file);
  const auto data_source =
      DataSourceRegistry::instance().create(sc.data.where("source"), sc.data.get_string("source", "fashion_mnist"), sc.data);
  const auto partitioner = PartitionerRegistry::instance().create(sc.partition.where("scheme"),
                                                                  sc.partition.get_string("scheme", "iid"), sc.partition);
  if (data_source->procedural())
    throw InputError(sc.data.where("source") + ": expected a stored data set for --source updates:SCENARIO, found "
                     "procedural source '" + sc.data.get_string("source", "") + "'");
  const DataSplit data = data_source->load(sc.seed);
  const ModelInput input{data.train.dim(), data.train.num_classes};
  const auto model = sc.algorithm->make_model(ModelRegistry::instance().create(
      sc.model.where("name"), sc.model.get_string("name", "softmax_regression"), sc.model, input));
  Rng partition_rng = Rng::derive(sc.seed, Stream::kPartition);
  const std::vector<IndexView> views = partitioner->split(data.train, sc.num_clients, partition_rng);
  arma::fvec params(model->num_params());
  Rng init_rng = Rng::derive(sc.seed, Stream::kModelInit);
  model->init(params, init_rng);

  Source src;
  src.dim = params.n_elem;
  src.layers = model->layers();
  src.sequences.resize(sc.num_clients);
  std::vector<std::uint32_t> ids(sc.num_clients);
  for (std::uint32_t i = 0; i < ids.size(); ++i) ids[i] = i;
  for (std::size_t round = 0; round < s.rounds; ++round) {
    Rng sampling = Rng::derive(sc.seed, Stream::kSampling, {round});
    for (std::size_t j = 0; j < sc.clients_per_round; ++j)
      std::swap(ids[j], ids[j + sampling.below(ids.size() - j)]);
    arma::fvec sum(params.n_elem, arma::fill::zeros);
    for (std::size_t j = 0; j < sc.clients_per_round; ++j) {
      const std::uint32_t c = ids[j];
      arma::fvec local = params;
      Rng training = Rng::derive(sc.seed, Stream::kTraining, {c, round});
      run_local_sgd(*model, data.train, views[c], sc.training, local, training);
      local -= params;
      sum += local;
      src.sequences[c].emplace_back(local.begin(), local.end());
    }
    params += static_cast<float>(sc.server_learning_rate / static_cast<double>(sc.clients_per_round)) * sum;
  }
  return src;
}

struct Point {
  double bits = 0.0;        // per coordinate
  double distortion = 0.0;  // mean of ||C(v) - v||^2 / ||v||^2
};

Point measure(const Setting& setting, const Source& src) {
  const Config cfg = Config::parse_string("uplink: " + setting.pipeline + "\n", "<bench tradeoff>");
  const PipelineSpec spec = PipelineSpec::parse(cfg, "uplink");
  double bits = 0.0, distortion = 0.0, coordinates = 0.0;
  std::size_t count = 0;
  std::vector<float> rec(src.dim), decoded(src.dim);
  for (std::size_t c = 0; c < src.sequences.size(); ++c) {
    if (src.sequences[c].empty()) continue;
    std::unique_ptr<Compressor> sender, receiver;
    Rng rng = Rng::derive(5, Stream::kUplink, {c});
    for (const auto& v : src.sequences[c]) {
      if (!sender || setting.fresh) {
        sender = spec.make(src.dim, src.layers, 1000 + c);
        receiver = spec.make(src.dim, src.layers, 1000 + c);
      }
      Bytes payload;
      sender->encode(v, rng, payload, rec);
      receiver->decode(payload, decoded);
      double err = 0.0, energy = 0.0;
      for (std::size_t i = 0; i < v.size(); ++i) {
        const double e = static_cast<double>(decoded[i]) - v[i];
        err += e * e;
        energy += static_cast<double>(v[i]) * v[i];
      }
      if (energy > 0.0) {
        distortion += err / energy;
        ++count;
      }
      bits += 8.0 * static_cast<double>(payload.size());
      coordinates += static_cast<double>(v.size());
    }
  }
  return {bits / coordinates, count ? distortion / static_cast<double>(count) : 0.0};
}


}  // namespace

int run_tradeoff_bench(std::ostream& out, const TradeoffSettings& s) {
  Source src;
  std::string kind;
  if (s.source == "gaussian" || s.source == "laplace") {
    if (s.n < 16) throw InputError("bench tradeoff: --n must be at least 16");
    if (s.vectors == 0) throw InputError("bench tradeoff: --vectors must be at least 1");
    src = synthetic(s, s.source == "laplace");
    kind = s.source;
  } else if (s.source.rfind("updates:", 0) == 0 && s.source.size() > 8) {
    if (s.rounds == 0) throw InputError("bench tradeoff: --rounds must be at least 1");
    src = updates(s.source.substr(8), s);
    kind = "updates";
  } else {
    throw InputError("bench tradeoff: --source: expected gaussian, laplace or updates:SCENARIO, found '" + s.source + "'");
  }
  std::size_t vectors = 0;
  for (const auto& seq : src.sequences) vectors += seq.size();

  const std::string dir =
      !s.out_dir.empty() ? s.out_dir : "out/tradeoff/" + (kind == "updates" ? fs::path(s.source.substr(8)).stem().string() : kind);
  fs::create_directories(dir);
  const std::string csv_file = dir + "/tradeoff.csv";
  std::ofstream csv(csv_file);
  csv << "source,family,setting,bits_per_coord,distortion\n";

  // Gap in bits to the reference curve at the measured distortion: the
  // Gaussian D(R) = 2^(-2R) (exact limit for the Gaussian source), the
  // Laplace Shannon lower bound D = (e / pi) 2^(-2R) (no scheme can have a
  // negative gap), the Gaussian curve as a reference for real updates.
  const double slb = kind == "laplace" ? std::exp(1.0) / M_PI : 1.0;
  const char* gap_name = kind == "gaussian" ? "gap to D(R)" : kind == "laplace" ? "gap to SLB" : "vs 2^-2R";
  char line[256];
  std::snprintf(line, sizeof line, "source %s: %zu vectors of %zu coordinates\n", s.source.c_str(), vectors, src.dim);
  out << line;
  std::snprintf(line, sizeof line, "%-36s %-14s %10s %12s %12s\n", "scheme", "setting", "bits/coord", "D=E|C-v|^2/|v|^2",
                gap_name);
  out << line;
  for (const Setting& setting : settings_list()) {
    const Point p = measure(setting, src);
    const double bound_bits = p.distortion > 0.0 ? std::max(0.0, 0.5 * std::log2(slb / p.distortion)) : INFINITY;
    std::snprintf(line, sizeof line, "%-36s %-14s %10.3f %12.4g %12.2f\n", setting.family.c_str(),
                  setting.setting.c_str(), p.bits, p.distortion, p.bits - bound_bits);
    out << line;
    out.flush();
    csv << kind << ",\"" << setting.family << "\"," << setting.setting << "," << p.bits << "," << p.distortion << "\n";
  }
  csv.close();
  out << "wrote " << csv_file << "\n";
  if (!s.plot) return 0;
  const std::string script = find_tool_script("FEDSIM_TRADEOFF_SCRIPT", "plot_tradeoff.py");
  if (script.empty()) {
    out << "no plot: tools/plot_tradeoff.py not found (set FEDSIM_TRADEOFF_SCRIPT)\n";
    return 0;
  }
  const char* py = std::getenv("FEDSIM_PYTHON");
  const std::string python = py ? py : (fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3");
  const int code = run_process({python, script, csv_file, dir + "/tradeoff.png"});
  if (code == 0)
    out << "wrote " << dir << "/tradeoff.png\n";
  else
    out << "no plot: " << script << " exited with " << code << (code == 3 ? " (no matplotlib)" : "") << "\n";
  return 0;
}

}  // namespace fedsim
