// The pipeline that composes compression stages (compressor.h).
//
// A scenario lists the stages of one direction in order, e.g.
//   uplink: [error_feedback, hadamard_rotation, {qsgd: {levels: 16, bucket: 512}}, zstd]
// Order: transforms, then exactly one quantizer (float32 when none is named),
// then coders.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/base/config.h"
#include "core/base/layer.h"
#include "core/compression/compressor.h"

namespace fedsim {

// A validated pipeline description: parsed once from the scenario, then
// instantiated per client and end with make().
class PipelineSpec {
 public:
  // `list` is the sequence node (or a missing key: plain float32). Checks
  // names, order and every stage's settings now, so errors surface at load.
  static PipelineSpec parse(const Config& parent, const std::string& key);
  static PipelineSpec float32();

  // Thread-safe (calls are serialized).
  std::unique_ptr<Compressor> make(std::size_t dim, const std::vector<Layer>& layers, std::uint64_t shared_seed) const;
  // "error_feedback > qsgd > zstd"
  std::string describe() const;
  // The stages' names in the listed order (empty for plain float32).
  std::vector<std::string> stage_names() const;
  bool is_plain_float32() const { return stages_.empty(); }
  // The quantizer stage's name ("float32" when none is listed) and settings.
  std::string quantizer_name() const;
  const Config* quantizer_settings() const;

 private:
  struct Stage {
    std::string name;
    Config settings;
    const StageRegistry::Entry* entry;
    StageKind kind() const { return entry->meta; }
  };
  std::vector<Stage> stages_;  // transforms..., quantizer, coders... (empty = float32)
};

}  // namespace fedsim
