#include "server/server.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <thread>
#include <unordered_set>

#include "core/base/blas_threads.h"
#include "clients/optimizer.h"
#include "core/base/errors.h"
#include "server/algorithm.h"
#include "server/checkpoint.h"
#include "server/client_cluster.h"
#include "server/client_pool.h"
#include "wire.pb.h"  // generated from core/wire/wire.proto
#include "server/round_policy.h"

namespace fedsim {

Server::Server(const Scenario& scenario) : scenario_(scenario) {
  data_source_ = DataSourceRegistry::instance().create(scenario.data.where("source"),
                                                      scenario.data.get_string("source", "fashion_mnist"), scenario.data);
  procedural_ = data_source_->procedural();
  const auto partitioner = PartitionerRegistry::instance().create(
      scenario.partition.where("scheme"), scenario.partition.get_string("scheme", "iid"), scenario.partition);
  data_ = data_source_->load(scenario.seed);
  const ModelInput input{data_.train.dim(), data_.train.num_classes};
  model_ = scenario.algorithm->make_model(ModelRegistry::instance().create(
      scenario.model.where("name"), scenario.model.get_string("name", "softmax_regression"), scenario.model, input));
  AggregatorSettings agg_settings;
  agg_settings.weight_by_samples = scenario.weight_by_samples;
  aggregator_ = AggregatorRegistry::instance().create(
      scenario.aggregator.where("name"),
      scenario.aggregator.get_string("name", scenario.algorithm->default_aggregator()), scenario.aggregator,
      agg_settings);
  population_ = std::make_unique<Population>(scenario.root, scenario.num_clients, scenario.seed);
  ledger_ = std::make_unique<EnergyLedger>(*population_);
  server_energy_ = ServerEnergyModel::parse(scenario.root);
  payload_accounting_ =
      scenario.root.child("accounting").get_choice("message_bits", "wire", {"wire", "payload"}) == "payload";
  round_deadline_s_ = scenario.make_policy()->round_deadline_s();
  if (scenario.server_optimizer_name != "sgd") server_optimizer_ = make_optimizer(scenario.server_optimizer);
  if (scenario.client_optimizer_name != "sgd") client_optimizer_ = make_optimizer(scenario.client_optimizer);
  for (std::size_t k = 0; k < population_->num_classes(); ++k) {
    const ClientClass& cls = population_->client_class(k);
    if (cls.frequency == FrequencyChoice::kEnergyAware && !std::isfinite(round_deadline_s_))
      throw InputError(cls.frequency_where + ": expected a server policy with a round deadline (deadline) for "
                       "frequency: energy_aware, found policy '" + scenario.policy_name + "'");
  }
  // Every key of the file has now been read by its owner: the rest are typos.
  scenario.root.finish();

  if (!procedural_) {
    if (data_.train.size() < scenario.num_clients)
      throw InputError(scenario.file + ": clients: " + std::to_string(scenario.num_clients) +
                       " clients but only " + std::to_string(data_.train.size()) + " training samples");
    Rng partition_rng = Rng::derive(scenario.seed, Stream::kPartition);
    views_ = partitioner->split(data_.train, scenario.num_clients, partition_rng);
    // Client classes with a smaller data_weight hold proportionally less data:
    // each client keeps the first ceil(size * w / w_max) samples of its share
    // (at least one), so the heaviest class keeps its whole partition.
    for (std::uint32_t i = 0; i < views_.size(); ++i) {
      views_[i].resize(kept_samples(views_[i].size(), i));
      views_[i].shrink_to_fit();
    }
  }

  Rng init_rng = Rng::derive(scenario.seed, Stream::kModelInit);
  params_.set_size(model_->num_params());
  model_->init(params_, init_rng);

  codec_ = CodecSpec{scenario.uplink, scenario.downlink, params_.n_elem, model_->layers(), scenario.seed};
  downlink_ = std::make_unique<BroadcastLink>(codec_);

  client_ctx_.model = model_.get();
  client_ctx_.train = &data_.train;
  client_ctx_.training = scenario.training;
  client_ctx_.content = scenario.algorithm->update_content();
  client_ctx_.seed = scenario.seed;
  check_attacks();
  client_ctx_.optimizer = client_optimizer_.get();
  client_ctx_.reset_optimizer_each_round = scenario.reset_client_optimizer;
  const std::vector<std::string> uplink_stages = scenario.uplink.stage_names();
  client_ctx_.track_model_movement = !uplink_stages.empty() && uplink_stages.front() == "chb_censoring";

  std::size_t threads = scenario.threads;
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  use_single_threaded_blas();  // the pool provides the parallelism (see core/base/blas_threads.h)
  pool_ = std::make_unique<ClientPool>(threads);
}

Server::~Server() = default;

void Server::check_attacks() {
  for (std::size_t k = 0; k < population_->num_classes(); ++k) {
    const ClientClass& cls = population_->client_class(k);
    if (cls.attack.empty()) continue;
    if (cls.attackers == 0) continue;  // fraction 0 (or a class too small): nobody attacks
    const Attack* attack = population_->class_attack(k);
    const std::string needs = attack->needs(client_ctx_.content);
    if (!needs.empty())
      throw InputError(cls.attack_where + ": attack '" + cls.attack + "' needs " + needs + ", found algorithm '" +
                       scenario_.algorithm_name + "' (whose clients send " + scenario_.algorithm->describe_updates() +
                       ")");
    if (attack->flips_labels() && !data_.train.is_classification())
      throw InputError(cls.attack_where + ": attack '" + cls.attack +
                       "' needs a classification data set (labels to flip), found a regression data set");
  }
  if (population_->any_label_flipping() && !procedural_) {
    flipped_train_ = std::make_unique<Dataset>(label_flipped(data_.train));
    client_ctx_.flipped_train = flipped_train_.get();
  }
}

std::size_t Server::kept_samples(std::size_t size, std::uint32_t client) const {
  const double keep = std::ceil(double(size) * population_->client(client).data_weight / population_->max_data_weight());
  return std::clamp<std::size_t>(static_cast<std::size_t>(keep), 1, size);
}

Participant& Server::participant(std::uint32_t client) {
  if (client >= num_clients()) throw std::out_of_range("client " + std::to_string(client));
  auto it = participants_.find(client);
  if (it == participants_.end()) it = participants_.try_emplace(client, codec_, client).first;
  return it->second;
}

const IndexView& Server::client_data(std::uint32_t client) const {
  if (procedural_)
    throw InputError(scenario_.file + ": data: source '" + scenario_.data.get_string("source", "") +
                     "' generates each client's data when it is sampled; this needs a stored data set");
  return views_.at(client);
}

Server::ClientJob Server::client_job(std::uint32_t c) const {
  ClientJob job;
  const ClientTraits t = population_->client(c);
  job.ctx = client_ctx_;
  IndexView view;
  if (procedural_) {
    job.data = std::make_unique<Dataset>(
        data_source_->client_samples(scenario_.seed, c, kept_samples(data_source_->samples_per_client(), c)));
    view.resize(job.data->size());
    for (std::uint32_t i = 0; i < view.size(); ++i) view[i] = i;
    job.ctx.train = job.data.get();
    if (t.attack && t.attack->flips_labels()) {
      job.flipped = std::make_unique<Dataset>(label_flipped(*job.data));
      job.ctx.flipped_train = job.flipped.get();
    }
  } else {
    view = views_.at(c);
  }
  job.client.emplace(c, std::move(view), t.precision, t.attack);
  return job;
}

bool Server::is_available(std::uint32_t c, std::uint32_t availability_round, double t) const {
  const auto it = participants_.find(c);
  if (it != participants_.end() && (it->second.state.in_flight || it->second.state.busy_until_s > t)) return false;
  return !ledger_->exhausted(c) && population_->is_online(c, availability_round, t);
}

std::vector<std::uint32_t> Server::sample_available(std::uint32_t availability_round, double t, std::size_t k,
                                                    std::uint32_t sampling_round) const {
  Rng rng = Rng::derive(scenario_.seed, Stream::kSampling, {sampling_round});
  const std::size_t n = num_clients();
  std::vector<std::uint32_t> chosen;
  if (k == 0) return chosen;
  const auto scan = [&](std::vector<std::uint32_t>& out, std::size_t want) {
    // Partial Fisher-Yates over the available not chosen yet: want uniform draws without replacement.
    std::vector<std::uint32_t> candidates;
    for (std::uint32_t c = 0; c < n; ++c)
      if (is_available(c, availability_round, t) && !std::binary_search(out.begin(), out.end(), c))
        candidates.push_back(c);
    want = std::min(want, candidates.size());
    for (std::size_t i = 0; i < want; ++i) std::swap(candidates[i], candidates[i + rng.below(candidates.size() - i)]);
    candidates.resize(want);
    out.insert(out.end(), candidates.begin(), candidates.end());
    std::sort(out.begin(), out.end());
  };
  if (n <= kScanFactor * k) {
    scan(chosen, k);
    return chosen;
  }
  // Rejection sampling: each kept id is uniform among the available not kept yet.
  std::unordered_set<std::uint32_t> drawn;
  const std::size_t max_draws = kMaxDrawsPerClient * k + kExtraDraws;
  for (std::size_t d = 0; d < max_draws && chosen.size() < k; ++d) {
    const auto c = static_cast<std::uint32_t>(rng.below(n));
    if (!drawn.insert(c).second) continue;
    if (is_available(c, availability_round, t)) chosen.push_back(c);
  }
  std::sort(chosen.begin(), chosen.end());
  if (chosen.size() < k) scan(chosen, k - chosen.size());  // scarce availability: look at everyone
  return chosen;
}

double Server::next_free_s(double t) const {
  // Only clients that took part can be busy.
  double next = std::numeric_limits<double>::infinity();
  for (const auto& [c, p] : participants_)
    if (!ledger_->exhausted(c) && p.state.busy_until_s > t) next = std::min(next, p.state.busy_until_s);
  return next;
}

bool Server::may_return() const {
  for (std::size_t k = 0; k < population_->num_classes(); ++k) {
    const ClientClass& cls = population_->client_class(k);
    if (population_->class_may_be_online(k) && cls.end_client - cls.first_client > ledger_->num_exhausted_in_class(k))
      return true;
  }
  return false;
}

Broadcast Server::broadcast(std::uint32_t round) {
  // Client updates are finite (encode() refuses others), but their aggregate
  // or the server optimizer's step can still overflow.
  if (!params_.is_finite())
    throw InputError(scenario_.file + ": the global model became non-finite before round " + std::to_string(round) +
                     " (training diverged: lower learning_rate or server_learning_rate)");
  BroadcastLink::Sent sent = downlink_->broadcast(round, version_, params_);
  Broadcast b{sent.bytes.size(), sent.payload_bytes, std::move(sent.model)};
  const std::uint64_t link_bytes = payload_accounting_ ? b.payload_bytes : b.bytes;
  server_j_ += server_energy_.compute_j() + server_energy_.broadcast_j(8.0 * static_cast<double>(link_bytes));
  return b;
}

std::uint64_t Server::link_bytes_up(const std::string& update) const {
  if (!payload_accounting_) return update.size();
  try {
    return update_payload_bytes(update);
  } catch (const DecodeError&) {
    return update.size();  // not an UpdateUp: the receiver rejects it; it still crossed the link whole
  }
}

std::vector<Flight> Server::dispatch(const DispatchPlan& plan, const std::vector<std::uint32_t>& clients,
                                     const Broadcast& model, RoundMetrics& m) {
  std::vector<Flight> flights;
  RoundWork work;
  work.start_s = clock_.now_s();
  work.server_s = server_energy_.compute_s();
  work.bytes_down = payload_accounting_ ? model.payload_bytes : model.bytes;
  work.deadline_s = round_deadline_s_;
  work.round = plan.round;
  for (std::uint32_t c : clients) {
    if (population_->drops_out(c, plan.round)) {
      // Gone after receiving the model: it paid for the download only.
      ++m.dropped_offline;
      charge(c, plan.ledger_round, ledger_->round_cost(c, work).download_only(), 0.0, work.start_s);
      continue;
    }
    if (ledger_->model_lost(c, work)) {
      // Its link gave the model up: it paid for the sends (the cost stops there).
      ++m.dropped_network;
      charge(c, plan.ledger_round, ledger_->round_cost(c, work), 0.0, work.start_s);
      continue;
    }
    Flight f;
    f.client = c;
    f.round = plan.round;
    f.start_s = clock_.now_s();
    f.bytes_down = model.bytes;
    flights.push_back(std::move(f));
  }
  const std::uint64_t version = version_;
  const double share_bps =
      server_share_bps(population_->server_capacity_bps(), plan.uplink_sharers ? plan.uplink_sharers : flights.size());
  const auto sent = [&](std::size_t i, double wall_s) {
    Flight& f = flights[i];
    model_math_s_ += wall_s;
    RoundWork w = work;
    w.macs = f.macs;
    w.bytes_up = link_bytes_up(f.update);
    w.uplink_cap_bps = share_bps;
    f.cost = ledger_->round_cost(f.client, w);
    f.arrive_s = f.start_s + f.cost.busy_s();
  };
  // Colluding attackers (clients/attack.h) train first; then, with the
  // statistics of their honest messages (their side channel), they send.
  std::vector<LocalRound> held(flights.size());
  std::vector<std::size_t> colluders;
  std::vector<Participant*> parts(flights.size());  // created here, on the loop's thread
  std::vector<char> colludes(flights.size(), 0);
  for (std::size_t i = 0; i < flights.size(); ++i) {
    parts[i] = &participant(flights[i].client);
    const Attack* attack = population_->client(flights[i].client).attack;
    colludes[i] = attack && attack->colludes();
    if (colludes[i]) colluders.push_back(i);
  }
  try {
    // Under mpirun, the other ranks train the clients they hold while this
    // one trains its own; the lowest failed flight wins wherever it ran.
    std::vector<std::size_t> here;
    const std::vector<std::vector<std::size_t>> away = post_work(flights, colludes, version, model.model, here);
    std::optional<FailedJob> failed;
    const auto local_start = std::chrono::steady_clock::now();
    try {
      pool_->run(
          here.size(),
          [&](std::size_t j) {
            const std::size_t i = here[j];
            Flight& f = flights[i];
            if (colludes[i]) {
              const ClientJob job = client_job(f.client);
              held[i] = job.client->train(job.ctx, f.round, model.model, parts[i]->memory);
              f.macs = held[i].macs;
              return;
            }
            ClientRoundResult r = local_round(f.client, f.round, version, model.model, *parts[i]);
            f.update = std::move(r.update_bytes);
            f.macs = r.macs;
          },
          [&](std::size_t j, double wall_s) {
            if (colludes[here[j]]) model_math_s_ += wall_s;
            else sent(here[j], wall_s);
          });
    } catch (const ClientPool::JobFailed& e) {
      failed = FailedJob{here[e.job], e.what()};
    }
    collect_work(away, flights, failed, sent,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - local_start).count());
    if (failed) throw ClientPool::JobFailed(failed->job, failed->what);
    if (!colluders.empty()) {
      std::vector<const arma::fvec*> honest;
      for (std::size_t i : colluders) honest.push_back(&held[i].message);
      const ColluderStatistics stats = ColluderStatistics::of(honest, flights.size());
      try {
        pool_->run(
            colluders.size(),
            [&](std::size_t j) {
              Flight& f = flights[colluders[j]];
              const ClientJob job = client_job(f.client);
              ClientRoundResult r = job.client->send(job.ctx, f.round, version, std::move(held[colluders[j]]), &stats,
                                                     parts[colluders[j]]->link);
              f.update = std::move(r.update_bytes);
            },
            [&](std::size_t j, double wall_s) { sent(colluders[j], wall_s); });
      } catch (const ClientPool::JobFailed& e) {
        throw ClientPool::JobFailed(colluders[e.job], e.what());
      }
    }
  } catch (const ClientPool::JobFailed& e) {
    throw InputError(scenario_.file + ": client " + std::to_string(flights[e.job].client) +
                     "'s local round failed: " + e.what() +
                     " (a non-finite update usually means local training diverged: lower learning_rate)");
  }
  return flights;
}

