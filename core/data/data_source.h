// Where training data comes from, and how it is split across clients.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/base/config.h"
#include "core/data/dataset.h"
#include "core/base/registry.h"
#include "core/base/rng.h"

namespace fedsim {

// Loads (or generates) a train/test pair. Settings are the scenario's `data`
// map; the loader reads its own keys from it (path, samples, ...). Missing or
// corrupt files are InputErrors naming the file.
class DataSource {
 public:
  virtual ~DataSource() = default;
  virtual DataSplit load(std::uint64_t seed) const = 0;
};
using DataSourceRegistry = Registry<DataSource, const Config&>;

// Splits a training set across clients. Contract: every returned view holds
// valid sample indices; views are disjoint; a client may get an empty view
// only if the split's semantics allow it (documented per partitioner).
class Partitioner {
 public:
  virtual ~Partitioner() = default;
  virtual std::vector<IndexView> split(const Dataset& train, std::size_t num_clients, Rng& rng) const = 0;
};
using PartitionerRegistry = Registry<Partitioner, const Config&>;

}  // namespace fedsim
