#include "tools/bench_models.h"

#include <chrono>
#include <iomanip>
#include <string>
#include <thread>
#include <vector>

#include "core/base/blas_threads.h"
#include "core/base/config.h"
#include "core/base/rng.h"
#include "core/models/model.h"

namespace fedsim {

namespace {

using Clock = std::chrono::steady_clock;

struct BenchModel {
  std::string label;
  std::string yaml;  // model settings, name included
};

Dataset bench_data(std::size_t n) {
  Rng rng(7);
  Dataset d;
  d.name = "bench";
  d.num_classes = 10;
  d.features.set_size(784, n);
  for (float& x : d.features) x = static_cast<float>(rng.uniform());
  d.labels.resize(n);
  for (auto& y : d.labels) y = static_cast<std::uint32_t>(rng.below(10));
  return d;
}

// Training samples per second of one thread's SGD loop.
double train_rate(const Model& model, const Dataset& data, double seconds, std::uint64_t seed) {
  constexpr std::size_t kBatch = 32;
  Rng rng(seed);
  arma::fvec params, grad;
  model.init(params, rng);
  std::vector<std::uint32_t> batch(kBatch);
  auto step = [&] {
    for (auto& j : batch) j = static_cast<std::uint32_t>(rng.below(data.size()));
    model.loss_and_gradient(params, data, batch, grad);
    params -= 0.01f * grad;
  };
  step();  // warm-up (first-call allocations, kernel selection)
  std::size_t samples = 0;
  const auto start = Clock::now();
  double elapsed = 0;
  do {
    step();
    samples += kBatch;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < seconds);
  return static_cast<double>(samples) / elapsed;
}

}  // namespace

int run_model_bench(std::ostream& out, const ModelBenchSettings& settings) {
  use_single_threaded_blas();  // as the simulation: the threads are the parallelism
  const std::vector<BenchModel> candidates = {
      {"mlp 784-100-10", "name: mlp\nhidden: [100]\n"},
      {"mlp 784-200-10", "name: mlp\nhidden: [200]\n"},
      {"cnn lenet5", "name: cnn\narch: lenet5\n"},
      {"cnn fedavg", "name: cnn\narch: fedavg\n"},
  };
  const Dataset data = bench_data(4096);
  out << "bench models: batch 32, " << settings.threads << " thread(s) training at once, "
      << settings.seconds << " s per model\n";
  out << std::left << std::setw(18) << "model" << std::right << std::setw(12) << "params" << std::setw(14)
      << "MACs/sample" << std::setw(16) << "train/s/thread" << std::setw(14) << "train/s all" << std::setw(14)
      << "eval/s" << "\n";
  for (const BenchModel& b : candidates) {
    Config config = Config::parse_string(b.yaml, "bench.yaml");
    const std::string name = config.get_string("name");
    if (!ModelRegistry::instance().contains(name)) {
      out << std::left << std::setw(18) << b.label << "  (not in this build)\n";
      continue;
    }
    const auto model = ModelRegistry::instance().create("bench.yaml", name, config, ModelInput{784, 10});
    std::vector<double> rates(settings.threads);
    std::vector<std::thread> workers;
    for (std::size_t t = 0; t < settings.threads; ++t)
      workers.emplace_back([&, t] { rates[t] = train_rate(*model, data, settings.seconds, 100 + t); });
    for (auto& w : workers) w.join();
    double total = 0;
    for (double r : rates) total += r;
    // Evaluation: one thread, 2048 samples, best of 3.
    Dataset eval_set = data;
    eval_set.features = data.features.cols(0, 2047);
    eval_set.labels.resize(2048);
    Rng rng(1);
    arma::fvec params;
    model->init(params, rng);
    double eval_rate = 0;
    for (int rep = 0; rep < 3; ++rep) {
      const auto start = Clock::now();
      model->evaluate(params, eval_set);
      eval_rate = std::max(eval_rate, 2048.0 / std::chrono::duration<double>(Clock::now() - start).count());
    }
    out << std::left << std::setw(18) << b.label << std::right << std::setw(12) << model->num_params()
        << std::setw(14) << std::setprecision(3) << std::scientific << model->macs_per_sample() << std::fixed
        << std::setprecision(0) << std::setw(16) << total / double(settings.threads) << std::setw(14) << total
        << std::setw(14) << eval_rate << "\n";
  }
  return 0;
}

}  // namespace fedsim
