#include "core/models/softmax_regression.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <string>

#include "core/base/errors.h"
#include "core/models/model_kernels.h"

namespace fedsim {

namespace {

using model_kernels::const_matrix_view;
using model_kernels::const_vector_view;
using model_kernels::kChunk;

// Per-thread scratch, so that the const methods stay thread-safe without
// allocating on every call.
struct Scratch {
  arma::fmat inputs;
  arma::fmat logits;
  std::vector<std::uint32_t> labels;
};
thread_local Scratch scratch;

}  // namespace

SoftmaxRegression::SoftmaxRegression(const Config& settings, const ModelInput& input)
    : dim_(input.dim), classes_(input.num_classes) {
  init_scale_ = settings.get_double("init_scale", 0.0, 0.0, 10.0);
  if (classes_ < 2)
    throw InputError(settings.where() + ": softmax_regression needs a classification data set (>= 2 classes), found " +
                     (classes_ == 0 ? std::string("a regression data set") : std::string("1 class")));
  if (dim_ == 0) throw InputError(settings.where() + ": softmax_regression needs features, found dimension 0");
}

std::vector<Layer> SoftmaxRegression::layers() const {
  return {Layer{"weight", 0, classes_ * dim_, dim_, classes_}, Layer{"bias", classes_ * dim_, classes_}};
}

void SoftmaxRegression::init(arma::fvec& params, Rng& rng) const {
  params.zeros(num_params());
  if (init_scale_ > 0.0)
    for (std::size_t i = 0; i < classes_ * dim_; ++i) params[i] = static_cast<float>(init_scale_ * rng.normal());
}

double SoftmaxRegression::loss_and_gradient(const arma::fvec& params, const Dataset& data,
                                            std::span<const std::uint32_t> batch, arma::fvec& grad) const {
  assert(params.n_elem == num_params());
  assert(data.dim() == dim_);
  grad.zeros(num_params());
  if (batch.empty()) return 0.0;
  const arma::fmat weights_t = const_matrix_view(params.memptr(), dim_, classes_);
  const arma::fvec bias = const_vector_view(params.memptr() + classes_ * dim_, classes_);
  arma::fmat grad_weights_t(grad.memptr(), dim_, classes_, false, true);
  arma::fvec grad_bias(grad.memptr() + classes_ * dim_, classes_, false, true);

  Scratch& s = scratch;
  const float grad_scale = 1.0f / static_cast<float>(batch.size());
  double loss_sum = 0.0;
  std::size_t correct = 0;
  for (std::size_t first = 0; first < batch.size(); first += kChunk) {
    const std::size_t n = std::min(kChunk, batch.size() - first);
    model_kernels::gather(data, batch, first, n, s.inputs, &s.labels);
    s.logits = weights_t.t() * s.inputs;
    s.logits.each_col() += bias;
    loss_sum += model_kernels::softmax_cross_entropy(s.logits, s.labels, grad_scale, correct);
    grad_weights_t += s.inputs * s.logits.t();
    grad_bias += arma::sum(s.logits, 1);
  }
  return loss_sum / static_cast<double>(batch.size());
}

Evaluation SoftmaxRegression::evaluate(const arma::fvec& params, const Dataset& data) const {
  assert(params.n_elem == num_params());
  assert(data.dim() == dim_);
  Evaluation result;
  if (data.size() == 0) return result;
  const arma::fmat weights_t = const_matrix_view(params.memptr(), dim_, classes_);
  const arma::fvec bias = const_vector_view(params.memptr() + classes_ * dim_, classes_);
  Scratch& s = scratch;
  double loss_sum = 0.0;
  std::size_t correct = 0;
  for (std::size_t first = 0; first < data.size(); first += kChunk) {
    const std::size_t n = std::min(kChunk, data.size() - first);
    const arma::fmat inputs = const_matrix_view(data.features.colptr(first), dim_, n);
    s.logits = weights_t.t() * inputs;
    s.logits.each_col() += bias;
    loss_sum += model_kernels::softmax_cross_entropy(
        s.logits, std::span<const std::uint32_t>(data.labels).subspan(first, n), 1.0f, correct);
  }
  result.loss = loss_sum / static_cast<double>(data.size());
  result.accuracy = static_cast<double>(correct) / static_cast<double>(data.size());
  return result;
}

double SoftmaxRegression::macs_per_sample() const {
  return 2.0 * static_cast<double>(classes_) * static_cast<double>(dim_ + 1);
}

namespace {
FEDSIM_REGISTER(
    ModelRegistry, "softmax_regression",
    [](const Config& settings, const ModelInput& input) -> std::unique_ptr<Model> {
      return std::make_unique<SoftmaxRegression>(settings, input);
    },
    "multinomial logistic regression (convex); settings: init_scale");
}  // namespace

}  // namespace fedsim
