// One run of a scenario: the data, the clients, and the server's event loop
// on a Boost.Asio io_context with a virtual clock.
//
// Client work (local SGD + encoding) runs in a thread pool; each finished
// client posts its serialized UpdateUp back to the server's io_context. The
// server turns it into an arrival event on the virtual clock at the time the
// network and device models say it arrives, and processes events only when
// no computation is outstanding, so the order of events (and every number)
// is independent of thread timing.
//
// Sync policies: round k sends the model at t0 = the end of round k-1 and
// ends at the last arrival (wait_all), at t0 + deadline_s if an update is
// late, else the last arrival (deadline), or at the r-th arrival
// (over_selection); the next round starts then, so round_time_s adds up to
// sim_time_s. A client whose update arrives after its round ended (late or
// surplus) is busy, and not sampled, until the update arrives. When no
// client is free the server waits for the first busy one (inside the round).
#pragma once

#include <armadillo>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "clients/client.h"
#include "core/compression/compressor.h"
#include "core/data/data_source.h"
#include "core/models/model.h"
#include "server/aggregator.h"
#include "server/energy.h"
#include "server/metrics.h"
#include "server/population.h"
#include "server/scenario.h"

namespace fedsim {

struct RunSummary {
  std::vector<RoundMetrics> rounds;
  double final_accuracy = NAN;
  double final_loss = NAN;
  double sim_time_s = 0.0;
  std::uint64_t bytes_up = 0;
  std::uint64_t bytes_down = 0;
  double energy_j = 0.0;
  double wall_s = 0.0;
  double model_math_s = 0.0;  // wall time inside local training + evaluation (summed over threads)
  std::size_t clients_exhausted = 0;
};

// One client's round as the network and device models saw it.
struct ArrivalRecord {
  std::uint32_t round = 0;
  std::uint32_t client = 0;
  double start_s = 0.0;        // model sent
  double arrive_s = 0.0;       // update received
  std::uint64_t bytes_down = 0;
  std::uint64_t bytes_up = 0;
  double macs = 0.0;
  bool aggregated = false;     // false: dropped (deadline, over-selection surplus, rejected)
  RoundCost cost;
};

class Simulation {
 public:
  // Builds everything the scenario describes (loads data, partitions,
  // instantiates models, pipelines, population). Throws InputError.
  explicit Simulation(const Scenario& scenario);
  ~Simulation();

  // Runs all rounds. `on_round` (optional) sees every round's metrics as they
  // come (for writers and progress bars).
  RunSummary run(const std::function<void(const RoundMetrics&)>& on_round = {});

  const Population& population() const { return *population_; }
  const EnergyLedger& ledger() const { return *ledger_; }
  const arma::fvec& model_params() const { return params_; }
  std::size_t num_params() const { return params_.n_elem; }
  const DataSplit& data() const { return data_; }
  // Every client round of the run (sync policies: per round, by client id;
  // async: in arrival order).
  const std::vector<ArrivalRecord>& trace() const { return trace_; }

 private:
  struct Impl;
  const Scenario& scenario_;
  DataSplit data_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Aggregator> aggregator_;
  std::unique_ptr<Population> population_;
  std::unique_ptr<EnergyLedger> ledger_;
  std::vector<SimClient> clients_;
  arma::fvec params_;
  std::vector<ArrivalRecord> trace_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fedsim
