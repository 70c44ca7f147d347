// The Compressor contract and the registry of compression stages.
//
// Kinds: transforms (error feedback, rotation, predictive coding, censoring)
// come first in a pipeline, then exactly one quantizer (float32 when none is
// named), then byte coders (zstd). They nest: each transform and coder wraps
// the next stage, so a pipeline (pipeline.h) is itself a Compressor.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/base/config.h"
#include "core/base/layer.h"
#include "core/base/registry.h"
#include "core/base/rng.h"
#include "core/base/state_io.h"

namespace fedsim {

using Bytes = std::vector<std::uint8_t>;

// Contract:
// - One instance per (client, direction, end): an encoder instance lives on
//   the sender, a decoder instance on the receiver. Stateful stages (error
//   feedback, predictive coding, censoring) keep their memory in the
//   instance; both ends stay in step because decode() of the receiver's
//   instance sees exactly what encode() of the sender's produced.
// - Not thread-safe; one thread uses an instance at a time.
// - encode() writes into `reconstructed` exactly what decode() of the
//   payload will produce, bit for bit (the tests check this for every scheme).
// - decode() must consume the whole payload and throw DecodeError on any
//   malformed input (truncated, oversized, inconsistent, out of range); it
//   never trusts a length from the wire without checking it.
class Compressor {
 public:
  virtual ~Compressor() = default;
  virtual void encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) = 0;
  virtual void decode(std::span<const std::uint8_t> payload, std::span<float> out) = 0;
  // True when E[decode(encode(v))] = v (for documentation and `fedsim list`).
  virtual bool unbiased() const = 0;
  // Whether the last encode() or decode() of this instance sent no new
  // vector (a censoring stage skipped and the result repeats the last one).
  // Stages that wrap another forward to it. Sets UpdateUp.skipped.
  virtual bool last_skipped() const { return false; }
  // Side information the sender has besides the vector, for the next
  // encode(): the squared norm of the model's last movement, ||x_t - x_{t-1}||^2
  // (CHB's censoring threshold, chb_censoring.h). Only the outermost stage
  // is told (a stage that needs it must come first); the default ignores it.
  virtual void set_model_movement(double squared_norm) { (void)squared_norm; }
  // Checkpoints (server/checkpoint.h): the memory this instance carries from
  // one message to the next (error-feedback residuals, last sent vectors,
  // histories; never scratch), then the wrapped stage's. restore() reads what
  // save() of an instance built alike wrote, and throws DecodeError on
  // anything else. Stateless stages keep these defaults; a stage that wraps
  // another forwards to it. tests/server/checkpoint_test.cc checks every
  // registered stage: a restored copy continues bit for bit.
  virtual void save(StateWriter& out) const { (void)out; }
  virtual void restore(StateReader& in) { (void)in; }
};

enum class StageKind { kTransform, kQuantizer, kCoder };

// What a stage factory gets: the vector's shape, randomness both ends share,
// and (for transforms and coders) the stage it wraps.
struct StageContext {
  std::size_t dim = 0;
  std::vector<Layer> layers;     // tile [0, dim); one layer of size dim when unknown
  std::uint64_t shared_seed = 0;  // same on sender and receiver
  std::unique_ptr<Compressor> inner;  // null for quantizers
};

// Stages by the names scenario files use; each entry's meta is the stage's
// kind, which fixes its place in a pipeline.
using StageRegistry = BasicRegistry<Compressor, StageKind, const Config&, StageContext&>;

#define FEDSIM_REGISTER_STAGE(name, kind, factory, summary)                               \
  [[maybe_unused]] static const bool FEDSIM_CONCAT(fedsim_stage_registered_, __LINE__) = \
      ::fedsim::StageRegistry::instance().add(name, factory, summary, kind)

}  // namespace fedsim
