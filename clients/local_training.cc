#include "clients/local_training.h"

#include <algorithm>
#include <numeric>

#include "clients/optimizer.h"
#include "clients/quantized_compute.h"
#include "clients/zipml_markers.h"

namespace fedsim {

namespace {
constexpr std::uint64_t kQuantizationPurpose = 0x5a69704d4cULL;  // "ZipML"
}  // namespace

LocalTrainingResult run_local_sgd(const Model& model, const Dataset& data, const IndexView& view,
                                  const LocalTrainingSettings& settings, arma::fvec& params, Rng& rng,
                                  Optimizer* optimizer) {
  LocalTrainingResult result;
  if (view.empty() || settings.local_steps == 0) return result;
  const std::size_t batch = settings.batch_size == 0 ? view.size() : std::min(settings.batch_size, view.size());
  std::vector<std::uint32_t> order(view.begin(), view.end());
  std::size_t cursor = order.size();  // forces a shuffle on the first step
  const bool full_batch = batch == view.size();
  arma::fvec grad;
  std::vector<std::uint32_t> batch_indices(batch);
  double loss_sum = 0.0;
  QuantizedCompute compute(model, settings.precision);
  FeatureMarkers markers;
  if (settings.optimal_levels && settings.precision != Precision::kFp32) {
    markers = FeatureMarkers::optimal(data, view, precision_bits(settings.precision));
    compute.set_markers(&markers);
  }
  Rng quantization_rng = Rng::derive(Rng(rng)(), {kQuantizationPurpose});
  for (std::size_t step = 0; step < settings.local_steps; ++step) {
    if (full_batch) {
      std::copy(view.begin(), view.end(), batch_indices.begin());
    } else {
      for (std::size_t k = 0; k < batch; ++k) {
        if (cursor == order.size()) {
          // Fisher-Yates with our own generator: portable and reproducible.
          for (std::size_t i = order.size() - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
          cursor = 0;
        }
        batch_indices[k] = order[cursor++];
      }
    }
    loss_sum += compute.loss_and_gradient(params, data, batch_indices, quantization_rng, grad);
    if (settings.weight_decay > 0.0) grad += static_cast<float>(settings.weight_decay) * params;
    if (optimizer)
      optimizer->step(params, grad, settings.learning_rate);
    else
      params -= static_cast<float>(settings.learning_rate) * grad;
    result.samples_processed += batch;
  }
  result.mean_loss = loss_sum / static_cast<double>(settings.local_steps);
  result.extra_macs = compute.extra_macs_per_sample() * static_cast<double>(result.samples_processed);
  return result;
}

}  // namespace fedsim
