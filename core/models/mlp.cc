#include "core/models/mlp.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <string>

#include "core/base/errors.h"
#include "core/models/model_kernels.h"

namespace fedsim {

using model_kernels::const_matrix_view;
using model_kernels::const_vector_view;
using model_kernels::kChunk;
using model_kernels::relu_layer_backward;

// Per-thread scratch, so that the const methods stay thread-safe without
// allocating on every call. activations[0] is the gathered input block;
// activations[l] for l = 1..k the post-ReLU hidden outputs; the last the logits
// (overwritten by the output gradient).
struct Mlp::Workspace {
  std::vector<arma::fmat> activations;
  arma::fmat delta[2];
  std::vector<std::uint32_t> labels;
};

Mlp::Mlp(const Config& settings, const ModelInput& input) {
  std::vector<std::int64_t> hidden{200};
  if (settings.has("hidden")) {
    hidden = settings.get_int_list("hidden", 1, 100000);
    if (hidden.empty()) settings.fail("hidden", "a non-empty list of layer widths", "an empty list");
  }
  if (input.num_classes < 2)
    throw InputError(settings.where() + ": mlp needs a classification data set (>= 2 classes), found " +
                     (input.num_classes == 0 ? std::string("a regression data set") : std::string("1 class")));
  if (input.dim == 0) throw InputError(settings.where() + ": mlp needs features, found dimension 0");
  widths_.push_back(input.dim);
  for (std::int64_t h : hidden) widths_.push_back(static_cast<std::size_t>(h));
  widths_.push_back(input.num_classes);
  for (std::size_t l = 0; l + 1 < widths_.size(); ++l) {
    Dense d{widths_[l], widths_[l + 1], num_params_, num_params_ + widths_[l] * widths_[l + 1]};
    num_params_ = d.bias_offset + d.out;
    dense_.push_back(d);
  }
}

std::vector<Layer> Mlp::layers() const {
  std::vector<Layer> out;
  for (std::size_t l = 0; l < dense_.size(); ++l) {
    const std::string name = "dense" + std::to_string(l);
    out.push_back(Layer{name + ".weight", dense_[l].weight_offset, dense_[l].in * dense_[l].out, dense_[l].in,
                        dense_[l].out});
    out.push_back(Layer{name + ".bias", dense_[l].bias_offset, dense_[l].out});
  }
  return out;
}

void Mlp::init(arma::fvec& params, Rng& rng) const {
  params.zeros(num_params_);
  for (const Dense& d : dense_) {
    const double stddev = std::sqrt(2.0 / static_cast<double>(d.in));
    float* w = params.memptr() + d.weight_offset;
    for (std::size_t i = 0; i < d.in * d.out; ++i) w[i] = static_cast<float>(stddev * rng.normal());
  }
}

void Mlp::forward(const arma::fvec& params, const arma::fmat& inputs, Workspace& ws) const {
  ws.activations.resize(dense_.size() + 1);
  for (std::size_t l = 0; l < dense_.size(); ++l) {
    const Dense& d = dense_[l];
    const arma::fmat weights_t = const_matrix_view(params.memptr() + d.weight_offset, d.in, d.out);
    const arma::fvec bias = const_vector_view(params.memptr() + d.bias_offset, d.out);
    arma::fmat& z = ws.activations[l + 1];
    z = weights_t.t() * (l == 0 ? inputs : ws.activations[l]);
    z.each_col() += bias;
    if (l + 1 < dense_.size()) {
      float* p = z.memptr();
      for (std::size_t i = 0; i < z.n_elem; ++i) p[i] = std::max(p[i], 0.0f);
    }
  }
}

double Mlp::loss_and_gradient(const arma::fvec& params, const Dataset& data, std::span<const std::uint32_t> batch,
                              arma::fvec& grad) const {
  assert(params.n_elem == num_params_);
  assert(data.dim() == widths_.front());
  grad.zeros(num_params_);
  if (batch.empty()) return 0.0;
  thread_local Workspace ws;
  const float grad_scale = 1.0f / static_cast<float>(batch.size());
  double loss_sum = 0.0;
  std::size_t correct = 0;
  ws.activations.resize(dense_.size() + 1);
  for (std::size_t first = 0; first < batch.size(); first += kChunk) {
    const std::size_t n = std::min(kChunk, batch.size() - first);
    model_kernels::gather(data, batch, first, n, ws.activations[0], &ws.labels);
    forward(params, ws.activations[0], ws);
    loss_sum += model_kernels::softmax_cross_entropy(ws.activations.back(), ws.labels, grad_scale, correct);
    // Backpropagation: delta = d(loss)/d(pre-activation) of layer l's output.
    const arma::fmat* delta = &ws.activations.back();
    for (std::size_t l = dense_.size(); l-- > 0;) {
      const Dense& d = dense_[l];
      const arma::fmat& layer_input = ws.activations[l];
      arma::fmat grad_weights_t(grad.memptr() + d.weight_offset, d.in, d.out, false, true);
      arma::fvec grad_bias(grad.memptr() + d.bias_offset, d.out, false, true);
      grad_weights_t += layer_input * delta->t();
      grad_bias += arma::sum(*delta, 1);
      if (l == 0) break;
      // Through W_l, then through the ReLU of layer l's input (zero where it was clipped).
      const arma::fmat weights_t = const_matrix_view(params.memptr() + d.weight_offset, d.in, d.out);
      arma::fmat& next = ws.delta[l % 2];
      relu_layer_backward(weights_t, layer_input, *delta, next);
      delta = &next;
    }
  }
  return loss_sum / static_cast<double>(batch.size());
}

Evaluation Mlp::evaluate(const arma::fvec& params, const Dataset& data) const {
  assert(params.n_elem == num_params_);
  assert(data.dim() == widths_.front() && data.labels.size() == data.size());
  Evaluation result;
  if (data.size() == 0) return result;
  thread_local Workspace ws;
  double loss_sum = 0.0;
  std::size_t correct = 0;
  for (std::size_t first = 0; first < data.size(); first += kChunk) {
    const std::size_t n = std::min(kChunk, data.size() - first);
    const arma::fmat inputs = const_matrix_view(data.features.colptr(first), widths_.front(), n);
    forward(params, inputs, ws);
    loss_sum += model_kernels::softmax_cross_entropy(
        ws.activations.back(), std::span<const std::uint32_t>(data.labels).subspan(first, n), 1.0f, correct);
  }
  result.loss = loss_sum / static_cast<double>(data.size());
  result.accuracy = static_cast<double>(correct) / static_cast<double>(data.size());
  return result;
}

double Mlp::macs_per_sample() const {
  double macs = 0.0;
  for (std::size_t l = 0; l < dense_.size(); ++l) {
    const double c = l == 0 ? 2.0 : 3.0;
    macs += c * static_cast<double>(dense_[l].in) * static_cast<double>(dense_[l].out) +
            2.0 * static_cast<double>(dense_[l].out);
  }
  return macs;
}

namespace {
FEDSIM_REGISTER(
    ModelRegistry, "mlp",
    [](const Config& settings, const ModelInput& input) -> std::unique_ptr<Model> {
      return std::make_unique<Mlp>(settings, input);
    },
    "multi-layer perceptron, ReLU hidden layers, softmax output; settings: hidden (widths)");
}  // namespace

}  // namespace fedsim
