// The server of a run: its state (model, aggregator, clients, links, ledger,
// virtual clock) and the steps a round policy composes (server/round_policy.h):
// find and sample clients, broadcast the model, dispatch clients (their local
// rounds run in the client pool), receive and decode their updates,
// aggregate, and close a round (evaluate, account energy, emit metrics).
//
// The server learns about an update only from the bytes of its UpdateUp,
// decoded through the client's codec link (core/wire/codec_link.h); what it
// knows besides is the network and device model's account of the message
// (when it arrives, what it cost), which a real deployment would measure.
#pragma once

#include <armadillo>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "clients/client.h"
#include "core/data/data_source.h"
#include "core/models/model.h"
#include "core/wire/codec_link.h"
#include "server/aggregator.h"
#include "server/client_state.h"
#include "server/energy.h"
#include "server/metrics.h"
#include "server/population.h"
#include "server/scenario.h"
#include "server/virtual_clock.h"

namespace fedsim {

class ClientCluster;  // server/client_cluster.h
namespace wire {
class WorkOrder;  // core/wire/wire.proto
class WorkDone;
}  // namespace wire
class ClientPool;     // server/client_pool.h
class Optimizer;      // clients/optimizer.h (keeps Boost.Asio out of this header)

struct RunSummary {
  std::vector<RoundMetrics> rounds;
  double final_accuracy = NAN;
  double final_loss = NAN;
  double sim_time_s = 0.0;
  std::uint64_t bytes_up = 0;
  std::uint64_t bytes_down = 0;
  double energy_j = 0.0;
  double server_energy_j = 0.0;  // server_energy: model, not in energy_j
  double wall_s = 0.0;
  double model_math_s = 0.0;  // wall time inside local training + evaluation (summed over threads)
  std::size_t clients_exhausted = 0;
  // Clients that took part (each holds a Participant and ledger entry; the
  // rest hold nothing, server/client_state.h).
  std::size_t clients_participated = 0;
  // Their state besides the bookkeeping: stage memory, optimizer state, last
  // model (Server::client_state_bytes).
  std::uint64_t client_state_bytes = 0;
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

// One client's round in flight: its update's bytes on their way to the
// server, with the network and device models' account of them.
struct Flight {
  std::uint32_t client = 0;
  std::uint32_t round = 0;       // the client's round number (UpdateUp.round)
  double start_s = 0.0;          // model sent
  double arrive_s = 0.0;         // update arrives
  std::uint64_t bytes_down = 0;  // the ModelDown it received
  std::string update;            // serialized UpdateUp
  double macs = 0.0;
  RoundCost cost;
};

// How a policy dispatches a batch of clients.
struct DispatchPlan {
  std::uint32_t round = 0;         // client round: training/uplink streams, drop-out draws, UpdateUp.round
  std::uint32_t ledger_round = 0;  // the energy ledger's round for drop-outs' charges
  std::size_t uplink_sharers = 0;  // clients sharing the server's capacity; 0 = those of this batch
};

struct Broadcast {
  std::uint64_t bytes = 0;  // serialized ModelDown size
  std::uint64_t payload_bytes = 0;  // its compressed payload alone
  arma::fvec model;         // what clients start from
};

// An update a policy accepted for aggregation, with its policy weight.
struct Accepted {
  const ReceivedUpdate* update = nullptr;
  double weight = 1.0;
};

// Everything the server keeps for a client once it has taken part
// (server/client_state.h): its bookkeeping, its codec link (both ends' stage
// state) and its local memory. Created by the client's first dispatch.
struct Participant {
  Participant(const CodecSpec& spec, std::uint32_t id) : link(spec, id) {}
  ClientState state;
  CodecLink link;
  ClientMemory memory;
};

// Contract: used from the event loop's thread only (the client pool calls
// back on it). Deterministic in the scenario and seed.
class Server {
 public:
  // Builds everything the scenario describes (loads data, partitions,
  // models, links, population). Throws InputError.
  // Keeps a reference: `scenario` must outlive the server (a temporary is refused).
  explicit Server(const Scenario& scenario);
  explicit Server(Scenario&&) = delete;
  ~Server();

