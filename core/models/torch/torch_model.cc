#include "core/models/torch/torch_model.h"

// Per-operator ATen headers, not <torch/torch.h>: parsing them takes about
// 8 s of CPU against 26 s for <torch/torch.h> (measured on the development
// machine), and every LibTorch translation unit pays it.
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/from_blob.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include "core/base/errors.h"
#include "core/models/model_kernels.h"
#include "core/models/torch/torch_network.h"

namespace fedsim {

void use_single_threaded_torch() {
  static std::once_flag once;
  std::call_once(once, [] {
    at::set_num_threads(1);
    // Only settable before the inter-op pool first runs: if something in the
    // process started it already, it keeps its size (fedsim never uses it).
    try {
      at::set_num_interop_threads(1);
    } catch (const std::exception&) {
    }
    at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/false);
  });
  // at::set_num_threads sets the OpenMP thread count of the calling thread
  // and records it; other threads pick the record up in their first ATen
  // parallel loop, but oneDNN's convolutions ask OpenMP directly. So every
  // thread applies it before its first pass.
  thread_local const bool applied = (at::init_num_threads(), true);
  (void)applied;
}

namespace {

std::vector<std::int64_t> batch_shape(std::int64_t n, const std::vector<std::int64_t>& sample_shape) {
  std::vector<std::int64_t> shape{n};
  shape.insert(shape.end(), sample_shape.begin(), sample_shape.end());
  return shape;
}

// Tensors over the slices of the flat parameter vector (no copy). LibTorch
// never writes to them: autograd computes gradients into new tensors.
std::vector<at::Tensor> parameter_tensors(const arma::fvec& params, const std::vector<ParameterSpec>& specs,
                                          bool requires_grad) {
  std::vector<at::Tensor> out;
  out.reserve(specs.size());
  float* p = const_cast<float*>(params.memptr());
  for (const ParameterSpec& spec : specs) {
    at::Tensor t = at::from_blob(p, spec.shape, at::TensorOptions().dtype(at::kFloat));
    if (requires_grad) t.requires_grad_(true);
    out.push_back(std::move(t));
    p += spec.size;
  }
  return out;
}

at::Tensor label_tensor(std::span<const std::uint32_t> labels, std::vector<std::int64_t>& scratch) {
  scratch.assign(labels.begin(), labels.end());
  return at::from_blob(scratch.data(), {static_cast<std::int64_t>(scratch.size())},
                       at::TensorOptions().dtype(at::kLong));
}

// The network's output must be the n x classes logits; a TorchScript module
// may hard-code a batch size or return something else.
void check_logits(const at::Tensor& logits, std::int64_t n, std::uint32_t classes) {
  if (logits.dim() != 2 || logits.size(0) != n || logits.size(1) != static_cast<std::int64_t>(classes) ||
      logits.scalar_type() != at::kFloat) {
    std::string found;
    for (std::int64_t d = 0; d < logits.dim(); ++d) found += (d ? " x " : "") + std::to_string(logits.size(d));
    throw InputError("the network returned a " + found + " " + std::string(c10::toString(logits.scalar_type())) +
                     " tensor for a batch of " + std::to_string(n) + ", expected " + std::to_string(n) + " x " +
                     std::to_string(classes) + " float32 logits");
  }
}

}  // namespace

TorchModel::TorchModel(std::unique_ptr<const TorchNetwork> network) : network_(std::move(network)) {
  assert(network_ != nullptr);
  use_single_threaded_torch();
  for (const ParameterSpec& spec : network_->parameters()) {
    layers_.push_back(Layer{spec.name, num_params_, spec.size});
    num_params_ += spec.size;
  }
  sample_dim_ = 1;
  for (std::int64_t d : network_->sample_shape()) sample_dim_ *= static_cast<std::size_t>(d);
}

TorchModel::~TorchModel() = default;

void TorchModel::init(arma::fvec& params, Rng& rng) const {
  params.zeros(num_params_);
  network_->init(params, rng);
}

