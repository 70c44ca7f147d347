// FedVote's stochastic vote quantizers (Yue, Jin, Wong, Dai 2021).
//
// The input vector is a client's local latent weights h (not a difference);
// with w = tanh(k h) in (-1, 1):
// - binary:  vote = +1 with probability (1 + w) / 2, else -1;
// - ternary: vote = sgn(h) with probability |w|, else 0.
// Both give E[vote] = w = tanh(k h): unbiased for the normalised weight w,
// not for the input h, so unbiased() is false. decode() and `reconstructed`
// hold the votes themselves (+-1 / 0 as floats); the server's "vote"
// aggregator turns their mean back into latent weights.
//
// Random draws: the ternary vote draws one Rng::uniform_float() per vote, in
// order. The binary vote draws u = (top 24 bits of a 32-bit word) * 2^-24 per
// vote, the words from a LaneRng (core/base/lane_rng.h) seeded by one draw of
// the caller's Rng per encode(), two per 64-bit lane output, the lanes
// refilled for each block of kLaneBlock votes. The binary vote is cast
// vectorised: P(+1) = (1 + w) / 2 as logistic(2 k h), within
// 2e-6 of the exact value (core/compression/lane_kernels.h); a vote whose
// uniform lies within 1e-5 of that is recomputed with tanhf, so that every
// vote is the one the scalar definition 0.5f * (1 + tanhf(k h)) casts. Most
// votes are decided before that by a cheaper bound on P(+1), which casts the
// same vote wherever it is sure (fedvote_quantizer.cc).
//
// Payloads carry no header (both ends know the dimension n):
// - binary: 1 bit per vote, LSB first, bit set = +1; ceil(n / 8) bytes, the
//   padding bits of the last byte are zero.
// - ternary: 5 votes per byte in base 3 (3^5 = 243 <= 256), digit 0 = 0,
//   1 = +1, 2 = -1, first vote least significant; ceil(n / 5) bytes, i.e.
//   1.6 bits per vote. A byte >= 3^(votes it holds) is malformed.
#pragma once

#include <cstddef>

#include "core/compression/compressor.h"

namespace fedsim {

class FedVoteBinary final : public Compressor {
 public:
  explicit FedVoteBinary(float k) : k_(k) {}
  void encode(std::span<const float> h, Rng& rng, Bytes& out, std::span<float> reconstructed) override;
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) override;
  bool unbiased() const override { return false; }  // unbiased for tanh(k h), not for h
  static std::size_t payload_bytes(std::size_t n) { return (n + 7) / 8; }

 private:
  float k_;
};

class FedVoteTernary final : public Compressor {
 public:
  explicit FedVoteTernary(float k) : k_(k) {}
  void encode(std::span<const float> h, Rng& rng, Bytes& out, std::span<float> reconstructed) override;
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) override;
  bool unbiased() const override { return false; }  // unbiased for tanh(k h), not for h
  static std::size_t payload_bytes(std::size_t n) { return (n + 4) / 5; }

 private:
  float k_;
};

}  // namespace fedsim