  const Scenario& scenario() const { return scenario_; }
  VirtualClock& clock() { return clock_; }
  double now_s() const { return clock_.now_s(); }
  std::uint64_t version() const { return version_; }
  std::size_t num_clients() const { return scenario_.num_clients; }
  std::size_t num_params() const { return params_.n_elem; }

  // Whether `client` is free at time t (not in flight, not busy, battery
  // left) and online in `availability_round`.
  bool is_available(std::uint32_t client, std::uint32_t availability_round, double t) const;
  // k clients drawn uniformly without replacement among those available
  // (is_available) at t, by id; all of them when fewer than k are. Randomness:
  // Rng stream kSampling, {sampling_round}. Cost O(k), not O(num_clients),
  // when num_clients > kScanFactor k: ids are drawn uniformly and the
  // unavailable or already drawn rejected, at most kMaxDrawsPerClient k +
  // kExtraDraws draws; only if those run out (availability is scarce) are all
  // clients scanned for the rest. With num_clients <= kScanFactor k they are
  // scanned at once (a partial Fisher-Yates shuffle of the available).
  std::vector<std::uint32_t> sample_available(std::uint32_t availability_round, double t, std::size_t k,
                                              std::uint32_t sampling_round) const;
  static constexpr std::size_t kScanFactor = 4;
  static constexpr std::size_t kMaxDrawsPerClient = 16;
  static constexpr std::size_t kExtraDraws = 64;
  // The earliest time a busy client with battery left becomes free; +inf if
  // none. O(clients that took part).
  double next_free_s(double t) const;
  // Whether any client with battery left can ever be online again. O(classes).
  bool may_return() const;
  // Its bookkeeping (created with its Participant entry on first use).
  ClientState& state(std::uint32_t client) { return participant(client).state; }
  std::size_t num_exhausted() const { return ledger_->num_exhausted(); }

  // Encodes the model for `round` and decodes it as the clients will.
  Broadcast broadcast(std::uint32_t round);
  // Sends the broadcast model to `clients`: those that drop out (drawn per
  // plan.round) pay for the download only and are counted in m.dropped_offline,
  // those whose faulty link loses the model pay for its sends and are counted
  // in m.dropped_network; the others run their local round in the pool.
  // Returns their flights, in the order of `clients`.
  std::vector<Flight> dispatch(const DispatchPlan& plan, const std::vector<std::uint32_t>& clients,
                               const Broadcast& model, RoundMetrics& m);
  // Decodes a flight's UpdateUp through its client's link. A corrupt message
  // (or one that contradicts the flight: another round, a future model
  // version) counts in m.rejected and yields nothing; a lost one (its link
  // gave it up, Flight::cost.lost_up) counts in m.dropped_network and yields
  // nothing, but is still decoded, so that stateful stages on both ends stay
  // in step (as if the client rolled its encoder back); a skipped one counts in
  // m.censored.
  std::optional<ReceivedUpdate> receive(const Flight& flight, RoundMetrics& m);
  // Folds accepted updates (any order; sorted by client id and base version
  // here) into the model; fills m.clients, m.train_loss, m.uplink_bits_per_coord.
  // The model version advances when anything was aggregated.
  void aggregate(std::vector<Accepted> accepted, RoundMetrics& m);
  // Closes a round at the current time: evaluates (every eval_every rounds
  // and when `last`), charges radio tails up to now (adding the clients they
  // exhaust to m.dropped_battery), takes the round's energy from the ledger,
  // emits m.
  void close_round(RoundMetrics& m, bool last);

  // Charges a participation that started at at_s (its plug state decides grid or battery energy).
  void charge(std::uint32_t client, std::uint32_t ledger_round, const RoundCost& cost, double idle_s, double at_s);
  void record(const Flight& flight, std::uint32_t round, bool aggregated);

  // For decentralized policies (server/gossip_policy.cc), which keep one
  // model per node: the model, each client's data and link, the network and
  // device models' account of a node's iteration, and the model that rounds
  // report (the nodes' average).
  const Model& model() const { return *model_; }
  // Its partition share (data sets loaded whole; a procedural source has none:
  // InputError naming the scenario).
  const IndexView& client_data(std::uint32_t client) const;
  CodecLink& link(std::uint32_t client) { return participant(client).link; }
  // Whether client data is generated per client when sampled (DataSource::procedural).
  bool procedural_data() const { return procedural_; }
  RoundCost cost_of(std::uint32_t client, const RoundWork& work);
  void set_model(const arma::fvec& params) { params_ = params; }

