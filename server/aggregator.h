// Aggregation rules: how the server turns the round's decoded client
// messages into the next global model.
#pragma once

#include <armadillo>
#include <cstdint>
#include <span>
#include <vector>

#include "core/base/config.h"
#include "core/base/registry.h"
#include "core/base/state_io.h"

namespace fedsim {

struct ClientUpdate {
  std::uint32_t client_id = 0;
  std::uint32_t num_samples = 0;
  double weight = 1.0;              // policy weight (staleness, ...), before sample weighting
  std::span<const float> vector;    // decoded message (model difference, or votes)
};

// Contract: apply() is called from the server's event loop only (not
// thread-safe); `updates` is sorted by client id so that floating-point sums
// do not depend on arrival order or thread count. Implementations may keep
// state across rounds (reputation, ...). An empty `updates` leaves the model unchanged.
class Aggregator {
 public:
  virtual ~Aggregator() = default;
  virtual void apply(std::span<const ClientUpdate> updates, double server_lr, arma::fvec& model) = 0;
  // Checkpoints (server/checkpoint.h): state kept across rounds (not
  // scratch). The defaults are for aggregators that keep none.
  virtual void save(StateWriter& out) const { (void)out; }
  virtual void restore(StateReader& in) { (void)in; }
};

struct AggregatorSettings {
  bool weight_by_samples = true;  // FedAvg-style weighting by local data size
};

using AggregatorRegistry = Registry<Aggregator, const Config&, const AggregatorSettings&>;

}  // namespace fedsim
