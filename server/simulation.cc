#include "server/simulation.h"

#include <utility>  // before asio (see README: Boost 1.74 + GCC 12 + C++20)

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <exception>
#include <thread>

#include "core/base/blas_threads.h"
#include "core/base/errors.h"
#include "core/models/tanh_latent_model.h"
#include "server/virtual_clock.h"
#include "wire.pb.h"  // generated from core/wire.proto

namespace fedsim {

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// A client's finished round as the server sees it.
struct Arrival {
  std::uint32_t client = 0;
  ClientRoundResult result;
  RoundCost cost;
  double start_s = 0.0;   // when the model was sent
  double arrive_s = 0.0;  // start + busy time
  std::uint64_t base_version = 0;
  double compute_wall_s = 0.0;
  std::exception_ptr error;  // the client's work threw (e.g. a diverged, non-finite update)
};

}  // namespace

struct Simulation::Impl {
  Impl(std::size_t threads, std::string scenario_file) : pool(threads), file(std::move(scenario_file)) {}

  boost::asio::io_context io;
  boost::asio::thread_pool pool;
  std::string file;  // the scenario, for error messages
  VirtualClock clock;
  ClientContext client_ctx;
  std::vector<Layer> layers;
  // Server ends of each client's uplink pipeline (stage memory lives here).
  std::map<std::uint32_t, std::unique_ptr<Compressor>> uplink_decoders;
  // Downlink: the server encodes x - reference; every client holds the same
  // reference (broadcast with memory, as in Artemis / MCM).
  std::unique_ptr<Compressor> downlink_encoder;
  std::unique_ptr<Compressor> downlink_decoder;
  arma::fvec server_reference;
  arma::fvec client_reference;
  std::vector<char> in_flight;
  // Sync policies: when each client's last update arrives. A straggler whose
  // round closed without it is still busy (not sampled) until then.
  std::vector<double> busy_until_s;
  double model_math_s = 0.0;
  std::uint64_t rejected_messages = 0;

  // Runs `work` for each client in the pool; each completion is handed to
  // `on_done` on the server's io_context thread. Returns when all are done.
  // A client whose work threw is not handed on; once every client is done,
  // the first such failure (in batch order, so the same whatever the thread
  // timing) ends the run with an InputError naming the client.
  void compute(std::vector<Arrival>& batch, const std::function<void(Arrival&)>& work,
               const std::function<void(Arrival&)>& on_done) {
    if (batch.empty()) return;
    auto guard = boost::asio::make_work_guard(io);
    std::size_t outstanding = batch.size();
    for (Arrival& a : batch) {
      boost::asio::post(pool, [&, ptr = &a] {
        const auto start = std::chrono::steady_clock::now();
        try {
          work(*ptr);
        } catch (...) {
          ptr->error = std::current_exception();
        }
        ptr->compute_wall_s = seconds_since(start);
        boost::asio::post(io, [&, ptr] {
          if (!ptr->error) on_done(*ptr);
          if (--outstanding == 0) guard.reset();
        });
      });
    }
    io.restart();
    io.run();
    for (const Arrival& a : batch) {
      if (!a.error) continue;
      try {
        std::rethrow_exception(a.error);
      } catch (const std::exception& e) {
        throw InputError(file + ": client " + std::to_string(a.client) + "'s local round failed: " + e.what() +
                         " (a non-finite update usually means local training diverged: lower learning_rate)");
      }
    }
  }
};

