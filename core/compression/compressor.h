// Compression stages and the pipeline that composes them.
//
// A scenario lists the stages of one direction in order, e.g.
//   uplink: [error_feedback, hadamard_rotation, {qsgd: {levels: 16, bucket: 512}}, zstd]
// Kinds: transforms (error feedback, rotation, predictive coding, censoring)
// come first, then exactly one quantizer (float32 when none is named), then
// byte coders (zstd). They nest: each transform and coder wraps the next
// stage, so the pipeline is itself a Compressor.
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

struct StageFactory {
  StageKind kind;
  std::function<std::unique_ptr<Compressor>(const Config&, StageContext&)> make;
};

class StageRegistry {
 public:
  static StageRegistry& instance();
  bool add(const std::string& name, StageKind kind,
           std::function<std::unique_ptr<Compressor>(const Config&, StageContext&)> make, std::string summary);
  const StageFactory* find(const std::string& name) const;
  std::string known_names() const;
  const std::map<std::string, std::pair<StageFactory, std::string>>& entries() const { return entries_; }

 private:
  std::map<std::string, std::pair<StageFactory, std::string>> entries_;
};

#define FEDSIM_REGISTER_STAGE(name, kind, factory, summary)                               \
  [[maybe_unused]] static const bool FEDSIM_CONCAT(fedsim_stage_registered_, __LINE__) = \
      ::fedsim::StageRegistry::instance().add(name, kind, factory, summary)

// A validated pipeline description: parsed once from the scenario, then
// instantiated per client and end with make().
class PipelineSpec {
 public:
  // `list` is the sequence node (or a missing key: plain float32). Checks
  // names, order and every stage's settings now, so errors surface at load.
  static PipelineSpec parse(const Config& parent, const std::string& key);
  static PipelineSpec float32();

  std::unique_ptr<Compressor> make(std::size_t dim, const std::vector<Layer>& layers, std::uint64_t shared_seed) const;
  // "error_feedback > qsgd > zstd"
  std::string describe() const;
  bool is_plain_float32() const { return stages_.empty(); }
  // The quantizer stage's name ("float32" when none is listed) and settings.
  std::string quantizer_name() const;
  const Config* quantizer_settings() const;

 private:
  struct Stage {
    std::string name;
    Config settings;
    const StageFactory* factory;
  };
  std::vector<Stage> stages_;  // transforms..., quantizer, coders... (empty = float32)
};

}  // namespace fedsim
