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
  // A weight matrix declares its shape (rows * cols == size), stored
  // column-major as Armadillo stores it: element (i, j) at offset + i + j * rows.
  // 0 x 0 for vectors (biases) and layers whose model does not say; only
  // stages that need shapes (powersgd) read them.
  std::size_t rows = 0;
  std::size_t cols = 0;
};

}  // namespace fedsim
