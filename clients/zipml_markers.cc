#include "clients/zipml_markers.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>

namespace fedsim {

std::vector<float> uniform_markers(float lo, float hi, std::size_t levels) {
  assert(levels >= 1);
  if (!(hi > lo) || levels == 1) return {lo};
  std::vector<float> m(levels);
  const double step = (static_cast<double>(hi) - lo) / static_cast<double>(levels - 1);
  for (std::size_t k = 0; k < levels; ++k) m[k] = static_cast<float>(lo + step * static_cast<double>(k));
  m.back() = hi;
  return m;
}

std::vector<float> optimal_markers(std::span<const float> x, std::size_t levels, std::size_t max_candidates) {
  assert(!x.empty() && levels >= 1 && max_candidates >= 2);
  std::vector<double> sorted(x.begin(), x.end());
  std::sort(sorted.begin(), sorted.end());
  const double lo = sorted.front(), hi = sorted.back();
  if (!(hi > lo)) return {static_cast<float>(lo)};
  // Candidates: the distinct values, or an even grid whose spacing divides the uniform levels'.
  std::vector<double> cand;
  for (double v : sorted)
    if (cand.empty() || v != cand.back()) cand.push_back(v);
  if (cand.size() > max_candidates) {
    const std::size_t per = levels >= 2 ? std::max<std::size_t>(1, (max_candidates - 1) / (levels - 1)) : 1;
    const std::size_t m = levels >= 2 ? per * (levels - 1) + 1 : max_candidates;
    cand.resize(m);
    for (std::size_t k = 0; k < m; ++k) cand[k] = lo + (hi - lo) * static_cast<double>(k) / static_cast<double>(m - 1);
    cand.back() = hi;
  }
  const std::size_t m = cand.size();
  if (levels >= m) return std::vector<float>(cand.begin(), cand.end());
  // Prefix sums over the sorted data: count, sum x, sum x^2.
  const std::size_t n = sorted.size();
  std::vector<double> s1(n + 1, 0.0), s2(n + 1, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    s1[i + 1] = s1[i] + sorted[i];
    s2[i + 1] = s2[i] + sorted[i] * sorted[i];
  }
  // first[k]: the first data index >= cand[k]; past[k]: the first index > cand[k].
  std::vector<std::size_t> first(m), past(m);
  for (std::size_t k = 0; k < m; ++k) {
    first[k] = static_cast<std::size_t>(std::lower_bound(sorted.begin(), sorted.end(), cand[k]) - sorted.begin());
    past[k] = static_cast<std::size_t>(std::upper_bound(sorted.begin(), sorted.end(), cand[k]) - sorted.begin());
  }
  // cost(i, j) = sum over data in [c_i, c_j] of (c_j - x)(x - c_i) = -S2 + (c_i + c_j) S1 - c_i c_j N.
  auto cost = [&](std::size_t i, std::size_t j) {
    const std::size_t a = first[i], b = past[j];
    if (b <= a) return 0.0;
    const double cnt = static_cast<double>(b - a);
    const double c = -(s2[b] - s2[a]) + (cand[i] + cand[j]) * (s1[b] - s1[a]) - cand[i] * cand[j] * cnt;
    return std::max(c, 0.0);
  };
  constexpr double kInf = std::numeric_limits<double>::infinity();
  // f[k][j]: least cost with k + 1 markers, the last at candidate j (the first at 0).
  std::vector<std::vector<double>> f(levels, std::vector<double>(m, kInf));
  std::vector<std::vector<std::size_t>> from(levels, std::vector<std::size_t>(m, 0));
  f[0][0] = 0.0;
  for (std::size_t k = 1; k < levels; ++k) {
    for (std::size_t j = k; j < m; ++j) {
      double best = kInf;
      std::size_t arg = 0;
      for (std::size_t i = k - 1; i < j; ++i) {
        if (f[k - 1][i] == kInf) continue;
        const double v = f[k - 1][i] + cost(i, j);
        if (v < best) {
          best = v;
          arg = i;
        }
      }
      f[k][j] = best;
      from[k][j] = arg;
    }
  }
  std::vector<float> markers(levels);
  std::size_t j = m - 1;
  for (std::size_t k = levels; k-- > 0;) {
    markers[k] = static_cast<float>(cand[j]);
    if (k > 0) j = from[k][j];
  }
  return markers;
}

double rounding_variance(std::span<const float> x, std::span<const float> markers) {
  assert(!markers.empty());
  double total = 0.0;
  for (float v : x) {
    const auto up = std::lower_bound(markers.begin(), markers.end(), v);
    if (up == markers.end() || *up == v || up == markers.begin()) continue;
    const double u = *up, l = *(up - 1);
    total += (u - v) * (v - l);
  }
  return x.empty() ? 0.0 : total / static_cast<double>(x.size());
}

void stochastic_round_markers(std::span<const float> x, std::span<const float> markers, Rng& rng,
                              std::span<float> out) {
  assert(out.size() == x.size() && !markers.empty());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float v = x[i];
    const float uniform = rng.uniform_float();
    const auto up = std::lower_bound(markers.begin(), markers.end(), v);
    if (up == markers.end()) {
      out[i] = markers.back();
    } else if (up == markers.begin() || *up == v) {
      out[i] = *up;
    } else {
      const float u = *up, l = *(up - 1);
      out[i] = uniform < (v - l) / (u - l) ? u : l;
    }
  }
}

FeatureMarkers FeatureMarkers::optimal(const Dataset& data, std::span<const std::uint32_t> view, int bits) {
  FeatureMarkers out;
  const std::size_t dim = data.dim();
  out.features.resize(dim);
  if (view.empty()) return out;
  std::vector<float> column(view.size());
  for (std::size_t f = 0; f < dim; ++f) {
    for (std::size_t j = 0; j < view.size(); ++j) column[j] = data.features(f, view[j]);
    out.features[f] = optimal_markers(column, std::size_t{1} << bits, 64);
  }
  return out;
}

}  // namespace fedsim
