#include "clients/client.h"

#include <cassert>

namespace fedsim {

namespace {

// fedsgd's "optimizer": keeps the minibatch gradient and leaves the model
// where it is (one step, so the gradient is taken at the received model).
class GradientCapture final : public Optimizer {
 public:
  void step(arma::fvec&, const arma::fvec& grad, double) override { gradient = grad; }
  std::unique_ptr<Optimizer> fresh() const override { return std::make_unique<GradientCapture>(); }
  // Lives for one local round only; nothing to carry.
  void save(StateWriter& out) const override { out.begin("gradient_capture"); }
  void restore(StateReader& in) override { in.begin("gradient_capture"); }
  arma::fvec gradient;
};

}  // namespace

ClientRoundResult SimClient::run_round(const ClientContext& ctx, std::uint32_t round, std::uint64_t model_version,
                                       const arma::fvec& start_model, CodecLink& link, ClientMemory& memory) const {
  assert(!colludes());
  return send(ctx, round, model_version, train(ctx, round, start_model, memory), nullptr, link);
}

LocalRound SimClient::train(const ClientContext& ctx, std::uint32_t round, const arma::fvec& start_model,
                            ClientMemory& memory) const {
  arma::fvec params = start_model;
  Rng train_rng = Rng::derive(ctx.seed, Stream::kTraining, {id_, round});
  LocalTrainingSettings training = ctx.training;
  training.precision = precision_;
  GradientCapture capture;
  Optimizer* optimizer = nullptr;
  if (ctx.content == UpdateContent::kGradient) {
    optimizer = &capture;
  } else if (ctx.optimizer) {
    if (!memory.optimizer || ctx.reset_optimizer_each_round) memory.optimizer = ctx.optimizer->fresh();
    optimizer = memory.optimizer.get();
  }
  const bool flipped = attack_ && attack_->flips_labels();
  assert(!flipped || ctx.flipped_train);
  const Dataset& data = flipped ? *ctx.flipped_train : *ctx.train;
  const LocalTrainingResult local = run_local_sgd(*ctx.model, data, data_, training, params, train_rng, optimizer);

  LocalRound out;
  switch (ctx.content) {
    case UpdateContent::kDifference: out.message = params - start_model; break;
    case UpdateContent::kWeights: out.message = std::move(params); break;
    case UpdateContent::kGradient: out.message = capture.gradient; break;
  }
  if (out.message.n_elem != start_model.n_elem) out.message.zeros(start_model.n_elem);  // no local data: no gradient
  // The model's movement since this client's last round (x_t - x_{t-1} when
  // it takes part in every round, as CHB's workers do); unknown on its first.
  if (ctx.track_model_movement) {
    if (memory.last_model.n_elem == start_model.n_elem) {
      out.movement_sq = 0.0;
      for (std::size_t i = 0; i < start_model.n_elem; ++i) {
        const double d = static_cast<double>(start_model[i]) - static_cast<double>(memory.last_model[i]);
        out.movement_sq += d * d;
      }
    }
    memory.last_model = start_model;
  }
  out.mean_loss = local.mean_loss;
  out.macs = ctx.model->macs_per_sample() * static_cast<double>(local.samples_processed) + local.extra_macs;
  return out;
}

ClientRoundResult SimClient::send(const ClientContext& ctx, std::uint32_t round, std::uint64_t model_version,
                                  LocalRound local, const ColluderStatistics* colluders, CodecLink& link) const {
  assert((colluders != nullptr) == colludes());
  if (attack_) {
    Rng attack_rng = Rng::derive(ctx.seed, Stream::kAttack, {id_, round});
    attack_->corrupt(local.message, colluders, attack_rng);
  }
  UpdateHeader header;
  header.client = id_;
  header.round = round;
  header.base_version = model_version;
  header.num_samples = static_cast<std::uint32_t>(data_.size());
  header.train_loss = static_cast<float>(local.mean_loss);
  Rng uplink_rng = Rng::derive(ctx.seed, Stream::kUplink, {id_, round});

  ClientRoundResult result;
  result.update_bytes =
      link.send_update(header, {local.message.memptr(), local.message.n_elem}, uplink_rng, local.movement_sq);
  result.macs = local.macs;
  return result;
}

}  // namespace fedsim
