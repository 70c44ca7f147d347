// The round policy of decentralized algorithms (server/decentralized.h):
// no server model and no sampling; every iteration each node gossips its
// model to its neighbours, mixes, and takes its proximal (variance-reduced)
// stochastic gradient step. Nodes are processed in id order on the loop's
// thread, so numbers do not depend on `threads`.
//
// Events: kStep at the start of an iteration (all the math, then the
// iteration's time from the network and device models), kClose when its
// slowest node is done (the metrics row).
#include <cmath>
#include <limits>

#include "core/base/errors.h"
#include "server/checkpoint.h"
#include "server/decentralized.h"
#include "server/round_policy.h"
#include "server/server.h"

namespace fedsim {
namespace {

class GossipPolicy final : public RoundPolicy {
 public:
  GossipPolicy(const Config& server, const PolicyInput& in) : server_(server), rounds_(in.rounds) {}

  void start(Server& s) override {
    setup(s);
    s.clock().schedule(0.0, kServerTarget, kStep);
  }

  void on_event(Server& s, const Event& e) override {
    if (e.kind == kStep) step(s);
    else close(s);
  }
  bool on_idle(Server&) override { return false; }
  bool finished() const override { return done_ >= rounds_; }
  bool broadcasts_to_all() const override { return false; }
  bool dispatches_clients() const override { return false; }  // nodes run their links here

  void save(StateWriter& out) const override {
    out.begin("gossip");
    out.put<std::uint64_t>(done_);
    for (const arma::fvec& x : x_) out.vec(x);
    for (const arma::fvec& x : snapshot_) out.vec(x);
    for (const arma::fvec& x : mu_) out.vec(x);
    out.put<std::uint64_t>(public_.size());
    for (const arma::fvec& x : public_) out.vec(x);
    out.put<std::uint64_t>(costs_.size());
    for (const RoundCost& c : costs_) save_state(out, c);
    save_state(out, m_);
    out.put(start_s_);
  }

  void restore(StateReader& in, Server& s) override {
    setup(s);
    in.begin("gossip");
    done_ = static_cast<std::size_t>(in.get<std::uint64_t>());
    const std::size_t dim = s.num_params();
    for (arma::fvec& x : x_) x = in.col<float>(dim);
    // Snapshots and their full gradients exist from the first iteration on.
    for (arma::fvec& x : snapshot_) x = in.col<float>(done_ ? dim : 0);
    for (arma::fvec& x : mu_) x = in.col<float>(done_ ? dim : 0);
    public_.resize(in.count(x_.size(), 8));
    if (!public_.empty() && public_.size() != x_.size()) throw DecodeError("gossip: public copies for some nodes only");
    for (arma::fvec& x : public_) x = in.col<float>(dim);
    costs_.resize(in.count(x_.size(), 8));
    for (RoundCost& c : costs_) restore_state(in, c);
    restore_state(in, m_);
    start_s_ = in.get<double>();
    if (done_ > rounds_) throw DecodeError("gossip: " + std::to_string(done_) + " iterations done of " +
                                           std::to_string(rounds_));
  }

 private:
  enum Kind : std::uint32_t { kStep, kClose };

  // What start() and restore() both build: the algorithm, the graph, the nodes' models.
  void setup(Server& s) {
    algorithm_ = dynamic_cast<const DecentralizedAlgorithm*>(s.scenario().algorithm.get());
    if (!algorithm_)
      throw InputError(server_.where("policy") + ": expected a decentralized algorithm (dspg, dpsvrg) for policy "
                       "'gossip', found algorithm '" + s.scenario().algorithm_name + "'");
    const Scenario& sc = s.scenario();
    if (s.procedural_data())
      throw InputError(sc.data.where("source") + ": expected a stored data set for policy 'gossip' (its nodes' "
                       "objective needs the whole training set), found procedural source '" +
                       sc.data.get_string("source", "") + "'");
    topology_ = algorithm_->topology(s.num_clients(), sc.seed, sc.file);
    x_.assign(s.num_clients(), s.model_params());
    if (algorithm_->settings().variance_reduced) {
      snapshot_.assign(s.num_clients(), arma::fvec());
      mu_.assign(s.num_clients(), arma::fvec());
    }
    all_.resize(s.data().train.size());
    for (std::uint32_t i = 0; i < all_.size(); ++i) all_[i] = i;
  }

