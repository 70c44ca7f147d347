// The seam between fedsim's Model contract and LibTorch: a network that maps
// a batch of inputs and its parameter tensors to logits. TorchModel
// (torch_model.h) turns any TorchNetwork into a Model (flat parameters,
// cross-entropy, gradients by autograd, evaluation); Cnn (cnn.h) and
// TorchScriptNetwork (torchscript_model.h) are the two networks.
//
// This header names LibTorch's tensor type without including LibTorch (a
// forward declaration): only the .cc files of core/models/torch include
// LibTorch headers, and they are the only ones that call these methods.
#pragma once

#include <armadillo>
#include <cstdint>
#include <string>
#include <vector>

#include "core/base/rng.h"

namespace at {
class Tensor;
}  // namespace at

namespace fedsim {

// One parameter tensor: its name (the Layer's), shape, and element count.
struct ParameterSpec {
  std::string name;
  std::vector<std::int64_t> shape;
  std::size_t size = 0;
};

// Contract: immutable after construction; every method is const and may be
// called from many threads at once. The flat parameter vector is the
// concatenation of the parameters' row-major (contiguous) contents in the
// order of parameters(). logits() must be deterministic: the same inputs and
// parameters give the same bits whatever thread calls it.
class TorchNetwork {
 public:
  virtual ~TorchNetwork() = default;

  const std::vector<ParameterSpec>& parameters() const { return parameters_; }
  // Shape of one sample as the network takes it, e.g. {1, 28, 28}; its
  // product is the data set's dimension. A batch is {n, sample_shape...}.
  const std::vector<std::int64_t>& sample_shape() const { return sample_shape_; }
  std::uint32_t num_classes() const { return num_classes_; }

  // Fills params (already sized to the parameter count) with the initial model.
  virtual void init(arma::fvec& params, Rng& rng) const = 0;
  // Logits (n x classes, float32) of `inputs` ({n, sample_shape...}, float32)
  // with `params` (one tensor per parameters() entry, in order, of its
  // shape; they may require gradients, and the result must depend on them
  // through autograd).
  virtual at::Tensor logits(const at::Tensor& inputs, const std::vector<at::Tensor>& params) const = 0;
  // Multiply-adds for one sample's forward and backward pass (Model's count).
  virtual double macs_per_sample() const = 0;

 protected:
  std::vector<ParameterSpec> parameters_;
  std::vector<std::int64_t> sample_shape_;
  std::uint32_t num_classes_ = 0;
};

// Multiply-adds of one convolution or dense layer for one sample, counted as
// Mlp counts its dense layers (core/models/mlp.h): forward, weight gradient
// and, except for the first layer (whose input is the data), input gradient,
// each `outputs x fan_in` multiply-adds; plus 2 per output (bias add and
// bias gradient) when the layer has a bias. `outputs` counts one sample's
// output elements (channels x height x width for a convolution), `fan_in`
// the multiply-adds per output element (in_channels x kernel area).
inline double layer_macs(double outputs, double fan_in, bool first_layer, bool has_bias) {
  return (first_layer ? 2.0 : 3.0) * outputs * fan_in + (has_bias ? 2.0 * outputs : 0.0);
}

}  // namespace fedsim
