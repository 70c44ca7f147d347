// Random-k sparsification (Stich, Cordonnier & Jaggi 2018; Wangni et al.
// 2018): k coordinates drawn uniformly without replacement, scaled by n / k.
// Unbiased: E[C(v)] = v (up to the float32 rounding of n/k and of the
// products); E||C(v) - v||^2 = (n/k - 1) ||v||^2.
//
// Settings (stage "rand_k"): `k` or `fraction` as for top_k (default
// fraction 0.01).
//
// Wire format: the sparse entry list of sparse_entries.h with exactly k
// entries, the values already scaled by n/k. The positions are sent rather
// than derived from a seed both ends share: simplest, and robust to a receiver
// that missed a message; it costs about log2(n/k) + 2 bits per entry over the
// seeded variant. Positions come from the Rng passed to encode() (Floyd's sampling).
// encode() throws std::invalid_argument when a selected value, scaled, is not
// finite.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/compression/compressor.h"

namespace fedsim {

class RandK final : public Compressor {
 public:
  RandK(std::size_t k_setting, double fraction) : k_setting_(k_setting), fraction_(fraction) {}

  void encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) override;
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) override;
  bool unbiased() const override { return true; }

  std::size_t k_for(std::size_t n) const;

 private:
  std::size_t k_setting_;
  double fraction_;
  std::vector<std::size_t> chosen_;   // scratch
  std::vector<float> values_;         // scratch
  std::vector<std::uint8_t> marked_;  // scratch for Floyd's sampling, all zero between calls
};

}  // namespace fedsim
