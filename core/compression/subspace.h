// Random-subspace coding with a budget of r bits per dimension, any r in
// (0, 8] (Saha, Pilanci, Goldsmith, "Efficient randomized subspace
// embeddings for distributed optimization under a communication budget",
// 2021/22; near-democratic representations). The vector is embedded with a
// randomized Hadamard frame S = H D (hadamard_rotation.h: orthonormal,
// blocks of `block` coordinates, the dimension kept, N = n), whose
// coefficients are all of order ||v|| / sqrt(block); the coefficients are
// then scalar-quantized with floor(r n) bits in total:
//   b = floor(r) bits for every coefficient and b + 1 bits for a seeded
//   subset of E = floor(r n) - b n of them. For r < 1 (b = 0) only that
//   subset of E coefficients is sent, 1 bit each; the rest decode to 0.
// The receiver decodes the coefficients and applies S^T = D H.
//
// Rounding (setting `rounding`):
//   nearest     (default) deterministic, biased: per block the RMS sigma of
//               its coefficients is sent, and a coefficient gets w bits of a
//               midrise uniform quantizer with 2^w levels and step c_w sigma,
//               c_w the step that minimises the MSE for a Gaussian source of
//               variance sigma^2 (Max 1960; 1.5958 for 1 bit, i.e. levels
//               +-0.798 sigma = +-E|y|; tested against numerical integration).
//               Coefficients not sent are 0, not rescaled: a contraction, meant
//               for `error_feedback` (the paper's DGD-DEF feeds the error back).
//   stochastic  unbiased: per block max|y| = s is sent and a coefficient is
//               rounded at random to one of 2^w points evenly spaced on [-s, s];
//               for r < 1 the sent coefficients are scaled by n / E, so
//               E[decode(encode(v))] = v.
//
// Randomness both ends derive: every message carries a 32-bit nonce drawn
// from the encoder's Rng; D and the subset of (b+1)-bit coefficients come
// from Rng::derive(shared_seed, kShared, {kSeedTag, nonce}), so each message
// uses a fresh subspace and no state has to stay in step.
//
// Wire format: u32 nonce, one float32 scale per Hadamard block (sigma or
// max|y|; finite, >= 0), then the codes in coordinate order, w bits each,
// LSB-first, zero-padded to a byte. So a payload is exactly
//   4 + 4 * blocks + ceil(floor(r n) / 8) bytes
// (tested), whatever the values. Decoding throws DecodeError on a wrong
// length, a negative or non-finite scale, trailing bits, or a decoded vector
// that overflows float when rotated back (encode() then throws
// std::invalid_argument, so the two agree). encode() throws
// std::invalid_argument on non-finite input.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/compression/compressor.h"
#include "core/compression/hadamard_rotation.h"

namespace fedsim {

class Subspace final : public Compressor {
 public:
  static constexpr std::uint64_t kSeedTag = 0x73756273'70616365ULL;  // "subspace"
  enum class Rounding { kNearest, kStochastic };
  static constexpr double kMaxBitsPerDim = 8.0;
  // c_w for w = 1..8 bits: the MSE-optimal step of a midrise uniform
  // quantizer with 2^w levels for a unit Gaussian.
  static constexpr std::array<double, 9> kGaussianStep{0.0,      1.595769, 0.995687, 0.586019, 0.335201,
                                                       0.188139, 0.104063, 0.056868, 0.030762};

  Subspace(std::size_t dim, double bits_per_dim, std::size_t block, Rounding rounding, std::uint64_t shared_seed);

  void encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) override;
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) override;
  bool unbiased() const override { return rounding_ == Rounding::kStochastic; }

  // floor(r n): the code bits of every payload.
  std::size_t code_bits() const { return code_bits_; }
  std::size_t payload_bytes() const;
  // The embedding and the bits per coefficient a message with this nonce uses.
  const RandomizedHadamard& embedding_for(std::uint32_t nonce);
  const std::vector<std::uint8_t>& widths() const { return widths_; }

 private:
  float level(std::uint32_t code, int width, float scale) const;

  std::size_t dim_;
  std::size_t base_bits_;   // b
  std::size_t extra_;       // E coefficients with b + 1 bits
  std::size_t code_bits_;   // b n + E
  Rounding rounding_;
  std::uint64_t shared_seed_;
  double sparse_gain_;      // n / E for stochastic rounding with r < 1, else 1
  RandomizedHadamard map_;
  std::vector<std::uint8_t> widths_;  // per coefficient, for the current nonce
  std::vector<std::uint8_t> marked_;  // scratch for the subset draw
  std::vector<float> scratch_;
  std::vector<float> scales_;
};

}  // namespace fedsim
