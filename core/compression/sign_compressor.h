// Scaled sign compression (signSGD with a magnitude, as used with error
// feedback; Karimireddy et al. 2019, "Error feedback fixes SignSGD").
//
// C(v)_i = (||v||_1 / n) * sgn(v_i), with sgn(0) taken as +1 (one bit cannot
// say "zero"). Biased: meant to be wrapped by error_feedback. It is a
// delta-contraction with delta = ||v||_1^2 / (n ||v||^2).
//
// Stage "sign", no settings.
//
// Wire format (the decoder knows n): the scale ||v||_1 / n as float32 (4
// bytes, little-endian), then n sign bits LSB-first (1 = negative), zero
// padded to a byte: exactly 4 + ceil(n / 8) bytes. Decoding throws
// DecodeError on another length, a negative or non-finite scale, or non-zero
// padding bits. encode() throws std::invalid_argument on a non-finite input.
#pragma once

#include <cstddef>

#include "core/compression/compressor.h"
#include "core/compression/error_feedback.h"

namespace fedsim {

// Fuses error feedback: two passes over v and the memory instead of five.
class SignCompressor final : public Compressor, public FusesErrorFeedback {
 public:
  void encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) override;
  void encode_with_memory(std::span<const float> v, std::span<float> memory, Rng& rng, Bytes& out,
                          std::span<float> reconstructed) override;
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) override;
  bool unbiased() const override { return false; }

  static std::size_t payload_bytes(std::size_t n) { return 4 + (n + 7) / 8; }
};

}  // namespace fedsim