Simulation::Simulation(const Scenario& scenario) : scenario_(scenario) {
  const auto data_source = DataSourceRegistry::instance().create(scenario.data.where("source"),
                                                                 scenario.data.get_string("source", "fashion_mnist"),
                                                                 scenario.data);
  const auto partitioner = PartitionerRegistry::instance().create(
      scenario.partition.where("scheme"), scenario.partition.get_string("scheme", "iid"), scenario.partition);
  ModelInput input;
  data_ = data_source->load(scenario.seed);
  input.dim = data_.train.dim();
  input.num_classes = data_.train.num_classes;
  auto base_model = ModelRegistry::instance().create(scenario.model.where("name"),
                                                     scenario.model.get_string("name", "softmax_regression"),
                                                     scenario.model, input);
  if (scenario.algorithm == "fedvote") {
    model_ = std::make_unique<TanhLatentModel>(std::move(base_model), static_cast<float>(scenario.fedvote_k));
  } else {
    model_ = std::move(base_model);
  }
  AggregatorSettings agg_settings;
  agg_settings.weight_by_samples = scenario.weight_by_samples;
  aggregator_ = AggregatorRegistry::instance().create(scenario.aggregator.where("name"),
                                                      scenario.aggregator.get_string("name", "mean"),
                                                      scenario.aggregator, agg_settings);
  population_ = std::make_unique<Population>(scenario.root, scenario.num_clients, scenario.seed);
  ledger_ = std::make_unique<EnergyLedger>(*population_);
  if (scenario.policy.kind == RoundPolicy::kAsync && !scenario.downlink.is_plain_float32())
    throw InputError(scenario.file + ": downlink: compression of the downlink needs a synchronous server policy "
                     "(the broadcast memory assumes every client sees every round's model)");
  // Every key of the file has now been read by its owner: the rest are typos.
  scenario.root.finish();

  if (data_.train.size() < scenario.num_clients)
    throw InputError(scenario.file + ": clients: " + std::to_string(scenario.num_clients) +
                     " clients but only " + std::to_string(data_.train.size()) + " training samples");
  Rng partition_rng = Rng::derive(scenario.seed, Stream::kPartition);
  std::vector<IndexView> views = partitioner->split(data_.train, scenario.num_clients, partition_rng);
  // Client classes with a smaller data_weight hold proportionally less data:
  // each client keeps the first ceil(size * w / w_max) samples of its share
  // (at least one), so the heaviest class keeps its whole partition.
  double max_weight = 0.0;
  for (std::uint32_t i = 0; i < views.size(); ++i) max_weight = std::max(max_weight, population_->client(i).data_weight);
  for (std::uint32_t i = 0; i < views.size(); ++i) {
    const double keep = std::ceil(double(views[i].size()) * population_->client(i).data_weight / max_weight);
    views[i].resize(std::clamp<std::size_t>(static_cast<std::size_t>(keep), 1, views[i].size()));
  }
  clients_.reserve(views.size());
  for (std::size_t i = 0; i < views.size(); ++i)
    clients_.emplace_back(static_cast<std::uint32_t>(i), std::move(views[i]),
                          population_->client(static_cast<std::uint32_t>(i)).precision);

  Rng init_rng = Rng::derive(scenario.seed, Stream::kModelInit);
  params_.set_size(model_->num_params());
  model_->init(params_, init_rng);

  std::size_t threads = scenario.threads;
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  use_single_threaded_blas();  // our pool provides the parallelism (see core/blas_threads.h)
  impl_ = std::make_unique<Impl>(threads, scenario.file);
  impl_->layers = model_->layers();
  impl_->client_ctx.model = model_.get();
  impl_->client_ctx.train = &data_.train;
  impl_->client_ctx.training = scenario.training;
  impl_->client_ctx.uplink = &scenario.uplink;
  impl_->client_ctx.layers = impl_->layers;
  impl_->client_ctx.content = scenario.algorithm == "fedvote" ? UpdateContent::kWeights : UpdateContent::kDifference;
  impl_->client_ctx.seed = scenario.seed;
  impl_->in_flight.assign(clients_.size(), 0);
  impl_->busy_until_s.assign(clients_.size(), 0.0);
  const std::uint64_t downlink_seed = mix64(scenario.seed ^ 0xd0d0d0d0ULL);
  impl_->downlink_encoder = scenario.downlink.make(params_.n_elem, impl_->layers, downlink_seed);
  impl_->downlink_decoder = scenario.downlink.make(params_.n_elem, impl_->layers, downlink_seed);
  impl_->server_reference.zeros(params_.n_elem);
  impl_->client_reference.zeros(params_.n_elem);
}

Simulation::~Simulation() = default;

namespace {

// Samples k of `candidates` uniformly (partial Fisher-Yates), sorted by id.
std::vector<std::uint32_t> sample_clients(std::vector<std::uint32_t> candidates, std::size_t k, Rng& rng) {
  k = std::min(k, candidates.size());
  for (std::size_t i = 0; i < k; ++i) std::swap(candidates[i], candidates[i + rng.below(candidates.size() - i)]);
  candidates.resize(k);
  std::sort(candidates.begin(), candidates.end());
  return candidates;
}

}  // namespace

