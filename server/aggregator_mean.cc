// FedPAQ / FedAvg: x <- x + server_lr * (weighted mean of the differences).
#include "server/aggregator.h"

namespace fedsim {
namespace {

class MeanAggregator final : public Aggregator {
 public:
  explicit MeanAggregator(const AggregatorSettings& settings) : settings_(settings) {}

  void apply(std::span<const ClientUpdate> updates, double server_lr, arma::fvec& model) override {
    if (updates.empty()) return;
    // Accumulate in double: the order is fixed, and the sum of many float
    // updates keeps its precision.
    sum_.zeros(model.n_elem);
    double total_weight = 0.0;
    for (const ClientUpdate& u : updates) {
      const double w = u.weight * (settings_.weight_by_samples ? static_cast<double>(u.num_samples) : 1.0);
      if (w <= 0.0) continue;
      total_weight += w;
      const float* v = u.vector.data();
      double* s = sum_.memptr();
      for (std::size_t i = 0; i < model.n_elem; ++i) s[i] += w * static_cast<double>(v[i]);
    }
    if (total_weight <= 0.0) return;
    const double scale = server_lr / total_weight;
    float* m = model.memptr();
    for (std::size_t i = 0; i < model.n_elem; ++i) m[i] += static_cast<float>(scale * sum_[i]);
  }

 private:
  AggregatorSettings settings_;
  arma::vec sum_;
};

FEDSIM_REGISTER(AggregatorRegistry, "mean",
                [](const Config&, const AggregatorSettings& s) -> std::unique_ptr<Aggregator> {
                  return std::make_unique<MeanAggregator>(s);
                },
                "weighted mean of client differences (FedAvg / FedPAQ)");

}  // namespace
}  // namespace fedsim
