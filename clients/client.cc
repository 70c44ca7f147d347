#include "clients/client.h"

#include "wire.pb.h"  // generated from core/wire.proto

namespace fedsim {

ClientRoundResult SimClient::run_round(const ClientContext& ctx, std::uint32_t round, std::uint64_t model_version,
                                       const arma::fvec& start_model) {
  if (!uplink_encoder_) {
    uplink_encoder_ = ctx.uplink->make(start_model.n_elem, ctx.layers,
                                       mix64(ctx.seed ^ (static_cast<std::uint64_t>(id_) << 20)));
  }
  arma::fvec params = start_model;
  Rng train_rng = Rng::derive(ctx.seed, Stream::kTraining, {id_, round});
  LocalTrainingSettings training = ctx.training;
  training.precision = precision_;
  const LocalTrainingResult local = run_local_sgd(*ctx.model, *ctx.train, data_, training, params, train_rng);

  arma::fvec message = ctx.content == UpdateContent::kDifference ? arma::fvec(params - start_model) : params;
  arma::fvec reconstructed(message.n_elem);
  Bytes payload;
  Rng uplink_rng = Rng::derive(ctx.seed, Stream::kUplink, {id_, round});
  uplink_encoder_->encode({message.memptr(), message.n_elem}, uplink_rng, payload,
                          {reconstructed.memptr(), reconstructed.n_elem});

  wire::UpdateUp up;
  up.set_client_id(id_);
  up.set_round(round);
  up.set_base_version(model_version);
  up.set_num_samples(static_cast<std::uint32_t>(data_.size()));
  up.set_train_loss(static_cast<float>(local.mean_loss));
  up.set_payload(payload.data(), payload.size());

  ClientRoundResult result;
  up.SerializeToString(&result.update_bytes);
  result.macs = ctx.model->macs_per_sample() * static_cast<double>(local.samples_processed);
  result.train_loss = local.mean_loss;
  return result;
}

}  // namespace fedsim
