// PowerSGD (Vogels, Karimireddy, Jaggi, NeurIPS 2019): rank-r approximation
// of each weight matrix's update by one step of warm-started power iteration,
// with error feedback.
//
// Per matrix layer (a Layer with rows x cols, see core/base/layer.h), with
// r' = min(rank, rows, cols) and Q (cols x r') kept from the last call:
//   M  = update + e                  (e: what earlier calls did not send)
//   P  = orthonormalize(M Q)         (Gram-Schmidt, rows x r')
//   Q  = M^T P                       (cols x r')
//   send P and Q; reconstruct P Q^T; e <- M - P Q^T; keep Q (warm start).
// Products are accumulated in double; P is rounded to float32 before Q is
// computed and both are sent as float32, so the receiver's P Q^T (the same
// code on both ends) is bit for bit what the sender reconstructs. Q starts
// as Gaussian from the link's shared seed; a column of Q that is exactly 0 (a
// matrix that was 0 in that direction) is drawn again from the encoder's Rng,
// so the iteration cannot stay stuck at 0. Gram-Schmidt leaves a column 0
// when what remains of it after the earlier columns is below 1e-30 of its
// norm (rank-deficient M Q).
// Layers without a shape (biases, or every layer of a model that declares
// none) are sent as float32 and leave no residual. With rank >= min(rows,
// cols) P spans M's column space, so the residual is only float rounding
// (tested: it goes to 0 on a fixed matrix).
//
// Setting (stage "powersgd"): `rank` >= 1 (default 2). Biased (error feedback
// is built in; do not add error_feedback); the memory and Q live on the
// sender, decode() is stateless.
//
// Wire format: layer after layer in the model's order, float32 little-endian:
// a matrix layer's P (rows x r', column-major) then Q (cols x r'), a vector
// layer's values. So a payload is exactly 4 * sum(r' (rows + cols) or size)
// bytes. DecodeError on another length, a non-finite value, or a product
// P Q^T that overflows float (encode() then throws std::invalid_argument).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/compression/compressor.h"

namespace fedsim {

class PowerSgd final : public Compressor {
 public:
  static constexpr std::uint64_t kSeedTag = 0x706f7765'72736764ULL;  // "powersgd"

  PowerSgd(std::size_t dim, std::vector<Layer> layers, std::size_t rank, std::uint64_t shared_seed);

  void encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) override;
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) override;
  bool unbiased() const override { return false; }
  void save(StateWriter& out) const override {
    out.begin("powersgd");
    out.vec(residual_);
    for (const std::vector<double>& q : q_) out.vec(q);
  }
  void restore(StateReader& in) override {
    in.begin("powersgd");
    in.into(std::span<float>(residual_));
    for (std::vector<double>& q : q_) in.into(std::span<double>(q));
  }

  std::size_t payload_bytes() const { return 4 * payload_floats_; }
  // e: what has not been sent yet.
  std::span<const float> residual() const { return residual_; }
  // r' of layer i (0 for a vector layer).
  std::size_t layer_rank(std::size_t i) const { return ranks_[i]; }

 private:
  std::size_t dim_;
  std::vector<Layer> layers_;
  std::vector<std::size_t> ranks_;
  std::vector<std::vector<double>> q_;  // per matrix layer, cols x r' column-major (warm start)
  std::size_t payload_floats_ = 0;
  std::vector<float> residual_;
  std::vector<float> corrected_;  // scratch: M = update + e
  std::vector<float> factors_;    // scratch: P and Q of one layer as sent
  std::vector<double> work_;      // scratch
};

}  // namespace fedsim
