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

// Helpers shared by the classifiers (SoftmaxRegression, Mlp).
namespace model_kernels {

// Samples per matrix block in loss_and_gradient and evaluate: bounds the
// scratch memory (dim x kChunk floats) while keeping the GEMMs large.
inline constexpr std::size_t kChunk = 1024;

// Numerically stable softmax cross-entropy on a block of logits
// (classes x n, one column per sample). In place, each column becomes
// grad_scale * (softmax(z) - onehot(label)), the gradient of grad_scale times
// the loss with respect to z. Returns the sum of the n per-sample losses
// (accumulated in double) and adds to `correct` the samples whose argmax
// (first on ties) equals the label.
double softmax_cross_entropy(arma::fmat& logits, std::span<const std::uint32_t> labels, float grad_scale,
                             std::size_t& correct);

// out = data.features.cols(batch[first, first + n)), labels likewise.
// out is reused (no reallocation when its size does not change).
void gather(const Dataset& data, std::span<const std::uint32_t> batch, std::size_t first, std::size_t n,
            arma::fmat& out, std::vector<std::uint32_t>* labels);

// A read-only matrix/vector view of memory (no copy). Armadillo has no const
// views of foreign memory; callers keep the result const.
inline const arma::fmat const_matrix_view(const float* p, std::size_t rows, std::size_t cols) {
  return arma::fmat(const_cast<float*>(p), rows, cols, false, true);
}
inline const arma::fvec const_vector_view(const float* p, std::size_t n) {
  return arma::fvec(const_cast<float*>(p), n, false, true);
}

}  // namespace model_kernels
}  // namespace fedsim
