// Coordinate-wise robust aggregation rules (Yin, Chen, Ramchandran, Bartlett
// 2018): x <- x + server_lr * statistic of the client differences, taken per
// coordinate.
// - "median": the coordinate-wise median (mean of the two middle values when
//   the count is even).
// - "trimmed_mean": drop the floor(trim * m) largest and the floor(trim * m)
//   smallest of the m values, average the rest; trim in [0, 0.5) so at least
//   one value remains.
// Choices: the statistics are unweighted (a Byzantine client could inflate
// its sample count); clients with policy weight <= 0 are left out; values
// that are not finite (NaN, +-inf) are discarded per coordinate, so that a
// single client cannot poison a coordinate, and m counts the finite values;
// a coordinate with no finite value is left unchanged.
// Cost: O(m) per coordinate (selection, no full sort).
#include <algorithm>
#include <cassert>
#include <cmath>
#include <sstream>

#include "server/aggregator.h"

namespace fedsim {
namespace {

class CoordinateRobustAggregator : public Aggregator {
 public:
  void apply(std::span<const ClientUpdate> updates, double server_lr, arma::fvec& model) override {
    const std::size_t n = model.n_elem;
    columns_.clear();
    for (const ClientUpdate& u : updates) {
      assert(u.vector.size() == n);
      if (u.weight > 0.0) columns_.push_back(u.vector.data());
    }
    if (columns_.empty()) return;
    values_.resize(columns_.size());
    float* x = model.memptr();
    for (std::size_t i = 0; i < n; ++i) {
      std::size_t m = 0;
      for (const float* col : columns_) {
        const float v = col[i];
        if (std::isfinite(v)) values_[m++] = v;
      }
      if (m == 0) continue;
      x[i] = static_cast<float>(x[i] + server_lr * statistic(values_.data(), m));
    }
  }

 protected:
  // The statistic of values[0, m), m >= 1, all finite; may reorder them.
  virtual double statistic(float* values, std::size_t m) const = 0;

 private:
  std::vector<const float*> columns_;
  std::vector<float> values_;
};

class MedianAggregator final : public CoordinateRobustAggregator {
 protected:
  double statistic(float* values, std::size_t m) const override {
    const std::size_t mid = m / 2;
    std::nth_element(values, values + mid, values + m);
    const double upper = values[mid];
    if (m % 2 == 1) return upper;
    const double lower = *std::max_element(values, values + mid);
    return 0.5 * (lower + upper);
  }
};

class TrimmedMeanAggregator final : public CoordinateRobustAggregator {
 public:
  explicit TrimmedMeanAggregator(double trim) : trim_(trim) {}

 protected:
  double statistic(float* values, std::size_t m) const override {
    // The epsilon keeps e.g. 0.3 * 10 from flooring to 2.
    const auto drop = static_cast<std::size_t>(std::floor(trim_ * static_cast<double>(m) + 1e-9));
    if (drop > 0) {
      // Smallest `drop` values to the front, largest `drop` to the back.
      std::nth_element(values, values + drop, values + m);
      std::nth_element(values + drop, values + (m - drop - 1), values + m);
    }
    double sum = 0.0;
    for (std::size_t j = drop; j < m - drop; ++j) sum += values[j];
    return sum / static_cast<double>(m - 2 * drop);
  }

 private:
  double trim_;
};

FEDSIM_REGISTER(AggregatorRegistry, "median",
                [](const Config&, const AggregatorSettings&) -> std::unique_ptr<Aggregator> {
                  return std::make_unique<MedianAggregator>();
                },
                "coordinate-wise median of client differences (Byzantine-robust)");

FEDSIM_REGISTER(AggregatorRegistry, "trimmed_mean",
                [](const Config& cfg, const AggregatorSettings&) -> std::unique_ptr<Aggregator> {
                  const double trim = cfg.get_double("trim", 0.1, 0.0, 0.5);
                  if (trim >= 0.5) {
                    std::ostringstream found;
                    found << "'" << trim << "'";
                    cfg.fail("trim", "a number in [0, 0.5)", found.str());
                  }
                  return std::make_unique<TrimmedMeanAggregator>(trim);
                },
                "coordinate-wise trimmed mean of client differences; setting trim in [0, 0.5), default 0.1");

}  // namespace
}  // namespace fedsim
