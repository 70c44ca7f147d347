// Optimizers: the step rule x <- step(x, g) that the client applies to its
// local minibatch gradients (`client_optimizer:`) and the server applies to
// the round's aggregate as a pseudo-gradient (`server_optimizer:`; FedOpt,
// Reddi et al. ICLR 2021: g = -(mean of the clients' model differences), or
// the mean of their gradients under algorithm fedsgd). One class per rule,
// registered by name; `fedsim list` prints them.
//
//   clients/optimizer_sgd.cc      sgd, momentum (heavy ball)
//   clients/optimizer_adagrad.cc  adagrad (composite mirror descent or RDA, with l1)
//   clients/optimizer_adam.cc     adam, amsgrad, yogi
//
// Every rule's update is written above its class with its paper; its state
// (moments, accumulators) is float32 like the model, except RDA's running sum
// of gradients (double: it grows with t).
#pragma once

#include <armadillo>
#include <memory>
#include <string>

#include "core/base/config.h"
#include "core/base/registry.h"
#include "core/base/state_io.h"

namespace fedsim {

// Contract: the factory reads and validates the settings (InputError with
// file:line: key); after that an instance never touches a Config, so
// fresh() may be called from any thread. One instance holds one owner's
// state (one client's, or the server's) and is used by one thread at a
// time. State is sized on the first step(); later steps must have the same
// dimension. Deterministic: no randomness.
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // One step from `params` with gradient `grad` (same size) and step size `lr`.
  virtual void step(arma::fvec& params, const arma::fvec& grad, double lr) = 0;
  // A new instance with the same settings and no state.
  virtual std::unique_ptr<Optimizer> fresh() const = 0;
  // Checkpoints (server/checkpoint.h): the state step() carries from one call
  // to the next; restore() reads what save() of an optimizer built alike
  // wrote and throws DecodeError on anything else (state vectors are sized
  // on the first step, so any consistent length is accepted).
  virtual void save(StateWriter& out) const = 0;
  virtual void restore(StateReader& in) = 0;
};

using OptimizerRegistry = Registry<Optimizer, const Config&>;

// Reads `name` (default sgd) from `settings` and builds the optimizer; the
// other keys of `settings` are its own. Throws InputError on an unknown name
// or a bad setting.
std::unique_ptr<Optimizer> make_optimizer(const Config& settings);

// Values in [0, 1) (a momentum or moment decay): InputError naming the key otherwise.
double get_decay(const Config& settings, const std::string& key, double fallback);

}  // namespace fedsim
