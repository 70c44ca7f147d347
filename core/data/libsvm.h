// Data sets in the LIBSVM text format ("label idx:val idx:val ..."), the
// format of the ZipML benchmark sets (cadata, YearPredictionMSD, gisette, ...).
//
// Data source "libsvm", settings (the scenario's `data:` map):
//   train  path of the training file (required)
//   test   path of the test file (required)
//   dim    number of features; 0 (default) = the largest index in either file
//   task   classification (default) | regression
// Lines: a label, then idx:val pairs with 1-based, strictly increasing
// indices; absent features are 0. Blank lines and lines starting with '#' are
// skipped; CRLF line ends are accepted. Features are stored densely.
// Classification: the distinct label values of both files, sorted, are mapped
// to 0..K-1 (one mapping shared by train and test, so "-1/+1" becomes 0/1).
// Regression: labels are the targets.
// Every problem is an InputError "file:line: what is wrong".
#pragma once

#include <cstddef>
#include <istream>
#include <string>

#include "core/data/dataset.h"

namespace fedsim {

struct LibsvmOptions {
  std::size_t dim = 0;  // 0 = infer from the largest index
  bool classification = true;
  // Bounds that keep hostile input from exhausting memory.
  std::size_t max_index = 10'000'000;
  std::size_t max_dense_elements = std::size_t{1} << 30;  // dim * (train + test samples)
  std::size_t max_classes = 10'000;                        // more distinct labels: likely a regression file
};

// Parses a train and a test stream; `train_name` / `test_name` prefix the
// error messages (normally the file paths).
DataSplit parse_libsvm(std::istream& train, std::istream& test, const LibsvmOptions& options,
                       const std::string& train_name = "<train>", const std::string& test_name = "<test>");

// Opens and parses two files (InputError if one cannot be opened).
DataSplit load_libsvm(const std::string& train_path, const std::string& test_path, const LibsvmOptions& options);

}  // namespace fedsim