  // f_i's gradient (+ weight decay) at x on the samples `batch` of the train set; returns the loss.
  double gradient(const Server& s, const arma::fvec& x, const std::vector<std::uint32_t>& batch, arma::fvec& g) const {
    const double loss = s.model().loss_and_gradient(x, s.data().train, batch, g);
    const double wd = s.scenario().training.weight_decay;
    if (wd > 0.0) g += static_cast<float>(wd) * x;
    return loss;
  }

  void step(Server& s) {
    const Scenario& sc = s.scenario();
    const DecentralizedSettings& set = algorithm_->settings();
    const std::size_t n = x_.size();
    const std::uint32_t k = static_cast<std::uint32_t>(done_ + 1);  // iteration, 1-based
    m_ = RoundMetrics{};
    m_.round = k;
    start_s_ = s.now_s();

    const double alpha = sc.training.learning_rate / (set.inverse_sqrt_step ? std::sqrt(static_cast<double>(k)) : 1.0);
    const bool snapshot_now = set.variance_reduced && (k - 1) % set.snapshot_period == 0;
    double loss_sum = 0.0;
    std::vector<double> samples(n, 0.0);
    std::vector<arma::fvec> v(n);  // each node's (variance-reduced) stochastic gradient at x_i
    arma::fvec gs;
    std::vector<std::uint32_t> batch;
    for (std::uint32_t i = 0; i < n; ++i) {
      const IndexView& view = s.client_data(i);
      const std::size_t b = sc.training.batch_size == 0 ? view.size() : sc.training.batch_size;
      if (sc.training.batch_size == 0) {
        batch.assign(view.begin(), view.end());
      } else {
        Rng rng = Rng::derive(sc.seed, Stream::kTraining, {i, k});
        batch.resize(b);
        for (std::size_t t = 0; t < b; ++t) batch[t] = view[rng.below(view.size())];
      }
      if (snapshot_now) {
        snapshot_[i] = x_[i];
        std::vector<std::uint32_t> local(view.begin(), view.end());
        gradient(s, snapshot_[i], local, mu_[i]);
        samples[i] += static_cast<double>(view.size());
      }
      loss_sum += gradient(s, x_[i], batch, v[i]);
      samples[i] += static_cast<double>(b);
      if (set.variance_reduced) {
        gradient(s, snapshot_[i], batch, gs);
        v[i] = v[i] - gs + mu_[i];
        samples[i] += static_cast<double>(b);
      }
    }

    // Gossip: each node's message goes out once as an UpdateUp through its
    // link; its neighbours all receive those bytes (decoded once).
    std::vector<std::uint64_t> bytes(n);
    const auto send = [&](std::uint32_t i, const arma::fvec& vector) {
      UpdateHeader h;
      h.client = i;
      h.round = k;
      h.base_version = k - 1;
      h.num_samples = static_cast<std::uint32_t>(s.client_data(i).size());
      Rng rng = Rng::derive(sc.seed, Stream::kUplink, {i, k});
      const std::string message = s.link(i).send_update(h, {vector.memptr(), vector.n_elem}, rng);
      bytes[i] = message.size();
      return s.link(i).receive_update(message).vector;
    };
    if (!set.choco) {
      // Plain: the models themselves (float32), mixed, then the proximal step.
      std::vector<arma::fvec> received(n), mixed;
      for (std::uint32_t i = 0; i < n; ++i) received[i] = send(i, x_[i]);
      gossip_mix(topology_, received, mixed);
      for (std::uint32_t i = 0; i < n; ++i) {
        x_[i] = mixed[i] - static_cast<float>(alpha) * v[i];
        soft_threshold(x_[i], alpha * set.l1);
      }
    } else {
      // CHOCO-gossip: the proximal step, then the compressed difference to
      // the node's public copy; every holder of a copy adds what was decoded.
      if (public_.empty()) public_.assign(n, arma::fvec(x_[0].n_elem, arma::fill::zeros));
      std::vector<arma::fvec> decoded(n);
      for (std::uint32_t i = 0; i < n; ++i) {
        x_[i] -= static_cast<float>(alpha) * v[i];
        soft_threshold(x_[i], alpha * set.l1);
        const arma::fvec difference = x_[i] - public_[i];
        decoded[i] = send(i, difference);
      }
      choco_mix(topology_, set.gamma, decoded, public_, x_);
    }

    // The network and device models: degree copies of its message up, its
    // neighbours' messages down, its gradients' MACs.
    double slowest = 0.0;
    costs_.resize(n);
    for (std::uint32_t i = 0; i < n; ++i) {
      RoundWork w;
      w.start_s = start_s_;
      for (std::uint32_t j : topology_.neighbours[i]) w.bytes_down += bytes[j];
      w.bytes_up = bytes[i] * topology_.neighbours[i].size();
      w.macs = s.model().macs_per_sample() * samples[i];
      costs_[i] = s.cost_of(i, w);
      slowest = std::max(slowest, costs_[i].busy_s());
      m_.bytes_up += w.bytes_up;
      m_.bytes_down += w.bytes_down;
    }
    m_.clients = n;
    m_.train_loss = loss_sum / static_cast<double>(n);
    s.clock().schedule(start_s_ + slowest, kServerTarget, kClose);
  }

