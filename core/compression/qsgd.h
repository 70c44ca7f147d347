// QSGD: stochastic uniform quantization with Elias coding.
// Alistarh, Grubic, Li, Tomioka, Vojnovic, NeurIPS 2017.
//
// Q_s(v)_i = ||v|| * sgn(v_i) * xi_i, xi_i in {0, 1/s, ..., 1}, rounded up
// from l/s with probability |v_i|/||v|| * s - l. Unbiased; Lemma 3.1:
// E||Q_s(v) - v||^2 <= min(n/s^2, sqrt(n)/s) ||v||^2 (n -> d with buckets);
// E[non-zeros] <= s(s + sqrt n).
//
// Settings (stage "qsgd"):
//   levels  s >= 1 (default 15, at most 2^24 so levels are exact in float)
//   bucket  d coordinates per bucket, each with its own norm; 0 = the whole
//           vector (default 0, the paper's operator; the paper's experiments
//           used d = 512 with 4 bits)
//   norm    l2 | max (default l2; max scales by max|v_i|, as in the paper's
//           experiments; both unbiased, the variance bound is for l2)
//   coding  elias | fixed (default elias)
//
// Wire format (a bit stream, LSB-first as BitWriter writes it, zero-padded to
// a byte at the very end; the decoder knows n and d):
//   for each bucket: its norm as float32 (32 bits). A zero norm ends the
//   bucket (all its coordinates are 0). Otherwise
//     elias: Elias omega(k + 1), k = number of non-zeros in the bucket (our
//            delimiter, not in the paper: ~2 log2 k bits per bucket), then for
//            each non-zero: omega(gap to the previous non-zero, positions
//            1-based within the bucket), a sign bit (1 = negative),
//            omega(level), level in [1, s].
//     fixed: ceil(log2(2s+1)) bits per coordinate holding sgn*level + s.
// Decoding throws DecodeError on a negative or non-finite norm, a count,
// gap or level out of range, a truncated stream or trailing non-zero bits /
// extra bytes.
//
// Rounding uses 24-bit uniforms, so rounding probabilities are exact to
// 2^-24. They come from a LaneRng seeded by one draw of the Rng passed to
// encode() (two per 64-bit word: bits 8-31 and 40-63). Inputs must be finite
// with a norm representable in float32 (std::invalid_argument otherwise).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/compression/compressor.h"

namespace fedsim {

class Qsgd final : public Compressor {
 public:
  enum class Norm { kL2, kMax };
  enum class Coding { kElias, kFixed };

  Qsgd(std::size_t dim, std::uint32_t levels, std::size_t bucket_size, Norm norm, Coding coding);

  void encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) override;
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) override;
  bool unbiased() const override { return true; }

  std::uint32_t levels() const { return levels_; }
  std::size_t bucket_size() const { return bucket_size_; }
  // Bits per coordinate of the fixed coding: ceil(log2(2s + 1)).
  int fixed_width() const { return fixed_width_; }

 private:
  std::size_t dim_;
  std::uint32_t levels_;
  std::size_t bucket_size_;  // resolved: dim when configured 0
  Norm norm_;
  Coding coding_;
  int fixed_width_;
  // Scratch for one block of coordinates (see qsgd.cc).
  std::vector<std::uint64_t> random_;  // random words
  std::vector<std::uint32_t> codes_;   // sgn * level + s
  std::vector<std::uint8_t> packed_;   // fixed coding: the block's codes as a bit stream
  Bytes entries_;                      // elias coding: the current bucket's non-zeros, coded
};

}  // namespace fedsim
