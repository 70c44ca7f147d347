// ZipML's data-optimal quantization markers (Zhang, Li, Kara, Alistarh, Liu,
// Zhang 2017, "Optimal quantization"): instead of 2^b uniform levels over
// [min, max], place the s = 2^b levels (markers) of each feature where they
// minimise the expected variance of unbiased stochastic rounding over the
// data,
//   V(M) = (1/N) sum_x (u(x) - x)(x - l(x)),   l(x) <= x <= u(x) neighbouring markers,
// by dynamic programming over candidate positions: the data's distinct
// values when there are at most `max_candidates` of them (optimal markers
// can be taken at data points: between two data points the cost is linear
// in a marker's position), else max_candidates evenly spaced points over
// [min, max] whose spacing divides the uniform levels' (so the result is
// never worse than uniform levels on the data). Cost O(s M^2) per feature
// with prefix sums over the sorted data. The end points min and max are
// always markers (no clipping).
//
// In a scenario (`quantization_levels: optimal`, default `uniform`), each
// client below fp32 places the markers of every feature over its own local
// samples (the federated analogue of ZipML's per-data-set markers: no data
// leaves the device) at the start of its local training, and rounds its
// samples onto them (an unbiased stochastic rounding; one 24-bit uniform per
// value). The model and the gradient keep uniform levels, and the samples'
// values are no longer an affine grid, so the packed integer kernels
// (clients/packed_kernels.h) do not apply: such clients compute on the float
// grid.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "core/base/rng.h"
#include "core/data/dataset.h"

namespace fedsim {

// `levels` evenly spaced markers over [lo, hi] (one when lo == hi).
std::vector<float> uniform_markers(float lo, float hi, std::size_t levels);

// The optimal markers (at most `levels`, sorted, first min(x), last max(x)) of
// the values x (not empty, finite), as described above.
std::vector<float> optimal_markers(std::span<const float> x, std::size_t levels, std::size_t max_candidates = 256);

// V(markers) over x: the mean variance of unbiased stochastic rounding of
// each x onto its neighbouring markers (every x within [markers.front(), markers.back()]).
double rounding_variance(std::span<const float> x, std::span<const float> markers);

// out[i] = x[i] rounded to one of its neighbouring markers, up with
// probability (x - l) / (u - l): unbiased. One draw per value from rng; a value
// outside the markers is clamped to the nearest end (cannot happen for the
// data they were placed on). out may alias x.
void stochastic_round_markers(std::span<const float> x, std::span<const float> markers, Rng& rng,
                              std::span<float> out);

// The markers of every feature of data[view] (features x samples, one column
// per sample), 2^bits levels each.
struct FeatureMarkers {
  std::vector<std::vector<float>> features;  // one sorted marker list per feature
  static FeatureMarkers optimal(const Dataset& data, std::span<const std::uint32_t> view, int bits);
};

}  // namespace fedsim
