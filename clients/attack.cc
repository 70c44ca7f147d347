#include "clients/attack.h"

#include <algorithm>
#include <cassert>
#include <cmath>

namespace fedsim {

ColluderStatistics ColluderStatistics::of(const std::vector<const arma::fvec*>& honest, std::size_t batch) {
  ColluderStatistics s;
  s.colluders = honest.size();
  s.batch = batch;
  if (honest.empty()) return s;
  const std::size_t n = honest.front()->n_elem;
  const double m = static_cast<double>(honest.size());
  arma::vec sum(n, arma::fill::zeros);
  for (const arma::fvec* v : honest) {
    assert(v->n_elem == n);
    for (std::size_t i = 0; i < n; ++i) sum[i] += (*v)[i];
  }
  const arma::vec mean = sum / m;
  arma::vec squares(n, arma::fill::zeros);
  for (const arma::fvec* v : honest)
    for (std::size_t i = 0; i < n; ++i) {
      const double d = (*v)[i] - mean[i];
      squares[i] += d * d;
    }
  s.mean = arma::conv_to<arma::fvec>::from(mean);
  s.stddev = honest.size() > 1 ? arma::conv_to<arma::fvec>::from(arma::sqrt(squares / (m - 1.0)))
                               : arma::fvec(n, arma::fill::zeros);
  return s;
}

Dataset label_flipped(const Dataset& train) {
  assert(train.is_classification());
  Dataset out;
  out.name = train.name + " (labels flipped)";
  // Aliases the original samples: copy_aux_mem = false, strict = false (so
  // that a move keeps the alias instead of copying).
  out.features = arma::fmat(const_cast<float*>(train.features.memptr()), train.features.n_rows,
                            train.features.n_cols, false, false);
  out.num_classes = train.num_classes;
  out.labels.resize(train.labels.size());
  for (std::size_t i = 0; i < train.labels.size(); ++i) out.labels[i] = train.num_classes - 1 - train.labels[i];
  return out;
}

double inverse_normal_cdf(double p) {
  assert(p > 0.0 && p < 1.0);
  // Phi(x) = erfc(-x / sqrt(2)) / 2 is increasing; bisect on [-40, 40].
  double lo = -40.0, hi = 40.0;
  for (int i = 0; i < 200 && hi - lo > 1e-15; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}

double little_is_enough_z(std::size_t n, std::size_t m) {
  assert(n >= 1);
  const long long majority = static_cast<long long>(n / 2 + 1);
  const long long s = std::max<long long>(1, majority - static_cast<long long>(m));
  const double p = static_cast<double>(static_cast<long long>(n) - s) / static_cast<double>(n);
  if (p <= 0.0) return 0.0;  // n = 1: nobody to win over
  return inverse_normal_cdf(p);
}

}  // namespace fedsim