  void close(Server& s) {
    const std::size_t n = x_.size();
    const double end = s.now_s();
    for (std::uint32_t i = 0; i < n; ++i)
      s.charge(i, m_.round, costs_[i], std::max(0.0, end - start_s_ - costs_[i].busy_s()), start_s_);
    arma::vec sum(x_[0].n_elem, arma::fill::zeros);
    for (const arma::fvec& x : x_) sum += arma::conv_to<arma::vec>::from(x);
    const arma::vec mean = sum / static_cast<double>(n);
    double distance = 0.0;
    for (const arma::fvec& x : x_) distance += arma::accu(arma::square(arma::conv_to<arma::vec>::from(x) - mean));
    m_.consensus_distance = distance / static_cast<double>(n);
    const arma::fvec average = arma::conv_to<arma::fvec>::from(mean);
    s.set_model(average);
    arma::fvec unused;
    const double wd = s.scenario().training.weight_decay;
    m_.objective = s.model().loss_and_gradient(average, s.data().train, all_, unused) +
                   algorithm_->settings().l1 * arma::accu(arma::abs(mean)) +
                   0.5 * wd * arma::accu(arma::square(mean));
    m_.round_time_s = end - start_s_;
    ++done_;
    s.close_round(m_, done_ == rounds_);
    if (done_ < rounds_) s.clock().schedule(end, kServerTarget, kStep);
  }

  Config server_;
  std::size_t rounds_;
  std::size_t done_ = 0;
  const DecentralizedAlgorithm* algorithm_ = nullptr;
  Topology topology_;
  std::vector<arma::fvec> x_, snapshot_, mu_;
  std::vector<arma::fvec> public_;  // CHOCO: the public copies xhat_i every neighbour holds
  std::vector<std::uint32_t> all_;
  std::vector<RoundCost> costs_;
  RoundMetrics m_;
  double start_s_ = 0.0;
};

FEDSIM_REGISTER(RoundPolicyRegistry, "gossip", make_round_policy<GossipPolicy>,
                "decentralized (dspg, dpsvrg): no server; nodes gossip with their neighbours every iteration");

}  // namespace
}  // namespace fedsim
