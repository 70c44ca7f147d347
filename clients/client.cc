#include "clients/client.h"

namespace fedsim {

ClientRoundResult SimClient::run_round(const ClientContext& ctx, std::uint32_t round, std::uint64_t model_version,
                                       const arma::fvec& start_model, CodecLink& link) const {
  arma::fvec params = start_model;
  Rng train_rng = Rng::derive(ctx.seed, Stream::kTraining, {id_, round});
  LocalTrainingSettings training = ctx.training;
  training.precision = precision_;
  const LocalTrainingResult local = run_local_sgd(*ctx.model, *ctx.train, data_, training, params, train_rng);

  const arma::fvec message = ctx.content == UpdateContent::kDifference ? arma::fvec(params - start_model) : params;
  UpdateHeader header;
  header.client = id_;
  header.round = round;
  header.base_version = model_version;
  header.num_samples = static_cast<std::uint32_t>(data_.size());
  header.train_loss = static_cast<float>(local.mean_loss);
  Rng uplink_rng = Rng::derive(ctx.seed, Stream::kUplink, {id_, round});

  ClientRoundResult result;
  result.update_bytes = link.send_update(header, {message.memptr(), message.n_elem}, uplink_rng);
  result.macs = ctx.model->macs_per_sample() * static_cast<double>(local.samples_processed);
  return result;
}

}  // namespace fedsim
