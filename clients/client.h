// A simulated client: its data view and one round of local work, from the
// model decoded off the round's ModelDown to the serialized UpdateUp it sends
// through its codec link (core/wire/codec_link.h).
#pragma once

#include <armadillo>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

#include "clients/local_training.h"
#include "clients/optimizer.h"
#include "core/data/dataset.h"
#include "core/models/model.h"
#include "core/wire/codec_link.h"

namespace fedsim {

// What the client sends back (chosen by the algorithm, server/algorithm.h).
enum class UpdateContent {
  kDifference,  // x_local - x_received (FedPAQ)
  kWeights,     // x_local itself (FedVote: the stage binarizes tanh(k x))
  kGradient,    // one minibatch gradient at x_received, no local step (fedsgd)
};

// Read-only context shared by all clients during a run.
struct ClientContext {
  const Model* model = nullptr;
  const Dataset* train = nullptr;
  LocalTrainingSettings training;
  UpdateContent content = UpdateContent::kDifference;
  std::uint64_t seed = 0;
  // `client_optimizer:` with its settings and no state (null: plain SGD, the
  // default); each client steps its own fresh() copy.
  const Optimizer* optimizer = nullptr;
  bool reset_optimizer_each_round = false;
  // The uplink has a stage that needs the model's last movement (chb_censoring).
  bool track_model_movement = false;
};

// What a client keeps between its rounds besides its codec link, owned by
// the server next to the link (server/client_state.h lists it): its local
// optimizer's state, and the last model it received when the uplink needs
// the model's movement. Empty until the client's first round needs it.
struct ClientMemory {
  std::unique_ptr<Optimizer> optimizer;
  arma::fvec last_model;
};

struct ClientRoundResult {
  std::string update_bytes;  // serialized wire::UpdateUp
  double macs = 0.0;         // multiply-adds of the local steps (for the device model)
};

// Contract: run_round() of different clients may run concurrently; one
// client runs one round at a time. The result depends only on the inputs
// and (seed, client id, round): never on timing or thread count.
// Per-client state: id, data view (a list of sample indices) and precision;
// its codec link is owned by the server (server/client_state.h).
class SimClient {
 public:
  // `precision`: the arithmetic of its local training (its population class's
  // precision); overrides ClientContext::training.precision.
  SimClient(std::uint32_t id, IndexView data, Precision precision = Precision::kFp32)
      : id_(id), data_(std::move(data)), precision_(precision) {}

  // `start_model` is the model decoded from the round's ModelDown, which
  // carried model version `model_version`; the update goes out through `link`.
  // `memory` is this client's own (see ClientMemory).
  ClientRoundResult run_round(const ClientContext& ctx, std::uint32_t round, std::uint64_t model_version,
                              const arma::fvec& start_model, CodecLink& link, ClientMemory& memory) const;

  std::uint32_t id() const { return id_; }
  std::size_t num_samples() const { return data_.size(); }
  const IndexView& data() const { return data_; }
  Precision precision() const { return precision_; }

 private:
  std::uint32_t id_;
  IndexView data_;
  Precision precision_;
};

}  // namespace fedsim
