// Kernels shared by the models: chunked batch gathering, the softmax
// cross-entropy of the classifiers (SoftmaxRegression, Mlp) and the
// least-squares block of the regression models (LinearRegression, LsSvm).
#pragma once

#include <armadillo>
#include <cstdint>
#include <span>
#include <vector>

#include "core/data/dataset.h"

namespace fedsim {
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

// Back-propagation through one ReLU layer (Mlp, and the packed MLP of
// clients/quantized_compute.h): next = W^T delta (weights_t: in x out, the
// layer's weights transposed; delta: out x n), then zero where the layer's
// input (in x n, post-ReLU) was clipped (<= 0). next is reused.
void relu_layer_backward(const arma::fmat& weights_t, const arma::fmat& layer_input, const arma::fmat& delta,
                         arma::fmat& next);

// One block of a least-squares objective, shared with LsSvm. inputs: dim x n,
// targets: n. With residual r = w^T x + b - t per column: returns the sum of
// 0.5 * r^2; if grad_w is given, adds grad_scale * inputs * r to *grad_w and
// grad_scale * sum(r) to *grad_b; if correct is given, adds the columns whose
// prediction has the sign of the target (a prediction >= 0 counts as +1).
// `residual` is caller-owned scratch.
double least_squares_block(const arma::fvec& w, float b, const arma::fmat& inputs, const float* targets,
                           float grad_scale, arma::fvec* grad_w, float* grad_b, std::size_t* correct,
                           arma::frowvec& residual);

}  // namespace model_kernels
}  // namespace fedsim
