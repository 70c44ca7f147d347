// The codec side of a client's connection to the server (FLSim's channel):
// both ends of its uplink pipeline, the broadcast downlink, the seeds both
// ends share, the framing of wire messages and the count of their bytes.
// Not to be confused with the network model (server/link_model.h), which
// says how long a message of so many bytes takes and what it costs.
//
// What crosses a link is only bytes: a simulated client, an MPI rank or a
// real process hand the server the same serialized UpdateUp, and the server
// learns everything about an update (sender, round, base model version,
// local sample count, training loss, skip flag, vector) from those bytes.
//
// Shared seeds (both ends of one pipeline seed their stages alike, so that
// rotations, random subsets and dithers agree):
//   uplink of client c:   mix64(scenario_seed ^ (c << 20))
//   downlink (broadcast): mix64(scenario_seed ^ 0xd0d0d0d0)
// These are the formulas fedsim has always used; changing them moves every
// number of a scenario with a seeded stage.
#pragma once

#include <armadillo>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/layer.h"
#include "core/base/rng.h"
#include "core/compression/compressor.h"
#include "core/compression/pipeline.h"

namespace fedsim {

std::uint64_t uplink_shared_seed(std::uint64_t scenario_seed, std::uint32_t client);
std::uint64_t downlink_shared_seed(std::uint64_t scenario_seed);

// What every link of a run shares: the pipelines, the vector's shape and the
// scenario seed. Outlives the links built from it.
struct CodecSpec {
  PipelineSpec uplink;
  PipelineSpec downlink;
  std::size_t dim = 0;
  std::vector<Layer> layers;
  std::uint64_t seed = 0;
};

// The fields of an UpdateUp besides its payload.
struct UpdateHeader {
  std::uint32_t client = 0;
  std::uint32_t round = 0;
  std::uint64_t base_version = 0;  // server model version the update was computed from
  std::uint32_t num_samples = 0;   // local samples, for weighting
  float train_loss = 0.0f;         // mean local training loss of the round
  bool skipped = false;            // a censoring stage skipped: the vector repeats the last one
};

// An UpdateUp as the server decoded it.
struct ReceivedUpdate {
  UpdateHeader header;
  std::uint64_t wire_bytes = 0;  // serialized size
  arma::fvec vector;             // decoded payload (dim values)
};

// One client's uplink. Contract: send_update() runs on the client's thread,
// receive_update() on the server's; a client sends again only after its
// previous message was received (or given up on), so the two ends are never
// used at the same time. Each end is created on first use and keeps its
// stages' memory (error feedback, predictive coding, censoring) for the run.
class CodecLink {
 public:
  CodecLink(const CodecSpec& spec, std::uint32_t client) : spec_(&spec), client_(client) {}

  // Client end: encodes `update` (dim values) with `rng` and frames it with
  // `header` (header.client must be this link's client; skipped is set here).
  // Returns the serialized UpdateUp. A finite `model_movement_sq` is handed
  // to the pipeline's first stage first (Compressor::set_model_movement).
  std::string send_update(UpdateHeader header, std::span<const float> update, Rng& rng,
                          double model_movement_sq = std::numeric_limits<double>::quiet_NaN());

  // Server end: parses and decodes an UpdateUp. Throws DecodeError when the
  // bytes do not parse, name another client, claim a skip the stages did not
  // make (or hide one), or the payload is malformed; the decoder's memory is
  // then as the pipeline's decode() left it (stages leave it unchanged on error).
  ReceivedUpdate receive_update(std::string_view bytes);

  // Checkpoints: which ends exist and their stages' memory (Compressor::save).
  void save(StateWriter& out) const;
  void restore(StateReader& in);
  // One end at a time (an MPI job keeps the client end on the client's rank).
  void save_encoder(StateWriter& out) const;
  void save_decoder(StateWriter& out) const;
  void restore_encoder(StateReader& in);
  void restore_decoder(StateReader& in);

 private:
  const CodecSpec* spec_;
  std::uint32_t client_;
  std::unique_ptr<Compressor> encoder_;
  std::unique_ptr<Compressor> decoder_;
};

// The size of an UpdateUp's payload field (the compressed update alone, no
// framing), for network accounting by payload. Throws DecodeError if `bytes`
// do not parse.
std::uint64_t update_payload_bytes(std::string_view bytes);

// The downlink: the server broadcasts the model (plain float32), or its
// compressed difference from a reference every client holds (compression
// with memory, as in Artemis / MCM). Every client's downlink end holds the
// same state, so one client end stands for all of them; that needs every
// client to receive every broadcast (synchronous policies).
class BroadcastLink {
 public:
  explicit BroadcastLink(const CodecSpec& spec);

  struct Sent {
    std::string bytes;   // serialized ModelDown
    std::uint64_t payload_bytes = 0;  // its payload field alone (the compressed model)
    arma::fvec model;    // the model a client decodes from it
  };
  // Server end encodes `params` for `round` (ModelDown.model_version =
  // version); the client end decodes the bytes it produced. Throws
  // DecodeError if they do not parse back.
  Sent broadcast(std::uint32_t round, std::uint64_t version, const arma::fvec& params);

  // Checkpoints: both references and both ends' stages.
  void save(StateWriter& out) const;
  void restore(StateReader& in);

 private:
  const CodecSpec* spec_;
  bool with_memory_;
  std::unique_ptr<Compressor> encoder_;
  std::unique_ptr<Compressor> decoder_;
  arma::fvec server_reference_;
  arma::fvec client_reference_;
};

}  // namespace fedsim