RunSummary Simulation::run(const std::function<void(const RoundMetrics&)>& on_round) {
  const Scenario& sc = scenario_;
  Impl& im = *impl_;
  RunSummary summary;
  const auto wall_start = std::chrono::steady_clock::now();
  const std::size_t dim = params_.n_elem;
  const bool plain_downlink = sc.downlink.is_plain_float32();
  std::uint64_t version = 0;

  // Builds and serializes the round's ModelDown, then decodes it as a client
  // would; returns the serialized size and the model the clients start from.
  auto broadcast = [&](std::uint32_t round, arma::fvec& start_model) -> std::uint64_t {
    wire::ModelDown down;
    down.set_round(round);
    down.set_model_version(version);
    down.set_num_params(static_cast<std::uint32_t>(dim));
    down.set_is_difference(!plain_downlink);
    Bytes payload;
    arma::fvec recon(dim);
    Rng rng = Rng::derive(sc.seed, Stream::kDownlink, {round});
    if (plain_downlink) {
      im.downlink_encoder->encode({params_.memptr(), dim}, rng, payload, {recon.memptr(), dim});
    } else {
      arma::fvec diff = params_ - im.server_reference;
      im.downlink_encoder->encode({diff.memptr(), dim}, rng, payload, {recon.memptr(), dim});
      im.server_reference += recon;
    }
    down.set_payload(payload.data(), payload.size());
    std::string bytes;
    down.SerializeToString(&bytes);
    // The receiving end.
    wire::ModelDown received;
    if (!received.ParseFromString(bytes) || received.num_params() != dim)
      throw DecodeError("ModelDown did not parse back");
    arma::fvec decoded(dim);
    im.downlink_decoder->decode({reinterpret_cast<const std::uint8_t*>(received.payload().data()), received.payload().size()},
                                {decoded.memptr(), dim});
    if (received.is_difference()) {
      im.client_reference += decoded;
      start_model = im.client_reference;
    } else {
      start_model = decoded;
    }
    return bytes.size();
  };

  // Local work of one client (runs in the pool).
  auto make_work = [&](std::uint32_t round, std::uint64_t base_version, const arma::fvec& start_model) {
    return [&, round, base_version](Arrival& a) {
      a.result = clients_[a.client].run_round(im.client_ctx, round, base_version, start_model);
    };
  };

  // Server side of an arrival: decode the UpdateUp; false if rejected.
  auto receive = [&](const Arrival& a, arma::fvec& decoded, wire::UpdateUp& up) -> bool {
    if (!up.ParseFromString(a.result.update_bytes) || up.client_id() != a.client) {
      ++im.rejected_messages;
      return false;
    }
    auto& decoder = im.uplink_decoders[a.client];
    if (!decoder) decoder = sc.uplink.make(dim, im.layers, mix64(sc.seed ^ (static_cast<std::uint64_t>(a.client) << 20)));
    decoded.set_size(dim);
    try {
      decoder->decode({reinterpret_cast<const std::uint8_t*>(up.payload().data()), up.payload().size()},
                      {decoded.memptr(), dim});
    } catch (const DecodeError&) {
      ++im.rejected_messages;
      return false;
    }
    return true;
  };

  auto evaluate_into = [&](RoundMetrics& m, bool force) {
    if (!force && m.round % sc.eval_every != 0) return;
    const auto start = std::chrono::steady_clock::now();
    const Evaluation e = model_->evaluate(params_, data_.test);
    im.model_math_s += seconds_since(start);
    m.test_accuracy = e.accuracy;
    m.test_loss = e.loss;
    summary.final_accuracy = e.accuracy;
    summary.final_loss = e.loss;
  };

  auto finish_round = [&](RoundMetrics& m) {
    const RoundEnergy energy = ledger_->take_round();
    m.energy_j = energy.total_j();
    m.compute_j = energy.compute_j;
    m.tx_j = energy.tx_j;
    m.rx_j = energy.rx_j;
    m.idle_j = energy.idle_j;
    m.class_energy_j = energy.class_j;
    m.sim_time_s = im.clock.now_s();
    summary.bytes_up += m.bytes_up;
    summary.bytes_down += m.bytes_down;
    summary.energy_j += m.energy_j;
    summary.rounds.push_back(m);
    if (on_round) on_round(m);
  };

  auto available_clients = [&](std::uint32_t round, double t) {
    std::vector<std::uint32_t> out;
    for (std::uint32_t c = 0; c < clients_.size(); ++c)
      if (!im.in_flight[c] && im.busy_until_s[c] <= t && !ledger_->exhausted(c) && population_->is_online(c, round, t))
        out.push_back(c);
    return out;
  };

  auto active_clients = [&] {
    std::uint64_t n = 0;
    for (std::uint32_t c = 0; c < clients_.size(); ++c) n += ledger_->exhausted(c) ? 0 : 1;
    return n;
  };

  if (sc.policy.kind != RoundPolicy::kAsync) {
    for (std::uint32_t round = 1; round <= sc.rounds; ++round) {
      RoundMetrics m;
      m.round = round;
      const double round_start = im.clock.now_s();
      double t0 = round_start;  // when the model is sent
      std::vector<std::uint32_t> candidates = available_clients(round, t0);
      if (candidates.empty()) {
        // Every client left may still be finishing an earlier round: wait for
        // the first of them rather than run empty rounds that take no time.
        double next_free = std::numeric_limits<double>::infinity();
        for (std::uint32_t c = 0; c < clients_.size(); ++c)
          if (!ledger_->exhausted(c) && im.busy_until_s[c] > t0) next_free = std::min(next_free, im.busy_until_s[c]);
        if (std::isfinite(next_free)) {
          im.clock.advance_to(next_free);
          t0 = next_free;
          candidates = available_clients(round, t0);
        }
      }
      const std::size_t exhausted_before = ledger_->num_exhausted();
      std::size_t want = sc.clients_per_round;
      if (sc.policy.kind == RoundPolicy::kOverSelection)
        want = static_cast<std::size_t>(std::ceil(static_cast<double>(want) * sc.policy.over_selection));
      Rng sampling = Rng::derive(sc.seed, Stream::kSampling, {round});
      const std::vector<std::uint32_t> sampled = sample_clients(std::move(candidates), want, sampling);

      arma::fvec start_model;
      const std::uint64_t down_size = broadcast(round, start_model);
      // A compressed downlink is a broadcast every remaining client receives.
      m.bytes_down = down_size * (plain_downlink ? sampled.size() : active_clients());

      std::vector<Arrival> batch;
      for (std::uint32_t c : sampled) {
        if (population_->drops_out(c, round)) {
          // Gone after receiving the model: it paid for the download only.
          ++m.dropped_offline;
          RoundCost cost = round_cost(population_->client(c), down_size, 0.0, 0, 0.0);
          cost.compute_s = cost.up_s = 0.0;
          cost.compute_j = cost.tx_j = 0.0;
          ledger_->charge(c, round, cost, 0.0);
          continue;
        }
        Arrival a;
        a.client = c;
        a.start_s = t0;
        a.base_version = version;
        batch.push_back(std::move(a));
      }
      const std::size_t uploading = batch.size();
      im.compute(batch, make_work(round, version, start_model), [&](Arrival& a) {
        im.model_math_s += a.compute_wall_s;
        a.cost = round_cost(population_->client(a.client), down_size, a.result.macs, a.result.update_bytes.size(),
                            server_share_bps(population_->server_capacity_bps(), uploading));
        a.arrive_s = a.start_s + a.cost.busy_s();
      });

      // Arrivals in virtual-time order, on a clock of their own: the round
      // may close (deadline, r-th arrival) before the last update arrives,
      // and the simulation clock then moves only to the round's end.
      VirtualClock arrivals;
      arrivals.advance_to(t0);
      std::vector<const Arrival*> accepted;
      std::vector<arma::fvec> decoded_store(batch.size());
      std::vector<std::size_t> accepted_index;
      double round_end = t0;
      double last_arrival = t0;
      std::size_t arrived = 0;
      for (std::size_t i = 0; i < batch.size(); ++i) {
        Arrival* a = &batch[i];
        arrivals.schedule(a->arrive_s, a->client, [&, a, i] {
          ++arrived;
          last_arrival = arrivals.now_s();
          m.bytes_up += a->result.update_bytes.size();
          wire::UpdateUp up;
          // Decode every message that arrives, late ones too: stateful stages
          // stay in step with the client even when the update is not used.
          const bool ok = receive(*a, decoded_store[i], up);
          bool take = ok;
          if (sc.policy.kind == RoundPolicy::kDeadline && arrivals.now_s() > t0 + sc.policy.deadline_s) {
            take = false;
            ++m.dropped_deadline;
          }
          if (sc.policy.kind == RoundPolicy::kOverSelection && accepted.size() >= sc.clients_per_round) {
            take = false;
          }
          if (take) {
            accepted.push_back(a);
            accepted_index.push_back(i);
            if (sc.policy.kind == RoundPolicy::kOverSelection && accepted.size() == sc.clients_per_round)
              round_end = arrivals.now_s();
          }
        });
      }
      while (!arrivals.empty()) arrivals.run_next();
      switch (sc.policy.kind) {
        case RoundPolicy::kWaitAll:
          round_end = last_arrival;
          break;
        case RoundPolicy::kDeadline:
          round_end = m.dropped_deadline > 0 ? t0 + sc.policy.deadline_s : last_arrival;
          break;
        case RoundPolicy::kOverSelection:
          if (accepted.size() < sc.clients_per_round) round_end = last_arrival;
          break;
        case RoundPolicy::kAsync:
          break;
      }
      (void)arrived;

      // Energy: every dispatched client paid its round; those done early
      // wait, online and idle, until the round ends.
      for (const Arrival& a : batch) {
        const bool used = std::find(accepted_index.begin(), accepted_index.end(),
                                    static_cast<std::size_t>(&a - batch.data())) != accepted_index.end();
        ledger_->charge(a.client, round, a.cost, std::max(0.0, round_end - a.arrive_s));
        im.busy_until_s[a.client] = a.arrive_s;
        trace_.push_back(ArrivalRecord{round, a.client, a.start_s, a.arrive_s, down_size,
                                       a.result.update_bytes.size(), a.result.macs, used, a.cost});
      }

      // Aggregate in client-id order (batch is sorted by id).
      std::vector<ClientUpdate> updates;
      double loss_sum = 0.0;
      std::uint64_t payload_bits = 0;
      std::sort(accepted_index.begin(), accepted_index.end());
      for (std::size_t i : accepted_index) {
        const Arrival& a = batch[i];
        ClientUpdate u;
        u.client_id = a.client;
        u.num_samples = static_cast<std::uint32_t>(clients_[a.client].num_samples());
        u.vector = {decoded_store[i].memptr(), dim};
        updates.push_back(u);
        loss_sum += a.result.train_loss;
        payload_bits += 8ULL * a.result.update_bytes.size();
      }
      aggregator_->apply(updates, sc.server_learning_rate, params_);
      if (!updates.empty()) ++version;
      m.clients = updates.size();
      m.train_loss = updates.empty() ? NAN : loss_sum / static_cast<double>(updates.size());
      m.uplink_bits_per_coord = updates.empty() ? 0.0 : static_cast<double>(payload_bits) / static_cast<double>(updates.size() * dim);
      m.dropped_battery = ledger_->num_exhausted() - exhausted_before;
      im.clock.advance_to(round_end);
      m.round_time_s = round_end - round_start;
      evaluate_into(m, round == sc.rounds);
      finish_round(m);
    }
  } else {
    // FedBuff: `concurrency` clients always in flight; every buffer_size
    // arrivals the server aggregates, weighting each update by
    // (1 + staleness)^-a where staleness = versions since its base model.
    struct Buffered {
      std::uint32_t client;
      std::uint64_t base_version;
      arma::fvec vector;
      double loss;
      std::uint64_t bytes;
    };
    std::vector<Buffered> buffer;
    std::vector<std::unique_ptr<Arrival>> flights;
    RoundMetrics m;
    m.round = 1;
    double round_start = 0.0;
    std::uint32_t dispatch_count = 0;
    std::uint64_t aggregations = 0;
    std::size_t exhausted_before = ledger_->num_exhausted();

    auto dispatch = [&](std::size_t how_many) {
      const double t = im.clock.now_s();
      ++dispatch_count;
      Rng sampling = Rng::derive(sc.seed, Stream::kSampling, {dispatch_count});
      // Availability is drawn per dispatch (population.h): a server waiting
      // for someone to come online must see fresh draws.
      const std::vector<std::uint32_t> chosen = sample_clients(available_clients(dispatch_count, t), how_many, sampling);
      arma::fvec start_model;
      const std::uint64_t down_size = broadcast(static_cast<std::uint32_t>(aggregations + 1), start_model);
      std::vector<Arrival> batch;
      for (std::uint32_t c : chosen) {
        m.bytes_down += down_size;
        if (population_->drops_out(c, dispatch_count)) {
          ++m.dropped_offline;
          RoundCost cost = round_cost(population_->client(c), down_size, 0.0, 0, 0.0);
          cost.compute_s = cost.up_s = 0.0;
          cost.compute_j = cost.tx_j = 0.0;
          ledger_->charge(c, static_cast<std::uint32_t>(aggregations + 1), cost, 0.0);
          continue;
        }
        Arrival a;
        a.client = c;
        a.start_s = t;
        a.base_version = version;
        im.in_flight[c] = 1;
        batch.push_back(std::move(a));
      }
      im.compute(batch, make_work(static_cast<std::uint32_t>(dispatch_count), version, start_model), [&](Arrival& a) {
        im.model_math_s += a.compute_wall_s;
        a.cost = round_cost(population_->client(a.client), down_size, a.result.macs, a.result.update_bytes.size(),
                            server_share_bps(population_->server_capacity_bps(), sc.policy.concurrency));
        a.arrive_s = a.start_s + a.cost.busy_s();
      });
      for (Arrival& a : batch) {
        flights.push_back(std::make_unique<Arrival>(std::move(a)));
        Arrival* ptr = flights.back().get();
        im.clock.schedule(ptr->arrive_s, ptr->client, [&, ptr] {
          im.in_flight[ptr->client] = 0;
          ledger_->charge(ptr->client, static_cast<std::uint32_t>(aggregations + 1), ptr->cost, 0.0);
          trace_.push_back(ArrivalRecord{static_cast<std::uint32_t>(aggregations + 1), ptr->client, ptr->start_s,
                                         ptr->arrive_s, down_size, ptr->result.update_bytes.size(), ptr->result.macs,
                                         true, ptr->cost});
          m.bytes_up += ptr->result.update_bytes.size();
          arma::fvec decoded;
          wire::UpdateUp up;
          if (receive(*ptr, decoded, up))
            buffer.push_back(Buffered{ptr->client, ptr->base_version, std::move(decoded), ptr->result.train_loss,
                                      ptr->result.update_bytes.size()});
          flights.erase(std::find_if(flights.begin(), flights.end(), [&](const auto& f) { return f.get() == ptr; }));
        });
      }
    };

    dispatch(sc.policy.concurrency);
    while (aggregations < sc.rounds) {
      if (im.clock.empty()) {
        // Nobody in flight (everyone offline or exhausted): try again later,
        // unless no client can ever come back.
        bool may_return = false;
        for (std::uint32_t c = 0; c < clients_.size() && !may_return; ++c) {
          const Availability& a = population_->client(c).availability;
          may_return = !ledger_->exhausted(c) &&
                       !(a.kind == Availability::Kind::kProbability && a.online_probability <= 0.0) &&
                       !(a.kind == Availability::Kind::kPeriodic && a.on_fraction <= 0.0);
        }
        if (!may_return) break;
        im.clock.advance_to(im.clock.now_s() + 1.0);
        dispatch(sc.policy.concurrency);
        continue;
      }
      im.clock.run_next();
      if (buffer.size() >= sc.policy.buffer_size) {
        std::sort(buffer.begin(), buffer.end(), [](const Buffered& a, const Buffered& b) {
          return a.client != b.client ? a.client < b.client : a.base_version < b.base_version;
        });
        std::vector<ClientUpdate> updates;
        double loss_sum = 0.0;
        std::uint64_t bits = 0;
        for (const Buffered& b : buffer) {
          ClientUpdate u;
          u.client_id = b.client;
          u.num_samples = static_cast<std::uint32_t>(clients_[b.client].num_samples());
          u.weight = std::pow(1.0 + static_cast<double>(version - b.base_version), -sc.policy.staleness_exponent);
          u.vector = {b.vector.memptr(), dim};
          updates.push_back(u);
          loss_sum += b.loss;
          bits += 8 * b.bytes;
        }
        aggregator_->apply(updates, sc.server_learning_rate, params_);
        ++version;
        ++aggregations;
        m.round = aggregations;
        m.clients = updates.size();
        m.train_loss = loss_sum / static_cast<double>(updates.size());
        m.uplink_bits_per_coord = static_cast<double>(bits) / static_cast<double>(updates.size() * dim);
        m.dropped_battery = ledger_->num_exhausted() - exhausted_before;
        exhausted_before = ledger_->num_exhausted();
        m.round_time_s = im.clock.now_s() - round_start;
        round_start = im.clock.now_s();
        buffer.clear();
        evaluate_into(m, aggregations == sc.rounds);
        finish_round(m);
        m = RoundMetrics{};
      }
      // Keep `concurrency` clients in flight.
      std::size_t in_flight = 0;
      for (char f : im.in_flight) in_flight += f ? 1 : 0;
      if (aggregations < sc.rounds && in_flight < sc.policy.concurrency) dispatch(sc.policy.concurrency - in_flight);
    }
  }

  summary.sim_time_s = im.clock.now_s();
  summary.wall_s = seconds_since(wall_start);
  summary.model_math_s = im.model_math_s;
  summary.clients_exhausted = ledger_->num_exhausted();
  return summary;
}

}  // namespace fedsim
