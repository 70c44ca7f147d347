// A scenario file, parsed and validated: everything a run needs to know.
// The schema (every key, type, default, range) is documented in README.md;
// this parser is its single source of truth and rejects unknown keys.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "clients/local_training.h"
#include "core/compression/pipeline.h"
#include "core/base/config.h"

namespace fedsim {

class Algorithm;
class RoundPolicy;

struct Scenario {
  std::string file;
  std::string name;
  std::uint64_t seed = 1;

  Config data;         // `data:` (source + the loader's own keys)
  Config partition;    // `partition:` (scheme + its keys)
  Config model;        // `model:` (name + the model's keys)
  Config aggregator;   // `aggregator:` (name + its keys)
  Config root;         // the whole file, for the population section

  Config server;       // `server:` (policy + its keys)

  std::string algorithm_name = "fedpaq";
  std::shared_ptr<const Algorithm> algorithm;  // registered by name (server/algorithm.h)
  std::string policy_name = "wait_all";         // registered by name (server/round_policy.h)

  std::size_t num_clients = 0;
  std::size_t clients_per_round = 0;
  std::size_t rounds = 0;
  std::size_t eval_every = 1;
  std::size_t threads = 0;  // 0 = hardware concurrency
  LocalTrainingSettings training;
  double server_learning_rate = 1.0;
  bool weight_by_samples = true;
  // `server_optimizer:` / `client_optimizer:` (name + the optimizer's keys,
  // clients/optimizer.h); validated at load. sgd (the default) on the server
  // is the aggregator's own x <- x + server_learning_rate * aggregate.
  Config server_optimizer;
  Config client_optimizer;
  std::string server_optimizer_name = "sgd";
  std::string client_optimizer_name = "sgd";
  bool reset_client_optimizer = false;  // client_optimizer.reset_each_round

  PipelineSpec uplink;
  PipelineSpec downlink;

  std::string output_dir;  // empty = no files
  bool progress = true;

  // A fresh instance of the scenario's round policy (policies keep per-run state).
  std::unique_ptr<RoundPolicy> make_policy() const;
};

// Loads and validates. `overrides` are `key.path=value` assignments applied
// before validation (from --set). Throws InputError with file:line: key.
Scenario load_scenario(const std::string& file, const std::vector<std::string>& overrides = {});
Scenario parse_scenario(const std::string& yaml_text, const std::string& file,
                        const std::vector<std::string>& overrides = {});

}  // namespace fedsim
