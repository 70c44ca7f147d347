// Least-squares support vector machine (Suykens & Vandewalle 1999) in the
// primal: binary classification with a squared loss, so it is strongly convex
// with l2 > 0 and its gradient is linear in the model (ZipML's setting).
#pragma once

#include <armadillo>
#include <cstdint>
#include <span>
#include <vector>

#include "core/models/model.h"

namespace fedsim {

// Labels {0, 1} map to y in {-1, +1}. Loss: mean over samples of
//   0.5 * (w^T a + b - y)^2, plus 0.5 * l2 * ||w||^2 (the bias is not penalised).
// Accuracy: fraction with sign(w^T a + b) == y, a score of 0 counting as +1.
// Requires num_classes == 2.
// Parameter layout: w (dim), then b (1). layers(): "weight", "bias".
// Settings: l2 (default 0, in [0, 1e6]). Starts from zeros.
// macs_per_sample = 2 * (dim + 1): the score forward and the weight gradient.
class LsSvm final : public Model {
 public:
  LsSvm(const Config& settings, const ModelInput& input);

  std::size_t num_params() const override { return dim_ + 1; }
  std::vector<Layer> layers() const override;
  void init(arma::fvec& params, Rng& rng) const override;
  double loss_and_gradient(const arma::fvec& params, const Dataset& data, std::span<const std::uint32_t> batch,
                           arma::fvec& grad) const override;
  Evaluation evaluate(const arma::fvec& params, const Dataset& data) const override;
  double macs_per_sample() const override { return 2.0 * static_cast<double>(dim_ + 1); }
  std::optional<LeastSquaresForm> least_squares_form() const override { return LeastSquaresForm{true, l2_}; }

 private:
  std::size_t dim_;
  double l2_;
};

}  // namespace fedsim
