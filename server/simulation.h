// One run of a scenario: the server (server/server.h), the round policy
// (server/round_policy.h) and the event loop on one virtual clock.
//
// Client work (local SGD + encoding) runs in a thread pool (server/client_pool.h);
// the server turns each finished client round into an arrival event on the
// virtual clock at the time the network and device models say its update
// arrives. Events pop in (time, target, insertion) order and the pool hands
// results back on the loop's thread, so every number is independent of
// thread timing.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "server/round_policy.h"
#include "server/scenario.h"
#include "server/server.h"

namespace fedsim {

class Simulation {
 public:
  // Builds everything the scenario describes. Throws InputError. Keeps a
  // reference: `scenario` must outlive the simulation (a temporary is refused).
  explicit Simulation(const Scenario& scenario);
  explicit Simulation(Scenario&&) = delete;
  ~Simulation();

  // Runs all rounds (or, after restore(), the rounds left). `on_round`
  // (optional) sees every round's metrics as they come (for writers and
  // progress bars); `after_close` (optional) is called between two events
  // after one closed a round, with the number of rounds closed so far: the
  // moment a checkpoint may be taken (save()).
  RunSummary run(const std::function<void(const RoundMetrics&)>& on_round = {},
                 const std::function<void(std::size_t)>& after_close = {});

  // Checkpoints (server/checkpoint.h): the whole state of the run between
  // two events, as bytes; restore() reads it back into a simulation freshly
  // built from the same scenario (before run(), which then continues instead
  // of starting). Throws DecodeError on bytes that are not such a state; the
  // simulation must then be discarded.
  std::string save() const;
  void restore(std::string_view state);
  std::size_t rounds_closed() const { return server_->summary().rounds.size(); }
  // What run() would report so far (after restore(): the restored rounds).
  const RunSummary& summary_so_far() const { return server_->summary(); }

  // Spreads the clients over an MPI job's ranks (Server::set_cluster), if
  // the policy trains them through dispatch() (not gossip: all on rank 0).
  void set_cluster(ClientCluster* cluster) {
    if (policy_->dispatches_clients()) server_->set_cluster(cluster);
  }
  const Server::ClusterTime& cluster_time() const { return server_->cluster_time(); }
  int rank_of(std::uint32_t client) const { return server_->rank_of(client); }

  const Population& population() const { return server_->population(); }
  const EnergyLedger& ledger() const { return server_->ledger(); }
  const arma::fvec& model_params() const { return server_->model_params(); }
  std::size_t num_params() const { return server_->num_params(); }
  const DataSplit& data() const { return server_->data(); }
  const IndexView& client_data(std::uint32_t client) const { return server_->client_data(client); }
  // Every client round of the run (sync policies: per round, by client id;
  // async: in arrival order).
  const std::vector<ArrivalRecord>& trace() const { return server_->trace(); }

 private:
  std::unique_ptr<Server> server_;
  std::unique_ptr<RoundPolicy> policy_;
  bool restored_ = false;
};

}  // namespace fedsim