double TorchModel::loss_and_gradient(const arma::fvec& params, const Dataset& data,
                                     std::span<const std::uint32_t> batch, arma::fvec& grad) const {
  assert(params.n_elem == num_params_);
  assert(data.dim() == sample_dim_);
  grad.zeros(num_params_);
  if (batch.empty()) return 0.0;
  use_single_threaded_torch();
  thread_local arma::fmat inputs;
  thread_local std::vector<std::uint32_t> labels;
  thread_local std::vector<std::int64_t> labels64;
  const std::vector<ParameterSpec>& specs = network_->parameters();
  const std::vector<at::Tensor> weights = parameter_tensors(params, specs, /*requires_grad=*/true);
  const double inv_batch = 1.0 / static_cast<double>(batch.size());
  double loss_sum = 0.0;
  for (std::size_t first = 0; first < batch.size(); first += kTorchChunk) {
    const std::size_t n = std::min(kTorchChunk, batch.size() - first);
    model_kernels::gather(data, batch, first, n, inputs, &labels);
    const at::Tensor x = at::from_blob(inputs.memptr(), batch_shape(static_cast<std::int64_t>(n), network_->sample_shape()),
                                       at::TensorOptions().dtype(at::kFloat));
    const at::Tensor logits = network_->logits(x, weights);
    check_logits(logits, static_cast<std::int64_t>(n), network_->num_classes());
    // Summed over the chunk, scaled by 1 / batch: the chunks' gradients add
    // up to the gradient of the batch mean.
    const at::Tensor chunk_loss =
        at::cross_entropy_loss(logits, label_tensor(labels, labels64), {}, at::Reduction::Sum).mul(inv_batch);
    // allow_unused: a TorchScript module may hold a parameter its forward
    // never reads; its gradient is zero (an undefined tensor here).
    const std::vector<at::Tensor> grads =
        torch::autograd::grad({chunk_loss}, weights, {}, c10::nullopt, /*create_graph=*/false, /*allow_unused=*/true);
    float* g = grad.memptr();
    for (std::size_t i = 0; i < specs.size(); ++i) {
      if (!grads[i].defined()) {
        if (first == 0) std::fill(g, g + specs[i].size, 0.0f);
        g += specs[i].size;
        continue;
      }
      const at::Tensor gi = grads[i].contiguous();
      const float* src = gi.data_ptr<float>();
      if (first == 0) {
        std::memcpy(g, src, specs[i].size * sizeof(float));
      } else {
        for (std::size_t k = 0; k < specs[i].size; ++k) g[k] += src[k];
      }
      g += specs[i].size;
    }
    loss_sum += chunk_loss.item<double>();
  }
  return loss_sum;
}

Evaluation TorchModel::evaluate(const arma::fvec& params, const Dataset& data) const {
  assert(params.n_elem == num_params_);
  assert(data.dim() == sample_dim_ && data.labels.size() == data.size());
  Evaluation result;
  if (data.size() == 0) return result;
  use_single_threaded_torch();
  c10::InferenceMode inference;
  thread_local std::vector<std::int64_t> labels64;
  const std::vector<at::Tensor> weights = parameter_tensors(params, network_->parameters(), false);
  double loss_sum = 0.0;
  std::size_t correct = 0;
  for (std::size_t first = 0; first < data.size(); first += kTorchChunk) {
    const std::size_t n = std::min(kTorchChunk, data.size() - first);
    const at::Tensor x =
        at::from_blob(const_cast<float*>(data.features.colptr(first)),
                      batch_shape(static_cast<std::int64_t>(n), network_->sample_shape()),
                      at::TensorOptions().dtype(at::kFloat));
    const at::Tensor logits = network_->logits(x, weights);
    check_logits(logits, static_cast<std::int64_t>(n), network_->num_classes());
    const std::span<const std::uint32_t> labels = std::span<const std::uint32_t>(data.labels).subspan(first, n);
    const at::Tensor losses = at::cross_entropy_loss(logits, label_tensor(labels, labels64), {}, at::Reduction::None);
    const at::Tensor predicted = at::argmax(logits, 1).contiguous();
    const float* loss = losses.data_ptr<float>();
    const std::int64_t* guess = predicted.data_ptr<std::int64_t>();
    for (std::size_t j = 0; j < n; ++j) {
      loss_sum += static_cast<double>(loss[j]);
      correct += static_cast<std::uint32_t>(guess[j]) == labels[j] ? 1 : 0;
    }
  }
  result.loss = loss_sum / static_cast<double>(data.size());
  result.accuracy = static_cast<double>(correct) / static_cast<double>(data.size());
  return result;
}

double TorchModel::macs_per_sample() const { return network_->macs_per_sample(); }

}  // namespace fedsim
