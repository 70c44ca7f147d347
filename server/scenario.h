// A scenario file, parsed and validated: everything a run needs to know.
// The schema (every key, type, default, range) is documented in README.md;
// this parser is its single source of truth and rejects unknown keys.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "clients/local_training.h"
#include "core/compression/pipeline.h"
#include "core/base/config.h"

namespace fedsim {

enum class RoundPolicy {
  kWaitAll,        // wait for every sampled client that does not drop out
  kDeadline,       // updates arriving after deadline_s are dropped
  kOverSelection,  // sample ceil(r * factor), aggregate the first r arrivals
  kAsync,          // FedBuff: aggregate every buffer_size arrivals, staleness-weighted
};

struct ServerPolicy {
  RoundPolicy kind = RoundPolicy::kWaitAll;
  double deadline_s = 0.0;
  double over_selection = 1.0;
  std::size_t buffer_size = 10;        // async: arrivals per aggregation
  std::size_t concurrency = 0;         // async: clients in flight (0 = clients_per_round)
  double staleness_exponent = 0.5;     // async: weight = (1 + staleness)^-a
};

struct Scenario {
  std::string file;
  std::string name;
  std::uint64_t seed = 1;

  Config data;         // `data:` (source + the loader's own keys)
  Config partition;    // `partition:` (scheme + its keys)
  Config model;        // `model:` (name + the model's keys)
  Config aggregator;   // `aggregator:` (name + its keys)
  Config root;         // the whole file, for the population section

  std::string algorithm = "fedpaq";  // fedpaq | fedvote
  double fedvote_k = 1.5;

  std::size_t num_clients = 0;
  std::size_t clients_per_round = 0;
  std::size_t rounds = 0;
  std::size_t eval_every = 1;
  std::size_t threads = 0;  // 0 = hardware concurrency
  LocalTrainingSettings training;
  double server_learning_rate = 1.0;
  bool weight_by_samples = true;

  PipelineSpec uplink;
  PipelineSpec downlink;

  ServerPolicy policy;
  std::string output_dir;  // empty = no files
  bool progress = true;
};

// Loads and validates. `overrides` are `key.path=value` assignments applied
// before validation (from --set). Throws InputError with file:line: key.
Scenario load_scenario(const std::string& file, const std::vector<std::string>& overrides = {});
Scenario parse_scenario(const std::string& yaml_text, const std::string& file,
                        const std::vector<std::string>& overrides = {});

}  // namespace fedsim
