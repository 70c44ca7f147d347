#include "core/models/linear_regression.h"

#include <algorithm>
#include <cassert>
#include <string>

#include "core/base/errors.h"
#include "core/models/model_kernels.h"

namespace fedsim {

namespace {

using model_kernels::const_matrix_view;
using model_kernels::const_vector_view;
using model_kernels::kChunk;

struct Scratch {
  arma::fmat inputs;
  arma::frowvec residual;
  std::vector<float> targets;
};
thread_local Scratch scratch;

}  // namespace

LinearRegression::LinearRegression(const Config& settings, const ModelInput& input) : dim_(input.dim) {
  if (input.num_classes != 0)
    throw InputError(settings.where() + ": linear_regression needs a regression data set, found " +
                     std::to_string(input.num_classes) + " classes");
  if (dim_ == 0) throw InputError(settings.where() + ": linear_regression needs features, found dimension 0");
}

std::vector<Layer> LinearRegression::layers() const { return {Layer{"weight", 0, dim_}, Layer{"bias", dim_, 1}}; }

void LinearRegression::init(arma::fvec& params, Rng&) const { params.zeros(num_params()); }

double LinearRegression::loss_and_gradient(const arma::fvec& params, const Dataset& data,
                                           std::span<const std::uint32_t> batch, arma::fvec& grad) const {
  assert(params.n_elem == num_params());
  assert(data.dim() == dim_ && data.targets.n_elem == data.size());
  grad.zeros(num_params());
  if (batch.empty()) return 0.0;
  const arma::fvec w = const_vector_view(params.memptr(), dim_);
  arma::fvec grad_w(grad.memptr(), dim_, false, true);
  Scratch& s = scratch;
  const float grad_scale = 1.0f / static_cast<float>(batch.size());
  double loss_sum = 0.0;
  for (std::size_t first = 0; first < batch.size(); first += kChunk) {
    const std::size_t n = std::min(kChunk, batch.size() - first);
    model_kernels::gather(data, batch, first, n, s.inputs, nullptr);
    s.targets.resize(n);
    for (std::size_t j = 0; j < n; ++j) s.targets[j] = data.targets[batch[first + j]];
    loss_sum += model_kernels::least_squares_block(w, params[dim_], s.inputs, s.targets.data(), grad_scale, &grad_w,
                                                   &grad[dim_], nullptr, s.residual);
  }
  return loss_sum / static_cast<double>(batch.size());
}

Evaluation LinearRegression::evaluate(const arma::fvec& params, const Dataset& data) const {
  assert(params.n_elem == num_params());
  assert(data.dim() == dim_ && data.targets.n_elem == data.size());
  Evaluation result;
  if (data.size() == 0) return result;
  const arma::fvec w = const_vector_view(params.memptr(), dim_);
  Scratch& s = scratch;
  double loss_sum = 0.0;
  for (std::size_t first = 0; first < data.size(); first += kChunk) {
    const std::size_t n = std::min(kChunk, data.size() - first);
    const arma::fmat inputs = const_matrix_view(data.features.colptr(first), dim_, n);
    loss_sum += model_kernels::least_squares_block(w, params[dim_], inputs, data.targets.memptr() + first, 0.0f,
                                                   nullptr, nullptr, nullptr, s.residual);
  }
  result.loss = loss_sum / static_cast<double>(data.size());
  return result;
}

namespace {
FEDSIM_REGISTER(
    ModelRegistry, "linear_regression",
    [](const Config& settings, const ModelInput& input) -> std::unique_ptr<Model> {
      return std::make_unique<LinearRegression>(settings, input);
    },
    "least squares 0.5*(w^T a + b - y)^2 on regression targets (convex)");
}  // namespace

}  // namespace fedsim