ClientRoundResult Server::local_round(std::uint32_t client, std::uint32_t round, std::uint64_t version,
                                      const arma::fvec& model, Participant& p) const {
  const ClientJob job = client_job(client);
  return job.client->run_round(job.ctx, round, version, model, p.link, p.memory);
}

int Server::rank_of(std::uint32_t client) const {
  if (!cluster_) return 0;
  // Colluders share their honest messages before they send (dispatch()):
  // they all live here.
  const Attack* attack = population_->client(client).attack;
  if (attack && attack->colludes()) return 0;
  return static_cast<int>(client % static_cast<std::uint32_t>(cluster_->ranks()));
}

std::vector<std::vector<std::size_t>> Server::post_work(const std::vector<Flight>& flights,
                                                        const std::vector<char>& colludes, std::uint64_t version,
                                                        const arma::fvec& model, std::vector<std::size_t>& here) {
  std::vector<std::vector<std::size_t>> away(cluster_ ? cluster_->ranks() : 1);
  for (std::size_t i = 0; i < flights.size(); ++i) {
    const int rank = colludes[i] ? 0 : rank_of(flights[i].client);
    (rank == 0 ? here : away[rank]).push_back(i);
  }
  if (!cluster_) return away;
  const auto start = std::chrono::steady_clock::now();
  for (int rank = 1; rank < cluster_->ranks(); ++rank) {
    if (away[rank].empty()) continue;
    wire::WorkOrder order;
    order.set_round(flights[away[rank].front()].round);
    order.set_model_version(version);
    order.set_model(model.memptr(), model.n_elem * sizeof(float));
    for (std::size_t i : away[rank]) order.add_clients(flights[i].client);
    const std::string bytes = order.SerializeAsString();
    cluster_time_.bytes_out += bytes.size();
    cluster_->post(rank, bytes);
  }
  cluster_time_.comm_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return away;
}

