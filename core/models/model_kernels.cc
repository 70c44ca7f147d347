#include "core/models/model_kernels.h"

#include <cassert>
#include <cmath>
#include <cstring>

namespace fedsim {
namespace model_kernels {

double softmax_cross_entropy(arma::fmat& logits, std::span<const std::uint32_t> labels, float grad_scale,
                             std::size_t& correct) {
  const std::size_t classes = logits.n_rows;
  assert(labels.size() == logits.n_cols);
  double loss_sum = 0.0;
  for (std::size_t j = 0; j < logits.n_cols; ++j) {
    float* z = logits.colptr(j);
    const std::uint32_t label = labels[j];
    assert(label < classes);
    std::size_t argmax = 0;
    float max = z[0];
    for (std::size_t c = 1; c < classes; ++c) {
      if (z[c] > max) {
        max = z[c];
        argmax = c;
      }
    }
    if (argmax == label) ++correct;
    // log-sum-exp with the max subtracted: every exponent <= 0, no overflow;
    // the loss uses the shifted logit itself, not log(exp(.)), which underflows.
    const float shifted_label_logit = z[label] - max;
    float sum = 0.0f;
    for (std::size_t c = 0; c < classes; ++c) {
      z[c] = std::exp(z[c] - max);
      sum += z[c];
    }
    loss_sum += static_cast<double>(std::log(sum)) - static_cast<double>(shifted_label_logit);
    const float inv_sum = 1.0f / sum;
    const float scale = grad_scale * inv_sum;
    for (std::size_t c = 0; c < classes; ++c) z[c] *= scale;
    z[label] -= grad_scale;
  }
  return loss_sum;
}

void gather(const Dataset& data, std::span<const std::uint32_t> batch, std::size_t first, std::size_t n,
            arma::fmat& out, std::vector<std::uint32_t>* labels) {
  const std::size_t dim = data.dim();
  out.set_size(dim, n);
  if (labels) labels->resize(n);
  for (std::size_t j = 0; j < n; ++j) {
    const std::uint32_t index = batch[first + j];
    assert(index < data.size());
    std::memcpy(out.colptr(j), data.features.colptr(index), dim * sizeof(float));
    if (labels) (*labels)[j] = data.labels[index];
  }
}

double least_squares_block(const arma::fvec& w, float b, const arma::fmat& inputs, const float* targets,
                           float grad_scale, arma::fvec* grad_w, float* grad_b, std::size_t* correct,
                           arma::frowvec& residual) {
  residual = w.t() * inputs;
  double half_squares = 0.0;
  double residual_sum = 0.0;
  std::size_t agree = 0;
  for (std::size_t j = 0; j < residual.n_elem; ++j) {
    const float prediction = residual[j] + b;
    agree += (prediction >= 0.0f) == (targets[j] >= 0.0f);
    const float r = prediction - targets[j];
    residual[j] = r;
    half_squares += 0.5 * static_cast<double>(r) * static_cast<double>(r);
    residual_sum += r;
  }
  if (grad_w) {
    *grad_w += grad_scale * (inputs * residual.t());
    *grad_b += grad_scale * static_cast<float>(residual_sum);
  }
  if (correct) *correct += agree;
  return half_squares;
}

void relu_layer_backward(const arma::fmat& weights_t, const arma::fmat& layer_input, const arma::fmat& delta,
                         arma::fmat& next) {
  next = weights_t * delta;
  const float* a = layer_input.memptr();
  float* g = next.memptr();
  for (std::size_t i = 0; i < next.n_elem; ++i)
    if (a[i] <= 0.0f) g[i] = 0.0f;
}

}  // namespace model_kernels
}  // namespace fedsim
