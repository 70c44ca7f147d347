#include "clients/client.h"

#include <cassert>

namespace fedsim {

ClientRoundResult SimClient::run_round(const ClientContext& ctx, std::uint32_t round, std::uint64_t model_version,
                                       const arma::fvec& start_model, CodecLink& link) const {
  assert(!colludes());
  return send(ctx, round, model_version, train(ctx, round, start_model), nullptr, link);
}

LocalRound SimClient::train(const ClientContext& ctx, std::uint32_t round, const arma::fvec& start_model) const {
  arma::fvec params = start_model;
  Rng train_rng = Rng::derive(ctx.seed, Stream::kTraining, {id_, round});
  LocalTrainingSettings training = ctx.training;
  training.precision = precision_;
  const bool flipped = attack_ && attack_->flips_labels();
  assert(!flipped || ctx.flipped_train);
  const Dataset& data = flipped ? *ctx.flipped_train : *ctx.train;
  const LocalTrainingResult local = run_local_sgd(*ctx.model, data, data_, training, params, train_rng);

  LocalRound out;
  out.message = ctx.content == UpdateContent::kDifference ? arma::fvec(params - start_model) : std::move(params);
  out.mean_loss = local.mean_loss;
  out.macs = ctx.model->macs_per_sample() * static_cast<double>(local.samples_processed);
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
  result.update_bytes = link.send_update(header, {local.message.memptr(), local.message.n_elem}, uplink_rng);
  result.macs = local.macs;
  return result;
}

}  // namespace fedsim
