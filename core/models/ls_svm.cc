#include "core/models/ls_svm.h"

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
  std::vector<std::uint32_t> labels;
  std::vector<float> targets;
};
thread_local Scratch scratch;

void signed_targets(std::span<const std::uint32_t> labels, std::vector<float>& targets) {
  targets.resize(labels.size());
  for (std::size_t j = 0; j < labels.size(); ++j) {
    assert(labels[j] < 2);
    targets[j] = labels[j] == 1 ? 1.0f : -1.0f;
  }
}

}  // namespace

LsSvm::LsSvm(const Config& settings, const ModelInput& input) : dim_(input.dim) {
  l2_ = settings.get_double("l2", 0.0, 0.0, 1e6);
  if (input.num_classes != 2)
    throw InputError(settings.where() + ": ls_svm needs a binary classification data set (2 classes), found " +
                     (input.num_classes == 0 ? std::string("a regression data set")
                                             : std::to_string(input.num_classes) + " classes"));
  if (dim_ == 0) throw InputError(settings.where() + ": ls_svm needs features, found dimension 0");
}

std::vector<Layer> LsSvm::layers() const { return {Layer{"weight", 0, dim_}, Layer{"bias", dim_, 1}}; }

void LsSvm::init(arma::fvec& params, Rng&) const { params.zeros(num_params()); }

double LsSvm::loss_and_gradient(const arma::fvec& params, const Dataset& data, std::span<const std::uint32_t> batch,
                                arma::fvec& grad) const {
  assert(params.n_elem == num_params());
  assert(data.dim() == dim_ && data.labels.size() == data.size());
  grad.zeros(num_params());
  const arma::fvec w = const_vector_view(params.memptr(), dim_);
  arma::fvec grad_w(grad.memptr(), dim_, false, true);
  Scratch& s = scratch;
  double loss_sum = 0.0;
  if (!batch.empty()) {
    const float grad_scale = 1.0f / static_cast<float>(batch.size());
    for (std::size_t first = 0; first < batch.size(); first += kChunk) {
      const std::size_t n = std::min(kChunk, batch.size() - first);
      model_kernels::gather(data, batch, first, n, s.inputs, &s.labels);
      signed_targets(s.labels, s.targets);
      loss_sum += model_kernels::least_squares_block(w, params[dim_], s.inputs, s.targets.data(), grad_scale,
                                                     &grad_w, &grad[dim_], nullptr, s.residual);
    }
    loss_sum /= static_cast<double>(batch.size());
  }
  if (l2_ > 0.0) {
    loss_sum += 0.5 * l2_ * static_cast<double>(arma::dot(w, w));
    grad_w += static_cast<float>(l2_) * w;
  }
  return loss_sum;
}

Evaluation LsSvm::evaluate(const arma::fvec& params, const Dataset& data) const {
  assert(params.n_elem == num_params());
  assert(data.dim() == dim_ && data.labels.size() == data.size());
  Evaluation result;
  if (data.size() == 0) return result;
  const arma::fvec w = const_vector_view(params.memptr(), dim_);
  Scratch& s = scratch;
  double loss_sum = 0.0;
  std::size_t correct = 0;
  for (std::size_t first = 0; first < data.size(); first += kChunk) {
    const std::size_t n = std::min(kChunk, data.size() - first);
    const arma::fmat inputs = const_matrix_view(data.features.colptr(first), dim_, n);
    signed_targets(std::span<const std::uint32_t>(data.labels).subspan(first, n), s.targets);
    loss_sum += model_kernels::least_squares_block(w, params[dim_], inputs, s.targets.data(), 0.0f, nullptr, nullptr,
                                                   &correct, s.residual);
  }
  result.loss = loss_sum / static_cast<double>(data.size()) + 0.5 * l2_ * static_cast<double>(arma::dot(w, w));
  result.accuracy = static_cast<double>(correct) / static_cast<double>(data.size());
  return result;
}

namespace {
FEDSIM_REGISTER(
    ModelRegistry, "ls_svm",
    [](const Config& settings, const ModelInput& input) -> std::unique_ptr<Model> {
      return std::make_unique<LsSvm>(settings, input);
    },
    "least-squares SVM, binary labels as -1/+1 (convex); settings: l2");
}  // namespace

}  // namespace fedsim
