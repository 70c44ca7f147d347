// In-memory data sets and index views of them.
#pragma once

#include <armadillo>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace fedsim {

// One sample per column (column-major, so a sample is contiguous).
// Classification: labels in [0, num_classes). Regression: targets.
struct Dataset {
  std::string name;
  arma::fmat features;               // dim x num_samples
  std::vector<std::uint32_t> labels;  // classification only, size num_samples
  arma::fvec targets;                // regression only, size num_samples
  std::uint32_t num_classes = 0;     // 0 means regression

  std::size_t size() const { return features.n_cols; }
  std::size_t dim() const { return features.n_rows; }
  bool is_classification() const { return num_classes > 0; }
};

// A train/test pair as loaded from a source.
struct DataSplit {
  Dataset train;
  Dataset test;
};

// A client's share of the training set: indices into it, never a copy.
using IndexView = std::vector<std::uint32_t>;

}  // namespace fedsim