  // Checkpoints (server/checkpoint.h): everything a run changes in this
  // server (model, version, clock and events, client bookkeeping, codec link
  // ends, client and server optimizer state, downlink, aggregator, ledger,
  // trace, the summary so far). restore() expects a server freshly built
  // from the same scenario; DecodeError on anything inconsistent.
  void save(StateWriter& out) const;
  void restore(StateReader& in);

  void set_round_sink(std::function<void(const RoundMetrics&)> sink) { on_round_ = std::move(sink); }

  // Spreads the clients' local rounds over the ranks of `cluster` (an MPI
  // job; null: all here). Set before the run starts, on rank 0 only; the
  // other ranks serve() its work orders. Each client's local state (its
  // uplink encoder's stage memory, optimizer state, last model) lives on
  // rank_of(client) alone, and rank 0 decodes, charges and aggregates the
  // returned UpdateUp bytes as if they had been made here: the metrics are
  // the same bits whatever the ranks. save() gathers the other ranks' client
  // sides and restore() sends them back, so a checkpoint is the same bytes
  // whatever the ranks (and resumes under any number of them).
  void set_cluster(ClientCluster* cluster) { cluster_ = cluster; }
  // The rank that holds a client's local state: client mod ranks, but
  // colluding attackers, which share their messages before they send, on 0.
  int rank_of(std::uint32_t client) const;
  // A worker rank's side: runs a serialized wire::WorkOrder's local rounds
  // (with this process's state of those clients) and returns the serialized
  // wire::WorkDone; also SAVE, RESTORE and MEASURE orders about its clients'
  // state (checkpoints, the run summary). DecodeError on a malformed order.
  std::string serve(std::string_view order);
  // Rank 0's account of the cluster (benchmarks: tools/bench_scale.cc).
  struct ClusterTime {
    // Time in sending work orders and in waiting for the replies, less the
    // waits explained by another rank still computing (its compute time
    // beyond this rank's own share's, per dispatch): the time messages took.
    double comm_s = 0.0;
    std::uint64_t orders = 0;
    std::uint64_t bytes_out = 0;  // work orders
    std::uint64_t bytes_in = 0;   // replies
  };
  const ClusterTime& cluster_time() const { return cluster_time_; }
  // Bytes of the per-client state of the clients that took part (their
  // codec links' stage memory on both ends, optimizer state, last model), as
  // a checkpoint holds it; in an MPI job, every rank's. Reported by the run
  // summary, apart from the per-participant bookkeeping (client_state.h).
  std::uint64_t client_state_bytes() const;
  RunSummary& summary() { return summary_; }
  const RunSummary& summary() const { return summary_; }
  double model_math_s() const { return model_math_s_; }

  const Population& population() const { return *population_; }
  const EnergyLedger& ledger() const { return *ledger_; }
  const arma::fvec& model_params() const { return params_; }
  const DataSplit& data() const { return data_; }
  const std::vector<ArrivalRecord>& trace() const { return trace_; }
  // The per-client state of every client that took part so far, by id (the
  // ledger's figures: ledger().charged_clients()).
  const std::map<std::uint32_t, Participant>& participants() const { return participants_; }

