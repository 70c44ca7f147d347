// Natural compression C_nat (Horvath, Ho, Horvath, Sahu, Canini, Richtarik,
// 2019): each coordinate t with 2^a <= |t| < 2^(a+1) becomes sgn(t) 2^a with
// probability (2^(a+1) - |t|) / 2^a, else sgn(t) 2^(a+1); C_nat(0) = 0.
// Unbiased, E[C_nat(t)^2] <= 9/8 t^2.
//
// On float32 the rounding drops the mantissa: the probability of rounding up
// is mantissa / 2^23, compared against 23 random bits (exact, no log/pow)
// from a LaneRng seeded by one draw of the Rng passed to encode().
// Subnormal inputs (|t| < 2^-126) are rounded to 0 or 2^-126 with the same
// rule, which is then exactly unbiased too (P(up) = |t| / 2^-126).
// |t| in (2^127, 2^128) cannot round up to 2^128 (not a float): it is
// clamped to 2^127, the only biased case. Non-finite inputs throw
// std::invalid_argument.
//
// Wire format: no header (the decoder knows n); 9 bits per coordinate in a
// LSB-first bit stream, zero-padded to ceil(9n/8) bytes. Each code is the
// biased float32 exponent field e (bits 0-7; e = 0 means +-0, e = 255 is
// invalid) and the sign (bit 8). The value is the float with that sign and
// exponent and a zero mantissa.
#pragma once

#include <cstddef>

#include "core/compression/compressor.h"

namespace fedsim {

class NaturalCompression final : public Compressor {
 public:
  explicit NaturalCompression(std::size_t dim) : dim_(dim) {}

  void encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) override;
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) override;
  bool unbiased() const override { return true; }

  static std::size_t payload_bytes(std::size_t n) { return (9 * n + 7) / 8; }

 private:
  std::size_t dim_;
};

}  // namespace fedsim
