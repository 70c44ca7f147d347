// Algorithms: what the clients train and send, and what the server's other
// components must agree with. One class per algorithm, registered by name
// (`algorithm: {name: ..., its keys}`); the server loop never asks for a name.
//
// An algorithm decides
// - the model the clients train and the server holds (FedVote wraps the
//   scenario's model in its latent tanh reparametrisation),
// - what an update vector contains (model difference or weights),
// - the aggregator used when the scenario names none,
// - the checks that the pipeline, the aggregator and its own keys agree.
// Components that only make sense with one algorithm (FedVote's vote
// quantizers and vote aggregator) are declared by it, so that every other
// algorithm rejects them with a message naming the algorithm they need.
//
// Server optimizers apply to the aggregate of every algorithm whose updates
// are differences or gradients (clients/optimizer.h; `fedsgd` sends
// gradients); decentralized learning (`dspg`, `dpsvrg`) is an algorithm that
// brings its own round policy, without a server (server/decentralized.h).
// What is coming plugs in here too: attacker clients (an UpdateContent
// transform on the client).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "clients/client.h"
#include "core/base/config.h"
#include "core/base/registry.h"
#include "core/compression/pipeline.h"
#include "core/models/model.h"

namespace fedsim {

// The parts of a scenario an algorithm checks.
struct AlgorithmCheck {
  const Config& root;        // the whole file (for the uplink key)
  const PipelineSpec& uplink;
  const Config& aggregator;  // `aggregator:` (its name and keys)
};

// Contract: immutable after construction (settings read and validated by
// the factory); every method is const and thread-safe.
class Algorithm {
 public:
  virtual ~Algorithm() = default;
  // The model clients train, built around the scenario's model.
  virtual std::unique_ptr<Model> make_model(std::unique_ptr<Model> base) const { return base; }
  virtual UpdateContent update_content() const = 0;
  // What its updates are, for messages: "model differences", "votes".
  virtual std::string describe_updates() const = 0;
  virtual std::string default_aggregator() const = 0;
  // Quantizer and aggregator names that exist for this algorithm only.
  virtual std::vector<std::string> own_components() const { return {}; }
  // Throws InputError (file:line: key) when the scenario's components do
  // not fit this algorithm. Components owned by another algorithm are
  // rejected before this is called.
  virtual void check(const AlgorithmCheck& scenario) const { (void)scenario; }
  // The round policy it runs under when it has its own (decentralized
  // learning: "gossip"); empty: the scenario's `server.policy`.
  virtual std::string policy() const { return {}; }
};

using AlgorithmRegistry = Registry<Algorithm, const Config&>;

}  // namespace fedsim