 private:
  // A client's local round's inputs: the client (its data view, precision,
  // attack) and a context whose training set holds its data. Built on a
  // pool thread from const state (procedural data is generated here).
  struct ClientJob {
    std::optional<SimClient> client;
    std::unique_ptr<Dataset> data;     // procedural data, else null
    std::unique_ptr<Dataset> flipped;  // its label-flipped copy for a label-flipping attacker
    ClientContext ctx;
  };
  ClientJob client_job(std::uint32_t client) const;
  // An honest client's local round from `model` (of `version`), on a pool
  // thread: its UpdateUp through its link's client end.
  ClientRoundResult local_round(std::uint32_t client, std::uint32_t round, std::uint64_t version,
                                const arma::fvec& model, Participant& p) const;
  // The number of samples client c keeps: ceil(size * w / w_max), at least one.
  std::size_t kept_samples(std::size_t size, std::uint32_t client) const;
  Participant& participant(std::uint32_t client);
  void build_clients();
  // Checks every class's attack against the algorithm and the data; builds
  // the label-flipped training set when an attack needs it.
  void check_attacks();
  // Bytes the network model moves for a message: serialized, or the payload
  // alone under `accounting: {message_bits: payload}`.
  std::uint64_t link_bytes_up(const std::string& update) const;
  // dispatch()'s side of the cluster: posts each other rank the flights it
  // trains (by index) and returns them, by rank; `here` gets this rank's.
  // collect_work() waits for their replies, fills the flights, calls sent()
  // for each, and keeps the lowest failed flight in `failed`.
  struct FailedJob {
    std::size_t job;
    std::string what;
  };
  std::vector<std::vector<std::size_t>> post_work(const std::vector<Flight>& flights,
                                                  const std::vector<char>& colludes, std::uint64_t version,
                                                  const arma::fvec& model, std::vector<std::size_t>& here);
  // A participant's client side: its uplink encoder end, optimizer state and
  // last model (what lives on rank_of(client) in an MPI job).
  void save_client_side(StateWriter& out, const Participant& p) const;
  void restore_client_side(StateReader& in, Participant& p);
  // The participants whose client side lives on another rank, by rank.
  std::vector<std::vector<std::uint32_t>> participants_elsewhere() const;
  // Posts every other rank an order of `kind` (wire::WorkOrder::Kind) about
  // its `clients` (add() fills in per client) and collects the answers, by
  // rank; DecodeError on a malformed or failed one. Nothing without a cluster.
  std::vector<wire::WorkDone> ask_ranks(int kind, const std::vector<std::vector<std::uint32_t>>& clients,
                                        const std::function<void(std::uint32_t, wire::WorkOrder&)>& add) const;
  // save() and restore()'s side of the cluster: the other ranks' client
  // sides, by client; and sending them the restored ones.
  std::map<std::uint32_t, std::string> gather_client_sides() const;
  void scatter_client_sides();
  // serve() for the orders that are not TRAIN.
  std::string serve_state(const wire::WorkOrder& order);
  // `local_s`: how long this rank's own share took (for ClusterTime::comm_s).
  void collect_work(const std::vector<std::vector<std::size_t>>& away, std::vector<Flight>& flights,
                    std::optional<FailedJob>& failed, const std::function<void(std::size_t, double)>& sent,
                    double local_s);

  const Scenario& scenario_;
  DataSplit data_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Aggregator> aggregator_;
  std::unique_ptr<Population> population_;
  std::unique_ptr<EnergyLedger> ledger_;
  std::unique_ptr<DataSource> data_source_;
  bool procedural_ = false;
  std::vector<IndexView> views_;  // each client's partition share (empty with procedural data)
  CodecSpec codec_;
  std::map<std::uint32_t, Participant> participants_;
  std::unique_ptr<Optimizer> server_optimizer_;  // null: sgd, the aggregator's own step
  std::unique_ptr<Optimizer> client_optimizer_;  // prototype; null: plain SGD
  std::unique_ptr<BroadcastLink> downlink_;
  ClientContext client_ctx_;
  std::unique_ptr<Dataset> flipped_train_;  // shares data_.train's samples (clients/attack.h)
  arma::fvec params_;
  std::uint64_t version_ = 0;
  VirtualClock clock_;
  std::unique_ptr<ClientPool> pool_;
  std::vector<ArrivalRecord> trace_;
  RunSummary summary_;
  std::function<void(const RoundMetrics&)> on_round_;
  double model_math_s_ = 0.0;
  ClientCluster* cluster_ = nullptr;
  ClusterTime cluster_time_;
  ServerEnergyModel server_energy_;
  bool payload_accounting_ = false;
  double round_deadline_s_ = 0.0;  // the policy's (energy-aware DVFS); +inf if none
  double server_j_ = 0.0;          // server energy since the last close
};

}  // namespace fedsim
