// A contiguous block of a flat parameter vector (one weight matrix or bias).
// Models declare their layers; per-layer compressors (TernGrad's scaler,
// predictive coding, FedVote's weight scale) work on them. Layers tile
// [0, dim) in order.
#pragma once

#include <cstddef>
#include <string>

namespace fedsim {

struct Layer {
  std::string name;
  std::size_t offset = 0;
  std::size_t size = 0;
};

}  // namespace fedsim
