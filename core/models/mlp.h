// Multi-layer perceptron: the non-convex classifier.
#pragma once

#include <armadillo>
#include <cstdint>
#include <span>
#include <vector>

#include "core/models/model.h"

namespace fedsim {

// Fully connected layers dim -> hidden[0] -> ... -> hidden[k-1] -> classes,
// ReLU after every hidden layer, softmax cross-entropy (mean over samples) on
// the output.
// Parameter layout, layer l = 0..k (in -> out): W_l row-major (out x in, so
// stored as the column-major in x out matrix W_l^T), then b_l (out); layers
// are consecutive. layers() lists "dense<l>.weight" and "dense<l>.bias"
// separately.
// Settings: hidden (list of widths, default [200], each in [1, 100000]).
// Init: He et al. 2015, W_l ~ N(0, 2 / in) for every layer; biases 0.
// macs_per_sample = sum over layers of c * in * out + 2 * out, with c = 2 for
// the first layer (forward + weight gradient) and c = 3 for the others (plus
// the input gradient); the 2 * out counts bias add and bias gradient.
class Mlp final : public Model {
 public:
  Mlp(const Config& settings, const ModelInput& input);

  std::size_t num_params() const override { return num_params_; }
  std::vector<Layer> layers() const override;
  void init(arma::fvec& params, Rng& rng) const override;
  double loss_and_gradient(const arma::fvec& params, const Dataset& data, std::span<const std::uint32_t> batch,
                           arma::fvec& grad) const override;
  Evaluation evaluate(const arma::fvec& params, const Dataset& data) const override;
  double macs_per_sample() const override;

  // Layer widths, input first, classes last.
  const std::vector<std::size_t>& widths() const { return widths_; }

 private:
  struct Dense {
    std::size_t in, out;
    std::size_t weight_offset, bias_offset;
  };
  struct Workspace;
  // Fills ws.activations[1..k+1] (the last is the logits) for inputs.
  void forward(const arma::fvec& params, const arma::fmat& inputs, Workspace& ws) const;

  std::vector<std::size_t> widths_;
  std::vector<Dense> dense_;
  std::size_t num_params_ = 0;
};

}  // namespace fedsim