void Server::collect_work(const std::vector<std::vector<std::size_t>>& away, std::vector<Flight>& flights,
                          std::optional<FailedJob>& failed,
                          const std::function<void(std::size_t, double)>& sent, double local_s) {
  if (!cluster_) return;
  double wait_s = 0.0, slowest_s = 0.0;
  for (int rank = 1; rank < cluster_->ranks(); ++rank) {
    if (away[rank].empty()) continue;
    const auto start = std::chrono::steady_clock::now();
    const std::string bytes = cluster_->collect(rank);
    wait_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    cluster_time_.bytes_in += bytes.size();
    wire::WorkDone done;
    const std::size_t n = away[rank].size();
    if (!done.ParseFromString(bytes) || (done.failed() ? done.failed_at() >= n
                                                        : done.updates_size() != static_cast<int>(n) ||
                                                              done.macs_size() != static_cast<int>(n)))
      throw DecodeError("rank " + std::to_string(rank) + " answered a work order with a malformed reply");
    model_math_s_ += done.compute_s();
    slowest_s = std::max(slowest_s, done.compute_s());
    ++cluster_time_.orders;
    if (done.failed()) {
      const std::size_t i = away[rank][done.failed_at()];
      if (!failed || i < failed->job) failed = FailedJob{i, done.error()};
      continue;
    }
    for (std::size_t j = 0; j < n; ++j) {
      Flight& f = flights[away[rank][j]];
      f.update = std::move(*done.mutable_updates(static_cast<int>(j)));
      f.macs = done.macs(static_cast<int>(j));
      sent(away[rank][j], 0.0);
    }
  }
  cluster_time_.comm_s += std::max(0.0, wait_s - std::max(0.0, slowest_s - local_s));
}

