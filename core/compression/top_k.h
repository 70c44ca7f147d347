// Top-k sparsification (Aji & Heafield 2017; Stich, Cordonnier & Jaggi 2018,
// "Sparsified SGD with memory"): keep the k coordinates of largest |v_i|,
// zero the rest. Biased (a delta-contraction with delta = k / n): meant to be
// wrapped by error_feedback.
//
// Settings (stage "top_k"): either `k` (>= 1 coordinates, clamped to n) or
// `fraction` in (0, 1] (default 0.01; k = ceil(fraction * n), at least 1 when
// n > 0). Giving both is an error.
// Ties in |v_i| are broken towards the lower index, so the selection is a
// deterministic function of v. Selection is a radix select on the
// magnitudes' bit patterns (three passes over v, then a selection among the
// few magnitudes next to the k-th largest): O(n) per call, the exact top-k.
//
// Wire format: the sparse entry list of sparse_entries.h with exactly k
// entries (the decoder knows k from n and the settings). encode() throws
// std::invalid_argument on a non-finite input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/compression/compressor.h"
#include "core/compression/error_feedback.h"
#include "core/compression/sparse_entries.h"

namespace fedsim {

// Fuses error feedback: u = v + e is stored over e while the selection's
// second pass reads it (seven passes' worth of memory traffic instead of ten).
class TopK final : public Compressor, public FusesErrorFeedback {
 public:
  // k_setting = 0 selects ceil(fraction * n).
  TopK(std::size_t k_setting, double fraction) : k_setting_(k_setting), fraction_(fraction) {}

  void encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) override;
  void encode_with_memory(std::span<const float> v, std::span<float> memory, Rng& rng, Bytes& out,
                          std::span<float> reconstructed) override;
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) override;
  bool unbiased() const override { return false; }

  std::size_t k_for(std::size_t n) const { return sparse_count(n, k_setting_, fraction_); }

 private:
  // The top-k of u = v, or of u = fl(v + memory) leaving memory = fl(u - C(u)).
  void encode_selection(std::span<const float> v, float* memory, Bytes& out, std::span<float> reconstructed);

  std::size_t k_setting_;
  double fraction_;
  std::vector<std::size_t> order_;  // scratch: candidate indices
  std::vector<float> values_;       // scratch: selected values
  std::vector<std::size_t> histogram_;        // scratch: counts of the magnitudes' top bits
  std::vector<std::uint32_t> candidates_;     // scratch: magnitudes in the k-th largest's bin
};

}  // namespace fedsim
