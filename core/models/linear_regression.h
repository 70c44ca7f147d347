// Least-squares linear regression: the convex baseline for regression data.
#pragma once

#include <armadillo>
#include <cstdint>
#include <span>
#include <vector>

#include "core/models/model.h"

namespace fedsim {

// Loss: mean over samples of 0.5 * (w^T a + b - y)^2 on Dataset::targets
// (regression data, num_classes == 0). evaluate() reports that same mean
// objective as the loss and accuracy 0.
// Parameter layout: w (dim), then b (1). layers(): "weight", "bias".
// Settings: none. Starts from zeros (the problem is convex).
// macs_per_sample = 2 * (dim + 1): the prediction forward and the weight
// gradient backward.
class LinearRegression final : public Model {
 public:
  LinearRegression(const Config& settings, const ModelInput& input);

  std::size_t num_params() const override { return dim_ + 1; }
  std::vector<Layer> layers() const override;
  void init(arma::fvec& params, Rng& rng) const override;
  double loss_and_gradient(const arma::fvec& params, const Dataset& data, std::span<const std::uint32_t> batch,
                           arma::fvec& grad) const override;
  Evaluation evaluate(const arma::fvec& params, const Dataset& data) const override;
  double macs_per_sample() const override { return 2.0 * static_cast<double>(dim_ + 1); }
  std::optional<LeastSquaresForm> least_squares_form() const override { return LeastSquaresForm{false, 0.0}; }

 private:
  std::size_t dim_;
};

}  // namespace fedsim
