// Multinomial logistic regression: the convex baseline classifier.
#pragma once

#include <armadillo>
#include <cstdint>
#include <span>
#include <vector>

#include "core/models/model.h"

namespace fedsim {

// Loss: mean over samples of the softmax cross-entropy
//   -log softmax(W a + b)_y,  W: classes x dim, b: classes.
// Parameter layout: W row-major (row c = class c's weights, so W is stored as
// the column-major dim x classes matrix W^T), then b. layers(): "weight", "bias".
// Settings: init_scale (default 0, in [0, 10]): standard deviation of the
// Gaussian initial weights; 0 starts from zeros (fine for a convex loss).
// Bias always starts at 0.
// macs_per_sample = 2 * classes * (dim + 1): the logits forward and the weight
// gradient backward (no input gradient is needed).
class SoftmaxRegression final : public Model {
 public:
  SoftmaxRegression(const Config& settings, const ModelInput& input);

  std::size_t num_params() const override { return classes_ * (dim_ + 1); }
  std::vector<Layer> layers() const override;
  void init(arma::fvec& params, Rng& rng) const override;
  double loss_and_gradient(const arma::fvec& params, const Dataset& data, std::span<const std::uint32_t> batch,
                           arma::fvec& grad) const override;
  Evaluation evaluate(const arma::fvec& params, const Dataset& data) const override;
  double macs_per_sample() const override;

 private:
  std::size_t dim_;
  std::size_t classes_;
  double init_scale_;
};

}  // namespace fedsim
