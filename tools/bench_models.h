// `fedsim bench models`: local-training throughput of the models.
#pragma once

#include <cstddef>
#include <ostream>

namespace fedsim {

struct ModelBenchSettings {
  std::size_t threads = 1;     // concurrent trainers, one model pass each at a time
  double seconds = 3.0;        // per model, after one warm-up step
};

// For every model of a fixed list (the MLPs of the shipped scenarios, and the
// LibTorch CNNs when the build has them) on Fashion-MNIST-shaped data (784
// features, 10 classes): SGD steps of batch 32 (loss_and_gradient plus the
// update, as local training runs them) in `threads` threads at once, then
// evaluate() on 2048 samples; prints training samples per second per thread
// and in all, evaluation samples per second (one thread), and the
// multiply-adds per sample the device model charges.
int run_model_bench(std::ostream& out, const ModelBenchSettings& settings);

}  // namespace fedsim
