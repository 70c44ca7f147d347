// A simulated client: its data view and one round of local work, from the
// model decoded off the round's ModelDown to the serialized UpdateUp it sends
// through its codec link (core/wire/codec_link.h).
#pragma once

#include <armadillo>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

#include "clients/attack.h"
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
  // The training set with flipped labels (clients/attack.h), for clients whose
  // attack flips labels; null when no client does.
  const Dataset* flipped_train = nullptr;
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

// A client's local round before it speaks: the message an honest client
// would send, and the header fields it would report.
struct LocalRound {
  arma::fvec message;  // difference, weights or gradient (ClientContext::content), before the uplink pipeline
  double mean_loss = 0.0;
  double macs = 0.0;
  double movement_sq = NAN;  // ||x_t - x_{t-1}||^2 when the uplink needs it (chb_censoring); NaN: unknown
};

// Contract: run_round() of different clients may run concurrently; one
// client runs one round at a time. The result depends only on the inputs
// and (seed, client id, round): never on timing or thread count.
// Per-client state: id, data view (a list of sample indices), precision and
// attack (null for an honest client); its codec link is owned by the server
// (server/client_state.h).
class SimClient {
 public:
  // `precision`: the arithmetic of its local training (its population class's
  // precision); overrides ClientContext::training.precision. `attack`: owned
  // by the population, outlives the client.
  SimClient(std::uint32_t id, IndexView data, Precision precision = Precision::kFp32, const Attack* attack = nullptr)
      : id_(id), precision_(precision), data_(std::move(data)), attack_(attack) {}

  // `start_model` is the model decoded from the round's ModelDown, which
  // carried model version `model_version`; the update goes out through `link`.
  // train() then send(); for a colluding attacker the caller runs the two
  // apart and hands send() the colluders' statistics. `memory` is this
  // client's own (see ClientMemory).
  ClientRoundResult run_round(const ClientContext& ctx, std::uint32_t round, std::uint64_t model_version,
                              const arma::fvec& start_model, CodecLink& link, ClientMemory& memory) const;
  // Local training from `start_model` (an attacker that flips labels trains on
  // ctx.flipped_train): the honest message.
  LocalRound train(const ClientContext& ctx, std::uint32_t round, const arma::fvec& start_model,
                   ClientMemory& memory) const;
  // Applies the attack (if any) to the message and sends it through `link`.
  // `colluders` is required (non-null) exactly when the attack colludes.
  ClientRoundResult send(const ClientContext& ctx, std::uint32_t round, std::uint64_t model_version, LocalRound local,
                         const ColluderStatistics* colluders, CodecLink& link) const;

  std::uint32_t id() const { return id_; }
  std::size_t num_samples() const { return data_.size(); }
  const IndexView& data() const { return data_; }
  Precision precision() const { return precision_; }
  const Attack* attack() const { return attack_; }
  bool colludes() const { return attack_ && attack_->colludes(); }

 private:
  std::uint32_t id_;
  Precision precision_;  // next to id_: the attack pointer costs no padding
  IndexView data_;
  const Attack* attack_;
};

}  // namespace fedsim
