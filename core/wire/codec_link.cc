#include "core/wire/codec_link.h"

#include <cmath>

#include "core/base/errors.h"
#include "wire.pb.h"  // generated from core/wire/wire.proto

namespace fedsim {

std::uint64_t uplink_shared_seed(std::uint64_t scenario_seed, std::uint32_t client) {
  return mix64(scenario_seed ^ (static_cast<std::uint64_t>(client) << 20));
}

std::uint64_t downlink_shared_seed(std::uint64_t scenario_seed) { return mix64(scenario_seed ^ 0xd0d0d0d0ULL); }

namespace {

std::span<const std::uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace

std::string CodecLink::send_update(UpdateHeader header, std::span<const float> update, Rng& rng,
                                   double model_movement_sq) {
  if (!encoder_) encoder_ = spec_->uplink.make(spec_->dim, spec_->layers, uplink_shared_seed(spec_->seed, client_));
  if (std::isfinite(model_movement_sq)) encoder_->set_model_movement(model_movement_sq);
  arma::fvec reconstructed(update.size());
  Bytes payload;
  encoder_->encode(update, rng, payload, {reconstructed.memptr(), reconstructed.n_elem});
  header.skipped = encoder_->last_skipped();

  wire::UpdateUp up;
  up.set_client_id(header.client);
  up.set_round(header.round);
  up.set_base_version(header.base_version);
  up.set_num_samples(header.num_samples);
  up.set_train_loss(header.train_loss);
  up.set_payload(payload.data(), payload.size());
  up.set_skipped(header.skipped);
  std::string bytes;
  up.SerializeToString(&bytes);
  return bytes;
}

std::uint64_t update_payload_bytes(std::string_view bytes) {
  wire::UpdateUp up;
  if (!up.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) throw DecodeError("UpdateUp does not parse");
  return up.payload().size();
}

ReceivedUpdate CodecLink::receive_update(std::string_view bytes) {
  wire::UpdateUp up;
  if (!up.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    throw DecodeError("UpdateUp from client " + std::to_string(client_) + " does not parse");
  if (up.client_id() != client_)
    throw DecodeError("UpdateUp on client " + std::to_string(client_) + "'s link names client " +
                      std::to_string(up.client_id()));
  if (!decoder_) decoder_ = spec_->uplink.make(spec_->dim, spec_->layers, uplink_shared_seed(spec_->seed, client_));
  ReceivedUpdate r;
  r.header.client = up.client_id();
  r.header.round = up.round();
  r.header.base_version = up.base_version();
  r.header.num_samples = up.num_samples();
  r.header.train_loss = up.train_loss();
  r.header.skipped = up.skipped();
  r.wire_bytes = bytes.size();
  r.vector.set_size(spec_->dim);
  decoder_->decode(bytes_of(up.payload()), {r.vector.memptr(), r.vector.n_elem});
  if (decoder_->last_skipped() != r.header.skipped)
    throw DecodeError("UpdateUp from client " + std::to_string(client_) + ": skipped flag " +
                      (r.header.skipped ? "set" : "clear") + " but the payload " +
                      (r.header.skipped ? "carries a vector" : "is a skip"));
  return r;
}

BroadcastLink::BroadcastLink(const CodecSpec& spec)
    : spec_(&spec),
      with_memory_(!spec.downlink.is_plain_float32()),
      encoder_(spec.downlink.make(spec.dim, spec.layers, downlink_shared_seed(spec.seed))),
      decoder_(spec.downlink.make(spec.dim, spec.layers, downlink_shared_seed(spec.seed))) {
  server_reference_.zeros(spec.dim);
  client_reference_.zeros(spec.dim);
}

BroadcastLink::Sent BroadcastLink::broadcast(std::uint32_t round, std::uint64_t version, const arma::fvec& params) {
  const std::size_t dim = spec_->dim;
  wire::ModelDown down;
  down.set_round(round);
  down.set_model_version(version);
  down.set_num_params(static_cast<std::uint32_t>(dim));
  down.set_is_difference(with_memory_);
  Bytes payload;
  arma::fvec recon(dim);
  Rng rng = Rng::derive(spec_->seed, Stream::kDownlink, {round});
  if (with_memory_) {
    const arma::fvec diff = params - server_reference_;
    encoder_->encode({diff.memptr(), dim}, rng, payload, {recon.memptr(), dim});
    server_reference_ += recon;
  } else {
    encoder_->encode({params.memptr(), dim}, rng, payload, {recon.memptr(), dim});
  }
  down.set_payload(payload.data(), payload.size());
  Sent sent;
  sent.payload_bytes = payload.size();
  down.SerializeToString(&sent.bytes);

  // The client end.
  wire::ModelDown received;
  if (!received.ParseFromString(sent.bytes) || received.num_params() != dim)
    throw DecodeError("ModelDown did not parse back");
  arma::fvec decoded(dim);
  decoder_->decode(bytes_of(received.payload()), {decoded.memptr(), dim});
  if (received.is_difference()) {
    client_reference_ += decoded;
    sent.model = client_reference_;
  } else {
    sent.model = std::move(decoded);
  }
  return sent;
}

namespace {

// An end created on first use: a flag, then its stages' state.
void save_end(StateWriter& out, const std::unique_ptr<Compressor>& end) {
  out.put(end != nullptr);
  if (end) end->save(out);
}

void restore_end(StateReader& in, std::unique_ptr<Compressor>& end, const PipelineSpec& spec, const CodecSpec& codec,
                 std::uint64_t shared_seed) {
  if (!in.get<bool>()) {
    end.reset();
    return;
  }
  end = spec.make(codec.dim, codec.layers, shared_seed);
  end->restore(in);
}

}  // namespace

void CodecLink::save(StateWriter& out) const {
  save_encoder(out);
  save_decoder(out);
}

void CodecLink::restore(StateReader& in) {
  restore_encoder(in);
  restore_decoder(in);
}

void CodecLink::save_encoder(StateWriter& out) const { save_end(out, encoder_); }
void CodecLink::save_decoder(StateWriter& out) const { save_end(out, decoder_); }

void CodecLink::restore_encoder(StateReader& in) {
  restore_end(in, encoder_, spec_->uplink, *spec_, uplink_shared_seed(spec_->seed, client_));
}
void CodecLink::restore_decoder(StateReader& in) {
  restore_end(in, decoder_, spec_->uplink, *spec_, uplink_shared_seed(spec_->seed, client_));
}

void BroadcastLink::save(StateWriter& out) const {
  out.begin("downlink");
  out.vec(server_reference_);
  out.vec(client_reference_);
  encoder_->save(out);
  decoder_->save(out);
}

void BroadcastLink::restore(StateReader& in) {
  in.begin("downlink");
  in.into(std::span<float>(server_reference_.memptr(), server_reference_.n_elem));
  in.into(std::span<float>(client_reference_.memptr(), client_reference_.n_elem));
  encoder_->restore(in);
  decoder_->restore(in);
}

}  // namespace fedsim
