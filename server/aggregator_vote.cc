// FedVote's server rule (Yue, Jin, Wong, Dai 2021): the messages are votes
// (+-1 from fedvote_binary, +-1/0 from fedvote_ternary) on the normalised
// weights w = tanh(k h). The soft vote v = weighted mean of the votes per
// coordinate, clamped to +-(1 - 1e-4), sets the new latent weights
// h = atanh(v) / k.
//
// Byzantine-resilient variant (`reputation: true`): a client's credibility is
// the fraction of its votes that agree with the round's majority sign,
// smoothed across rounds by an EMA c <- beta c + (1 - beta) agreement (a
// client's first round sets c to its agreement). Clients whose credibility is
// below the mean credibility of the round's participants get weight 0; the
// others vote with weight proportional to (base weight) x credibility,
// normalised. State persists per client id across rounds.
//
// Choices not fixed by the paper:
// - base weight = policy weight x num_samples (or x 1 when weight_by_samples
//   is off), as in the mean aggregator; clients with base weight <= 0 are out.
// - A vote counts by its sign (NaN counts as 0), whatever float arrives.
// - The majority is the sign of the base-weighted plain vote; coordinates
//   where it is exactly 0 are not counted; a ternary 0 vote (abstention)
//   counts as not agreeing. When no coordinate has a majority, the round
//   carries no reputation information and the plain vote is used.
// - server_lr interpolates: h <- h + server_lr (atanh(v) / k - h); the
//   paper's rule is server_lr = 1.
#include <algorithm>
#include <cassert>
#include <cmath>
#include <unordered_map>

#include "server/aggregator.h"

namespace fedsim {
namespace {

constexpr double kVoteClamp = 1.0 - 1e-4;

inline double vote_sign(float x) { return static_cast<double>((x > 0.0f) - (x < 0.0f)); }

class VoteAggregator final : public Aggregator {
 public:
  VoteAggregator(const AggregatorSettings& settings, double k, bool reputation, double beta)
      : settings_(settings), k_(k), reputation_(reputation), beta_(beta) {}

  void apply(std::span<const ClientUpdate> updates, double server_lr, arma::fvec& model) override {
    if (updates.empty()) return;
    const std::size_t n = model.n_elem;
    std::vector<double> weight(updates.size(), 0.0);
    double total = 0.0;
    for (std::size_t c = 0; c < updates.size(); ++c) {
      assert(updates[c].vector.size() == n);
      const double w = updates[c].weight * (settings_.weight_by_samples ? updates[c].num_samples : 1.0);
      weight[c] = w > 0.0 ? w : 0.0;
      total += weight[c];
    }
    if (!(total > 0.0)) return;
    if (reputation_) reweight_by_credibility(updates, weight, n);

    weighted_vote_sum(updates, weight, n);
    total = 0.0;
    for (double w : weight) total += w;
    if (!(total > 0.0)) return;
    float* h = model.memptr();
    for (std::size_t i = 0; i < n; ++i) {
      const double v = std::clamp(sum_[i] / total, -kVoteClamp, kVoteClamp);
      const double target = std::atanh(v) / k_;
      h[i] = static_cast<float>(h[i] + server_lr * (target - h[i]));
    }
  }

  void save(StateWriter& out) const override {
    out.begin("vote");
    std::vector<std::pair<std::uint32_t, double>> sorted(credibility_.begin(), credibility_.end());
    std::sort(sorted.begin(), sorted.end());
    out.put<std::uint64_t>(sorted.size());
    for (const auto& [client, c] : sorted) out.put(client), out.put(c);
  }
  void restore(StateReader& in) override {
    in.begin("vote");
    credibility_.clear();
    for (std::size_t i = in.count(std::size_t{1} << 32, sizeof(std::uint32_t) + sizeof(double)); i > 0; --i) {
      const auto client = in.get<std::uint32_t>();
      const double c = in.get<double>();
      if (!credibility_.emplace(client, c).second)
        throw DecodeError("vote: client " + std::to_string(client) + " twice in the credibility table");
    }
  }

 private:
  // sum_[i] = sum over clients of weight x sign(vote_i), in client-id order.
  void weighted_vote_sum(std::span<const ClientUpdate> updates, const std::vector<double>& weight, std::size_t n) {
    sum_.zeros(n);
    double* s = sum_.memptr();
    for (std::size_t c = 0; c < updates.size(); ++c) {
      if (weight[c] <= 0.0) continue;
      const float* v = updates[c].vector.data();
      for (std::size_t i = 0; i < n; ++i) s[i] += weight[c] * vote_sign(v[i]);
    }
  }

  void reweight_by_credibility(std::span<const ClientUpdate> updates, std::vector<double>& weight, std::size_t n) {
    weighted_vote_sum(updates, weight, n);
    majority_.resize(n);
    std::size_t counted = 0;
    for (std::size_t i = 0; i < n; ++i) {
      majority_[i] = static_cast<double>((sum_[i] > 0.0) - (sum_[i] < 0.0));
      counted += majority_[i] != 0.0;
    }
    if (counted == 0) return;

    std::vector<double> cred(updates.size(), 0.0);
    double cred_sum = 0.0;
    std::size_t participants = 0;
    for (std::size_t c = 0; c < updates.size(); ++c) {
      if (weight[c] <= 0.0) continue;
      const float* v = updates[c].vector.data();
      std::size_t agree = 0;
      for (std::size_t i = 0; i < n; ++i) agree += majority_[i] != 0.0 && vote_sign(v[i]) == majority_[i];
      const double agreement = static_cast<double>(agree) / static_cast<double>(counted);
      auto [it, inserted] = credibility_.try_emplace(updates[c].client_id, agreement);
      if (!inserted) it->second = beta_ * it->second + (1.0 - beta_) * agreement;
      cred[c] = it->second;
      cred_sum += cred[c];
      ++participants;
    }
    const double mean = cred_sum / static_cast<double>(participants);
    // A small tolerance so that equal credibilities are never split by the
    // rounding of their mean.
    const double threshold = mean - 1e-12;
    for (std::size_t c = 0; c < updates.size(); ++c) weight[c] = cred[c] >= threshold ? weight[c] * cred[c] : 0.0;
  }

  AggregatorSettings settings_;
  double k_;
  bool reputation_;
  double beta_;
  std::unordered_map<std::uint32_t, double> credibility_;
  arma::vec sum_;
  std::vector<double> majority_;  // sign of the round's plain vote per coordinate
};

FEDSIM_REGISTER(AggregatorRegistry, "vote",
                [](const Config& cfg, const AggregatorSettings& s) -> std::unique_ptr<Aggregator> {
                  const double k = cfg.get_double("k", 1.5, 1e-3, 1e3);
                  const bool reputation = cfg.get_bool("reputation", false);
                  const double beta = cfg.get_double("beta", 0.5, 0.0, 1.0);
                  return std::make_unique<VoteAggregator>(s, k, reputation, beta);
                },
                "FedVote: soft vote v of the clients' votes, h = atanh(v)/k; settings k, reputation, beta");

}  // namespace
}  // namespace fedsim
