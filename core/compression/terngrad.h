// TernGrad (Wen et al., NeurIPS 2017): per layer a scaler s_t = max_i |g_i|
// and b_i ~ Bernoulli(|g_i| / s_t); the layer is sent as s_t * sgn(g_i) * b_i.
// Unbiased without clipping; E||g~||^2 = sum_layers s_t ||g_t||_1 <=
// ||g||_inf ||g||_1.
//
// Settings (stage "terngrad"):
//   clip  c >= 0 (default 0 = off). When on, each layer is first clipped to
//         |g_i| <= c * sigma, sigma the layer's standard deviation (about its
//         mean); c = 2.5 in the paper. Clipping makes the operator BIASED
//         (E[g~] is the clipped gradient), unbiased() reports it.
//
// Wire format: one float32 scaler per layer (little endian, in layer order),
// then 2 bits per coordinate of every layer whose scaler is non-zero (0 = 0,
// 1 = +s_t, 2 = -s_t; 3 is invalid) in one LSB-first bit stream, zero-padded
// to a byte. A zero scaler means an all-zero layer with no codes. The decoder
// knows the layer layout; DecodeError on a negative / non-finite scaler, code
// 3, a wrong payload size or non-zero padding.
//
// Random draws: coordinate k of a layer keeps its sign when u_k < p_k, u_k =
// the top 24 bits of a 32-bit word times 2^-24. The words come from a LaneRng
// (core/base/lane_rng.h) seeded by one draw of the caller's Rng per encode(),
// two per 64-bit lane output, the lanes refilled for each block of
// kLaneBlock coordinates of a layer (blocks start at a layer's first
// coordinate); the quantization runs vectorised on those words.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/compression/compressor.h"

namespace fedsim {

class TernGrad final : public Compressor {
 public:
  // `layers` tile [0, dim).
  TernGrad(std::size_t dim, std::vector<Layer> layers, double clip);

  void encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) override;
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) override;
  bool unbiased() const override { return clip_ == 0.0; }

 private:
  std::size_t dim_;
  std::vector<Layer> layers_;
  double clip_;
  std::vector<std::uint32_t> codes_;   // one block's codes (scratch)
  std::vector<std::uint64_t> random_;  // one block's random words (scratch)
};

}  // namespace fedsim
