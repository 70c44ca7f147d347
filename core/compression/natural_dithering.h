// Natural dithering D_nat^{p,s} (Horvath et al. 2019): random dithering of
// |v_i| / ||v||_p onto the levels {0, 2^(1-s), ..., 1/4, 1/2, 1} (s + 1
// levels) instead of the uniform {0, 1/s, ..., 1}. Between adjacent levels
// lo < r < hi, r rounds up with probability (r - lo) / (hi - lo): unbiased,
// with exponentially smaller variance than standard dithering at the same
// number of levels when most |v_i| / ||v|| are small.
//
// Settings (stage "natural_dithering"):
//   levels  s in [1, 64] (default 8)
//   norm_p  2 | inf (default 2)
//   bucket  coordinates per bucket, each with its own norm; 0 = whole vector
//           (default 0)
//
// Wire format: for each bucket its norm as float32 (32 bits); a zero norm
// ends the bucket (all zeros). Otherwise per coordinate a sign bit (1 =
// negative; must be 0 when the level is 0) and the level index k in
// ceil(log2(s+1)) bits (0 -> 0, k >= 1 -> 2^(k-s)). One LSB-first bit stream,
// zero-padded to a byte at the end. DecodeError on a negative / non-finite
// norm, an index above s, a negative zero, truncation or trailing data.
//
// Rounding: t = |v_i| 2^(s-1) / ||v|| puts the levels at 0, 1, 2, 4, ...; for
// t >= 1 the float's mantissa is the round-up probability (as in C_nat), for
// t < 1 the exponent trick runs on t + 1 (so P(up) = t to 2^-24).
//
// Random draws: the low 23 bits of a 32-bit word per coordinate. The words
// come from a LaneRng (core/base/lane_rng.h) seeded by one draw of the
// caller's Rng per encode(), two per 64-bit lane output, the lanes refilled
// for each block of kLaneBlock coordinates of a bucket (blocks start at a
// bucket's first coordinate); the dithering runs vectorised on those words.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/compression/compressor.h"

namespace fedsim {

class NaturalDithering final : public Compressor {
 public:
  enum class Norm { kL2, kInf };
  NaturalDithering(std::size_t dim, std::uint32_t levels, Norm norm, std::size_t bucket_size);

  void encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) override;
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) override;
  bool unbiased() const override { return true; }

  // Bits per coordinate: sign + ceil(log2(s + 1)).
  int code_bits() const { return 1 + index_bits_; }

 private:
  std::size_t dim_;
  std::uint32_t levels_;
  Norm norm_;
  std::size_t bucket_size_;  // resolved: dim when configured 0
  int index_bits_;
  std::vector<std::uint32_t> codes_;   // one block's codes (scratch)
  std::vector<std::uint64_t> random_;  // one block's random words (scratch)
};

}  // namespace fedsim
