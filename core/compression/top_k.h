// Top-k sparsification (Aji & Heafield 2017; Stich, Cordonnier & Jaggi 2018,
// "Sparsified SGD with memory"): keep the k coordinates of largest |v_i|,
// zero the rest. Biased (a delta-contraction with delta = k / n): meant to be
// wrapped by error_feedback.
//
// Settings (stage "top_k"): either `k` (>= 1 coordinates, clamped to n) or
// `fraction` in (0, 1] (default 0.01; k = ceil(fraction * n), at least 1 when
// n > 0). Giving both is an error.
// Ties in |v_i| are broken towards the lower index, so the selection is a
// deterministic function of v. Selection is nth_element on magnitudes:
// O(n + k log k) per call.
//
// Wire format: the sparse entry list below with exactly k entries (the
// decoder knows k from n and the settings). encode() throws
// std::invalid_argument on a non-finite input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/coding/bit_io.h"
#include "core/compression/compressor.h"

namespace fedsim {

// The sparse entry list shared by top_k and rand_k: for each entry, in
// increasing position order, Elias gamma of the gap between 1-based positions
// (the first gap is the first position itself), then the value as float32;
// one bit stream, zero padded to a byte at the end. Decoding checks every
// position against n, rejects non-finite values, writes zeros elsewhere and
// requires the stream to end there (DecodeError otherwise).
void write_sparse_entries(BitWriter& writer, std::span<const std::size_t> sorted_indices,
                          std::span<const float> values_at_indices);
void read_sparse_entries(std::span<const std::uint8_t> payload, std::size_t count, std::span<float> out,
                         const char* scheme);

// k for a vector of n coordinates from either setting (k_setting 0 = use fraction).
std::size_t sparse_count(std::size_t n, std::size_t k_setting, double fraction);
// Reads the settings `k` / `fraction` (see above); returns k (0 when fraction
// is used) and sets `fraction`.
std::size_t read_sparse_count_settings(const Config& settings, double& fraction);

class TopK final : public Compressor {
 public:
  // k_setting = 0 selects ceil(fraction * n).
  TopK(std::size_t k_setting, double fraction) : k_setting_(k_setting), fraction_(fraction) {}

  void encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) override;
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) override;
  bool unbiased() const override { return false; }

  std::size_t k_for(std::size_t n) const { return sparse_count(n, k_setting_, fraction_); }

 private:
  std::size_t k_setting_;
  double fraction_;
  std::vector<std::size_t> order_;  // scratch: candidate indices
  std::vector<float> values_;       // scratch: selected values
};

}  // namespace fedsim