std::string Server::serve(std::string_view order_bytes) {
  const auto start = std::chrono::steady_clock::now();
  wire::WorkOrder order;
  if (!order.ParseFromArray(order_bytes.data(), static_cast<int>(order_bytes.size())))
    throw DecodeError("a malformed work order from rank 0");
  for (std::uint32_t c : order.clients())
    if (c >= num_clients()) throw DecodeError("a work order names no client");
  if (order.kind() != wire::WorkOrder::TRAIN) return serve_state(order);
  if (order.model().size() != params_.n_elem * sizeof(float)) throw DecodeError("a work order's model has another size");
  arma::fvec model(params_.n_elem);
  std::memcpy(model.memptr(), order.model().data(), order.model().size());
  const std::size_t n = static_cast<std::size_t>(order.clients_size());
  std::vector<Participant*> parts(n);  // created here, on this thread
  for (std::size_t j = 0; j < n; ++j) parts[j] = &participant(order.clients(static_cast<int>(j)));
  wire::WorkDone done;
  std::vector<ClientRoundResult> results(n);
  try {
    pool_->run(
        n,
        [&](std::size_t j) {
          results[j] =
              local_round(order.clients(static_cast<int>(j)), order.round(), order.model_version(), model, *parts[j]);
        },
        [](std::size_t, double) {});
    for (ClientRoundResult& r : results) {
      done.add_updates(std::move(r.update_bytes));
      done.add_macs(r.macs);
    }
  } catch (const ClientPool::JobFailed& e) {
    done.set_failed(true);
    done.set_failed_at(static_cast<std::uint32_t>(e.job));
    done.set_error(e.what());
  }
  done.set_compute_s(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return done.SerializeAsString();
}

std::string Server::serve_state(const wire::WorkOrder& order) {
  wire::WorkDone done;
  switch (order.kind()) {
    case wire::WorkOrder::SAVE:
      for (std::uint32_t c : order.clients()) {
        StateWriter out;
        save_client_side(out, participant(c));
        done.add_states(out.take());
      }
      break;
    case wire::WorkOrder::RESTORE:
      if (order.states_size() != order.clients_size()) throw DecodeError("a restore order with missing states");
      try {
        for (int j = 0; j < order.clients_size(); ++j) {
          StateReader in(order.states(j));
          restore_client_side(in, participant(order.clients(j)));
          if (!in.done()) throw DecodeError("bytes after a client's state");
        }
      } catch (const DecodeError& e) {
        done.set_failed(true);
        done.set_error(e.what());
      }
      break;
    case wire::WorkOrder::MEASURE: {
      std::uint64_t total = 0;
      for (const auto& [client, p] : participants_) {
        StateWriter out;
        save_client_side(out, p);
        total += out.bytes().size();
      }
      done.set_state_bytes(total);
      break;
    }
    default:
      throw DecodeError("a work order of unknown kind " + std::to_string(order.kind()));
  }
  return done.SerializeAsString();
}

std::optional<ReceivedUpdate> Server::receive(const Flight& flight, RoundMetrics& m) {
  if (flight.cost.lost_up) {
    ++m.dropped_network;
    try {
      link(flight.client).receive_update(flight.update);
    } catch (const DecodeError&) {
    }
    return std::nullopt;
  }
  try {
    ReceivedUpdate r = link(flight.client).receive_update(flight.update);
    if (r.header.round != flight.round)
      throw DecodeError("UpdateUp for round " + std::to_string(r.header.round) + ", dispatched in round " +
                        std::to_string(flight.round));
    if (r.header.base_version > version_)
      throw DecodeError("UpdateUp computed from model version " + std::to_string(r.header.base_version) +
                        ", newer than the server's " + std::to_string(version_));
    if (r.header.skipped) ++m.censored;
    return r;
  } catch (const DecodeError&) {
    ++m.rejected;
    return std::nullopt;
  }
}

void Server::aggregate(std::vector<Accepted> accepted, RoundMetrics& m) {
  std::sort(accepted.begin(), accepted.end(), [](const Accepted& a, const Accepted& b) {
    const UpdateHeader& x = a.update->header;
    const UpdateHeader& y = b.update->header;
    return x.client != y.client ? x.client < y.client : x.base_version < y.base_version;
  });
  const std::size_t dim = params_.n_elem;
  std::vector<ClientUpdate> updates;
  double loss_sum = 0.0;
  std::uint64_t wire_bits = 0;
  for (const Accepted& a : accepted) {
    const ReceivedUpdate& r = *a.update;
    // The simulator's knowledge, for the metrics only: the aggregator never sees it.
    if (population_->is_attacker(r.header.client)) ++m.attackers;
    ClientUpdate u;
    u.client_id = r.header.client;
    u.num_samples = r.header.num_samples;
    u.weight = a.weight;
    u.vector = {r.vector.memptr(), dim};
    updates.push_back(u);
    loss_sum += r.header.train_loss;
    wire_bits += 8ULL * r.wire_bytes;
  }
  const bool gradients = client_ctx_.content == UpdateContent::kGradient;
  if (!server_optimizer_) {
    // sgd: the aggregator steps itself (x + eta_s * mean difference, or x - eta_s * mean gradient).
    aggregator_->apply(updates, gradients ? -scenario_.server_learning_rate : scenario_.server_learning_rate, params_);
  } else if (!updates.empty()) {
    // FedOpt: the aggregate as a pseudo-gradient, g = -(mean difference) or the mean gradient.
    arma::fvec aggregate(dim, arma::fill::zeros);
    aggregator_->apply(updates, 1.0, aggregate);
    if (!gradients) aggregate = -aggregate;
    server_optimizer_->step(params_, aggregate, scenario_.server_learning_rate);
  }
  m.clients = updates.size();
  if (updates.empty()) return;
  ++version_;
  m.train_loss = loss_sum / static_cast<double>(updates.size());
  m.uplink_bits_per_coord = static_cast<double>(wire_bits) / static_cast<double>(updates.size() * dim);
}

void Server::close_round(RoundMetrics& m, bool last) {
  if (last || m.round % scenario_.eval_every == 0) {
    const auto start = std::chrono::steady_clock::now();
    const Evaluation e = model_->evaluate(params_, data_.test);
    model_math_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    m.test_accuracy = e.accuracy;
    m.test_loss = e.loss;
    summary_.final_accuracy = e.accuracy;
    summary_.final_loss = e.loss;
  }
  m.sparsity = static_cast<double>(arma::accu(params_ == 0.0f)) / static_cast<double>(params_.n_elem);
  // Tails running up to the close may exhaust batteries: those clients left in this round too.
  const std::size_t exhausted_before_tails = ledger_->num_exhausted();
  ledger_->charge_tails(static_cast<std::uint32_t>(m.round), clock_.now_s());
  m.dropped_battery += ledger_->num_exhausted() - exhausted_before_tails;
  RoundEnergy energy = ledger_->take_round();
  m.grid_j = energy.grid_j;
  m.server_j = server_j_;
  server_j_ = 0.0;
  summary_.server_energy_j += m.server_j;
  m.energy = energy.energy;
  m.class_energy_j = std::move(energy.class_j);
  m.sim_time_s = clock_.now_s();
  summary_.bytes_up += m.bytes_up;
  summary_.bytes_down += m.bytes_down;
  summary_.energy_j += m.energy.total_j();
  summary_.rounds.push_back(m);
  if (on_round_) on_round_(m);
}

RoundCost Server::cost_of(std::uint32_t client, const RoundWork& work) { return ledger_->round_cost(client, work); }

void Server::charge(std::uint32_t client, std::uint32_t ledger_round, const RoundCost& cost, double idle_s,
                    double at_s) {
  // A run never charges an exhausted client (its flights end with its
  // battery); only a restored state that contradicts itself can.
  if (ledger_->exhausted(client))
    throw DecodeError("client " + std::to_string(client) + " has a flight but its battery is exhausted");
  ledger_->charge(client, ledger_round, cost, idle_s, at_s);
}

void Server::record(const Flight& f, std::uint32_t round, bool aggregated) {
  trace_.push_back(
      ArrivalRecord{round, f.client, f.start_s, f.arrive_s, f.bytes_down, f.update.size(), f.macs, aggregated, f.cost});
}

void Server::save_client_side(StateWriter& out, const Participant& p) const {
  p.link.save_encoder(out);
  out.put(p.memory.optimizer != nullptr);
  if (p.memory.optimizer) p.memory.optimizer->save(out);
  out.vec(p.memory.last_model);
}

void Server::restore_client_side(StateReader& in, Participant& p) {
  p.link.restore_encoder(in);
  p.memory.optimizer.reset();
  if (in.get<bool>()) {
    if (!client_optimizer_) throw DecodeError("client optimizer state for a scenario without client_optimizer");
    p.memory.optimizer = client_optimizer_->fresh();
    p.memory.optimizer->restore(in);
  }
  p.memory.last_model = in.col<float>();
  if (p.memory.last_model.n_elem != 0 && p.memory.last_model.n_elem != params_.n_elem)
    throw DecodeError("a client's last model has " + std::to_string(p.memory.last_model.n_elem) + " values");
  if (!p.memory.last_model.is_finite()) throw DecodeError("a client's last model holds a non-finite value");
}

std::vector<std::vector<std::uint32_t>> Server::participants_elsewhere() const {
  std::vector<std::vector<std::uint32_t>> by_rank(cluster_ ? cluster_->ranks() : 1);
  if (cluster_)
    for (const auto& [client, p] : participants_)
      if (const int rank = rank_of(client); rank != 0) by_rank[rank].push_back(client);
  return by_rank;
}

std::vector<wire::WorkDone> Server::ask_ranks(int kind,
                                              const std::vector<std::vector<std::uint32_t>>& clients,
                                              const std::function<void(std::uint32_t, wire::WorkOrder&)>& add) const {
  std::vector<wire::WorkDone> answers(clients.size());
  if (!cluster_) return answers;
  for (int rank = 1; rank < cluster_->ranks(); ++rank) {
    wire::WorkOrder order;
    order.set_kind(static_cast<wire::WorkOrder::Kind>(kind));
    for (std::uint32_t c : clients[rank]) {
      order.add_clients(c);
      if (add) add(c, order);
    }
    cluster_->post(rank, order.SerializeAsString());
  }
  for (int rank = 1; rank < cluster_->ranks(); ++rank) {
    wire::WorkDone& done = answers[rank];
    if (!done.ParseFromString(cluster_->collect(rank)))
      throw DecodeError("rank " + std::to_string(rank) + " answered with a malformed reply");
    if (done.failed()) throw DecodeError("rank " + std::to_string(rank) + ": " + done.error());
  }
  return answers;
}

std::map<std::uint32_t, std::string> Server::gather_client_sides() const {
  std::map<std::uint32_t, std::string> states;
  const std::vector<std::vector<std::uint32_t>> by_rank = participants_elsewhere();
  const std::vector<wire::WorkDone> answers = ask_ranks(wire::WorkOrder::SAVE, by_rank, {});
  for (std::size_t rank = 1; rank < answers.size(); ++rank) {
    if (answers[rank].states_size() != static_cast<int>(by_rank[rank].size()))
      throw DecodeError("rank " + std::to_string(rank) + " sent " + std::to_string(answers[rank].states_size()) +
                        " client states for " + std::to_string(by_rank[rank].size()) + " clients");
    for (std::size_t j = 0; j < by_rank[rank].size(); ++j) states[by_rank[rank][j]] = answers[rank].states(static_cast<int>(j));
  }
  return states;
}

void Server::scatter_client_sides() {
  ask_ranks(wire::WorkOrder::RESTORE, participants_elsewhere(), [&](std::uint32_t c, wire::WorkOrder& order) {
    StateWriter out;
    save_client_side(out, participants_.at(c));
    order.add_states(out.take());
  });
}

std::uint64_t Server::client_state_bytes() const {
  std::uint64_t total = 0;
  const std::vector<std::vector<std::uint32_t>> by_rank = participants_elsewhere();
  for (const wire::WorkDone& done : ask_ranks(wire::WorkOrder::MEASURE, by_rank, {})) total += done.state_bytes();
  for (const auto& [client, p] : participants_) {
    StateWriter out;
    p.link.save_decoder(out);
    if (rank_of(client) == 0) save_client_side(out, p);
    total += out.bytes().size();
  }
  return total;
}

void Server::save(StateWriter& out) const {
  out.begin("server");
  out.vec(params_);
  out.put(version_);
  out.put(server_j_);
  clock_.save(out);
  out.put<std::uint64_t>(participants_.size());
  const std::map<std::uint32_t, std::string> elsewhere = gather_client_sides();
  for (const auto& [client, p] : participants_) {
    out.put(client);
    out.put(p.state.busy_until_s), out.put(p.state.in_flight);
    p.link.save_decoder(out);
    if (const auto it = elsewhere.find(client); it != elsewhere.end()) out.raw(it->second);
    else save_client_side(out, p);
  }
  out.put(server_optimizer_ != nullptr);
  if (server_optimizer_) server_optimizer_->save(out);
  downlink_->save(out);
  aggregator_->save(out);
  ledger_->save(out);
  out.put<std::uint64_t>(trace_.size());
  for (const ArrivalRecord& a : trace_) save_state(out, a);
  out.put<std::uint64_t>(summary_.rounds.size());
  for (const RoundMetrics& m : summary_.rounds) save_state(out, m);
  out.put(summary_.final_accuracy), out.put(summary_.final_loss), out.put(summary_.bytes_up);
  out.put(summary_.bytes_down), out.put(summary_.energy_j), out.put(summary_.server_energy_j);
}

void Server::restore(StateReader& in) {
  in.begin("server");
  params_ = in.col<float>(params_.n_elem);
  if (!params_.is_finite()) throw DecodeError("the model holds a non-finite value");
  version_ = in.get<std::uint64_t>();
  server_j_ = in.get<double>();
  clock_.restore(in);
  participants_.clear();
  OrderedIds ids(in, num_clients(), "the participants");
  for (std::size_t k = in.count(num_clients(), 4); k > 0; --k) {
    Participant& p = participant(ids.next());
    p.state.busy_until_s = in.get<double>();
    p.state.in_flight = in.get<bool>();
    p.link.restore_decoder(in);
    restore_client_side(in, p);
  }
  if (in.get<bool>() != (server_optimizer_ != nullptr))
    throw DecodeError("server optimizer state that does not match the scenario's server_optimizer");
  if (server_optimizer_) server_optimizer_->restore(in);
  downlink_->restore(in);
  aggregator_->restore(in);
  ledger_->restore(in);
  trace_.resize(in.count(std::size_t{1} << 40, 8));
  for (ArrivalRecord& a : trace_) restore_state(in, a);
  summary_.rounds.resize(in.count(scenario_.rounds, 8));
  for (RoundMetrics& m : summary_.rounds) restore_state(in, m);
  summary_.final_accuracy = in.get<double>();
  summary_.final_loss = in.get<double>();
  summary_.bytes_up = in.get<std::uint64_t>();
  summary_.bytes_down = in.get<std::uint64_t>();
  summary_.energy_j = in.get<double>();
  summary_.server_energy_j = in.get<double>();
  scatter_client_sides();
}

}  // namespace fedsim
