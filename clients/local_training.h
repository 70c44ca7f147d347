// A client's local work between two communications: tau minibatch SGD steps.
#pragma once

#include <armadillo>
#include <cstdint>

#include "clients/device_profile.h"
#include "core/data/dataset.h"
#include "core/models/model.h"
#include "core/base/rng.h"


namespace fedsim {

class Optimizer;  // clients/optimizer.h

struct LocalTrainingSettings {
  std::size_t local_steps = 1;   // tau
  std::size_t batch_size = 32;   // 0 = full local data set every step
  double learning_rate = 0.1;
  double weight_decay = 0.0;     // L2 penalty added to the gradient
  // Arithmetic of the gradient computation (clients/quantized_compute.h):
  // below fp32, samples, model and gradient are stochastically rounded to
  // that many bits; the parameters the steps update stay fp32.
  Precision precision = Precision::kFp32;
  // Levels of the samples below fp32 (scenario key `quantization_levels`):
  // uniform over each sample's range, or ZipML's data-optimal markers per
  // feature over the client's local samples (clients/zipml_markers.h).
  bool optimal_levels = false;
};

struct LocalTrainingResult {
  double mean_loss = 0.0;          // mean minibatch loss over the steps
  std::uint64_t samples_processed = 0;
  // Multiply-adds beyond model.macs_per_sample() per sample: double sampling's
  // second forward pass below fp32 (QuantizedCompute::extra_macs_per_sample).
  double extra_macs = 0.0;
};

// Runs `local_steps` steps on data[view], updating params in place: plain
// SGD (x <- x - learning_rate g) when `optimizer` is null, else
// optimizer->step(params, g, learning_rate), whose state carries over.
// Minibatches are drawn without replacement, reshuffling when the view is
// exhausted (epoch order from rng). Thread-safe across calls with different params.
// Below fp32, the stochastic rounding draws from a generator split off rng
// (seeded from a copy's next output), so the minibatch order does not depend
// on the precision and rng advances exactly as at fp32.
LocalTrainingResult run_local_sgd(const Model& model, const Dataset& data, const IndexView& view,
                                  const LocalTrainingSettings& settings, arma::fvec& params, Rng& rng,
                                  Optimizer* optimizer = nullptr);

}  // namespace fedsim
