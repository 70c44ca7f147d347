// Models as functions of a flat float parameter vector.
#pragma once

#include <armadillo>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/base/config.h"
#include "core/base/layer.h"
#include "core/data/dataset.h"
#include "core/base/registry.h"
#include "core/base/rng.h"

namespace fedsim {

// The structure of a linear least-squares model, declared by the model so that
// low-precision training can double-sample its gradient (ZipML; see
// clients/quantized_compute.h): the loss over a batch is
//   mean_j 0.5 * (w^T a_j + b - t_j)^2 + 0.5 * l2 * ||w||^2,
// with params = [w (dim); b] and the target t_j of sample j taken from
// Dataset::targets, or from binary labels {0, 1} mapped to {-1, +1}.
struct LeastSquaresForm {
  bool targets_from_labels = false;
  double l2 = 0.0;
};

struct Evaluation {
  double loss = 0.0;      // mean loss over the data set
  double accuracy = 0.0;  // classification: fraction correct; regression: 0
};

// Contract: a Model is immutable after construction and every method is const
// and thread-safe; all mutable state (parameters, gradients) is passed in.
// The parameter vector layout is fixed by layers(), which tile [0, num_params).
class Model {
 public:
  virtual ~Model() = default;

  virtual std::size_t num_params() const = 0;
  virtual std::vector<Layer> layers() const = 0;
  // Fills params with the initial model, drawing from rng.
  virtual void init(arma::fvec& params, Rng& rng) const = 0;
  // Mean loss over data[batch] and, into grad (resized to num_params), its gradient.
  virtual double loss_and_gradient(const arma::fvec& params, const Dataset& data,
                                   std::span<const std::uint32_t> batch, arma::fvec& grad) const = 0;
  // Mean loss and accuracy over the whole data set.
  virtual Evaluation evaluate(const arma::fvec& params, const Dataset& data) const = 0;
  // Multiply-adds for one sample's forward and backward pass: the operation
  // count the device profiles turn into simulated time and energy.
  virtual double macs_per_sample() const = 0;
  // The model's least-squares form if its loss has that form exactly (see
  // LeastSquaresForm), else nullopt (the default).
  virtual std::optional<LeastSquaresForm> least_squares_form() const { return std::nullopt; }
};

// Shape of the data a model is built for.
struct ModelInput {
  std::size_t dim = 0;
  std::uint32_t num_classes = 0;  // 0 = regression
};

using ModelRegistry = Registry<Model, const Config&, const ModelInput&>;

}  // namespace fedsim
