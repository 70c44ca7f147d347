// Norm clipping: every update v is scaled to v min(1, C / ||v||) before the
// (sample-weighted, like `mean`) average, so that no client moves the model
// by more than its weight's share of C, whatever it sends (Sun, Kairouz,
// Suresh, McMahan, "Can you really backdoor federated learning?", 2019;
// the norm bound of DP-FedAvg, McMahan et al. 2018).
//
// Setting: max_norm C, a finite number >= 0; 0 (the default) = adaptive, the
// median of the L2 norms of the round's updates (so that at most half of
// them are shortened, and attackers who are a minority cannot raise the bound).
// Choices: updates with a non-finite coordinate (whose norm is undefined) or
// policy weight <= 0 are left out; an update of norm 0 is kept as is; norms
// are computed in double.
#include <algorithm>
#include <cmath>
#include <limits>

#include "server/aggregator.h"

namespace fedsim {
namespace {

class ClippingAggregator final : public Aggregator {
 public:
  ClippingAggregator(const AggregatorSettings& settings, double max_norm) : settings_(settings), max_norm_(max_norm) {}

  void apply(std::span<const ClientUpdate> updates, double server_lr, arma::fvec& model) override {
    const std::size_t d = model.n_elem;
    std::vector<double> norm(updates.size(), NAN);
    std::vector<double> finite_norms;
    for (std::size_t c = 0; c < updates.size(); ++c) {
      if (!(updates[c].weight > 0.0)) continue;
      double s = 0.0;
      for (float x : updates[c].vector) s += static_cast<double>(x) * static_cast<double>(x);
      if (!std::isfinite(s)) continue;
      norm[c] = std::sqrt(s);
      finite_norms.push_back(norm[c]);
    }
    if (finite_norms.empty()) return;
    const double bound = max_norm_ > 0.0 ? max_norm_ : median(finite_norms);
    arma::vec sum(d, arma::fill::zeros);
    double total = 0.0;
    for (std::size_t c = 0; c < updates.size(); ++c) {
      if (std::isnan(norm[c])) continue;
      const double w =
          updates[c].weight * (settings_.weight_by_samples ? static_cast<double>(updates[c].num_samples) : 1.0);
      if (!(w > 0.0)) continue;
      const double clip = norm[c] > bound ? bound / norm[c] : 1.0;
      total += w;
      const float* v = updates[c].vector.data();
      for (std::size_t i = 0; i < d; ++i) sum[i] += w * clip * static_cast<double>(v[i]);
    }
    if (!(total > 0.0)) return;
    const double scale = server_lr / total;
    float* x = model.memptr();
    for (std::size_t i = 0; i < d; ++i) x[i] = static_cast<float>(x[i] + scale * sum[i]);
  }

 private:
  static double median(std::vector<double> v) {
    const std::size_t mid = v.size() / 2;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
    const double upper = v[mid];
    if (v.size() % 2 == 1) return upper;
    return 0.5 * (upper + *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid)));
  }

  AggregatorSettings settings_;
  double max_norm_;
};

FEDSIM_REGISTER(AggregatorRegistry, "norm_clipping",
                [](const Config& cfg, const AggregatorSettings& s) -> std::unique_ptr<Aggregator> {
                  const double c = cfg.get_double("max_norm", 0.0, 0.0, std::numeric_limits<double>::max());
                  return std::make_unique<ClippingAggregator>(s, c);
                },
                "mean of the updates clipped to L2 norm max_norm (0 = the round's median norm); setting max_norm 0");

}  // namespace
}  // namespace fedsim
