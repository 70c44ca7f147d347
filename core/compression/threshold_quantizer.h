// Threshold quantization, as in QCMD / QRDA AdaGrad: coordinates below a
// threshold are sent as zero (keeps updates sparse), the others are
// quantized stochastically onto a uniform grid between the threshold and the
// largest magnitude.
//
// With tau the threshold and M = max|v_i|, the grid has `levels` points
// g_j = tau + j * (M - tau) / (levels - 1), j = 0 .. levels-1 (the step is
// computed once in float32 and g_j = min(tau + j * step, M), the same on both
// ends; the cap only matters when rounding would pass M).
// |v_i| < tau  -> 0;
// |v_i| >= tau -> sgn(v_i) * g_j, rounded up from g_l <= |v_i| < g_(l+1)
//                 with probability (|v_i| - g_l) / step.
// Biased: E[C(v)_i] = v_i for |v_i| >= tau, 0 for the filtered ones (bias
// -v_i there, at most tau in magnitude). Variance per kept coordinate
// <= step^2 / 4. unbiased() is true only when tau is 0.
//
// Settings (stage "threshold"): `threshold` (absolute, >= 0) or `relative`
// (tau = relative * max|v_i|, in [0, 1)); at most one of them; default
// relative 0.1. `levels` in [2, 2^24] grid points (default 4: 2 bits).
//
// Wire format (one bit stream, LSB-first, zero padded to a byte at the end;
// the decoder knows n and levels): tau and M as float32; Elias gamma of
// (number of sent entries + 1); then per entry: gamma of the gap between
// 1-based positions, a sign bit (1 = negative), j in ceil(log2(levels)) bits.
// Exact zeros and values that quantize to 0 (only possible when tau = 0) are
// not sent. Decoding throws DecodeError on non-finite or inconsistent
// tau/M (need 0 <= tau <= M), a count > n, a position past n, j >= levels, a
// zero value, truncation or trailing bits. encode() throws
// std::invalid_argument on a non-finite input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/compression/compressor.h"

namespace fedsim {

class ThresholdQuantizer final : public Compressor {
 public:
  enum class Mode { kAbsolute, kRelative };
  ThresholdQuantizer(Mode mode, double threshold, std::uint32_t levels);

  void encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) override;
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) override;
  bool unbiased() const override { return threshold_ == 0.0; }

  std::uint32_t levels() const { return levels_; }
  int level_bits() const { return level_bits_; }

 private:
  Mode mode_;
  double threshold_;
  std::uint32_t levels_;
  int level_bits_;
  // Scratch of encode(), per block of coordinates: grid index, fraction above
  // the grid point, the kept coordinates, entry (sign | level << 1 | sent <<
  // 31); and the entries' bit stream (n < 2^40, levels <= 2^24).
  std::vector<std::uint32_t> level_of_;
  std::vector<float> fraction_;
  std::vector<std::uint32_t> kept_;
  std::vector<std::uint32_t> entry_;
  std::vector<std::uint8_t> stream_;
};

}  // namespace fedsim
