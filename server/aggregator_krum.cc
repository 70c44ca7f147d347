// Krum and multi-Krum (Blanchard, El Mhamdi, Guerraoui, Stainer, NeurIPS
// 2017). With n updates of which at most f are Byzantine, each update i gets
// the score s(i) = sum of its squared L2 distances to its n - f - 2 nearest
// other updates; Krum adds the update with the lowest score, multi-Krum
// (m > 1) the unweighted mean of the m updates with the lowest scores.
// Guarantee (the paper's Proposition 1, tested): for n > 2f + 2 the chosen
// update is (alpha, f)-Byzantine resilient: f arbitrary vectors cannot pull it
// far from the honest ones, since to be chosen a vector must be close to
// n - f - 2 others, most of them honest.
//
// Settings: f (integer >= 0, default 0), m (integer >= 1, default 1).
// Choices not fixed by the paper:
// - When a round has n <= 2f + 2 updates (drop-outs, deadlines), the
//   neighbour count is clamped to max(1, n - f - 2) ... n - 1, and m to n:
//   Krum still picks the most central updates but the guarantee is void.
// - Updates with a non-finite coordinate or policy weight <= 0 are left out
//   before scoring (a NaN distance would otherwise never lose).
// - Ties in score go to the lower client id (updates arrive sorted by id).
// - The selection is unweighted, as in the paper (a Byzantine client could
//   inflate its sample count); distances are accumulated in double.
// Cost: O(n^2 d) per round for n updates of d coordinates.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "server/aggregator.h"

namespace fedsim {
namespace {

class KrumAggregator final : public Aggregator {
 public:
  KrumAggregator(std::size_t f, std::size_t m) : f_(f), m_(m) {}

  void apply(std::span<const ClientUpdate> updates, double server_lr, arma::fvec& model) override {
    const std::vector<std::size_t> chosen = select(updates);
    if (chosen.empty()) return;
    const std::size_t d = model.n_elem;
    arma::vec sum(d, arma::fill::zeros);
    for (std::size_t c : chosen) {
      const float* v = updates[c].vector.data();
      for (std::size_t i = 0; i < d; ++i) sum[i] += v[i];
    }
    const double scale = server_lr / static_cast<double>(chosen.size());
    float* x = model.memptr();
    for (std::size_t i = 0; i < d; ++i) x[i] = static_cast<float>(x[i] + scale * sum[i]);
  }

  // Indices into `updates` of the m chosen ones, best score first.
  std::vector<std::size_t> select(std::span<const ClientUpdate> updates) const {
    std::vector<std::size_t> valid;
    for (std::size_t c = 0; c < updates.size(); ++c) {
      if (!(updates[c].weight > 0.0)) continue;
      const auto& v = updates[c].vector;
      if (std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); })) valid.push_back(c);
    }
    const std::size_t n = valid.size();
    if (n == 0) return {};
    std::vector<double> dist(n * n, 0.0);
    for (std::size_t a = 0; a < n; ++a)
      for (std::size_t b = a + 1; b < n; ++b) {
        const auto& x = updates[valid[a]].vector;
        const auto& y = updates[valid[b]].vector;
        double s = 0.0;
        for (std::size_t i = 0; i < x.size(); ++i) {
          const double diff = static_cast<double>(x[i]) - static_cast<double>(y[i]);
          s += diff * diff;
        }
        dist[a * n + b] = dist[b * n + a] = s;
      }
    const std::size_t neighbours =
        n < 2 ? 0 : std::clamp<std::ptrdiff_t>(static_cast<std::ptrdiff_t>(n) - static_cast<std::ptrdiff_t>(f_) - 2, 1,
                                               static_cast<std::ptrdiff_t>(n) - 1);
    std::vector<double> score(n, 0.0), row;
    for (std::size_t a = 0; a < n; ++a) {
      row.clear();
      for (std::size_t b = 0; b < n; ++b)
        if (b != a) row.push_back(dist[a * n + b]);
      std::partial_sort(row.begin(), row.begin() + static_cast<std::ptrdiff_t>(neighbours), row.end());
      score[a] = std::accumulate(row.begin(), row.begin() + static_cast<std::ptrdiff_t>(neighbours), 0.0);
    }
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return score[a] < score[b]; });
    order.resize(std::min(m_, n));
    for (std::size_t& o : order) o = valid[o];
    return order;
  }

 private:
  std::size_t f_;
  std::size_t m_;
};

FEDSIM_REGISTER(AggregatorRegistry, "krum",
                [](const Config& cfg, const AggregatorSettings&) -> std::unique_ptr<Aggregator> {
                  const auto f = static_cast<std::size_t>(cfg.get_int("f", 0, 0, 1 << 20));
                  const auto m = static_cast<std::size_t>(cfg.get_int("m", 1, 1, 1 << 20));
                  return std::make_unique<KrumAggregator>(f, m);
                },
                "Krum / multi-Krum (Blanchard et al. 2017): the m updates closest to their n-f-2 neighbours, "
                "averaged; settings f 0 (Byzantine clients tolerated), m 1");

}  // namespace
}  // namespace fedsim
