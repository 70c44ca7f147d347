// Error feedback (EF-SGD; Seide et al. 2014, Karimireddy et al. 2019 "Error
// feedback fixes SignSGD", Stich et al. 2018): send C(v + e) and keep the
// part not sent, e <- v + e - C(v + e), for the next call. Makes biased
// compressors (sign, top_k) converge: over T calls with a constant v the
// average of what was sent is v - e_T / T.
//
// Float arithmetic as implemented: u = fl(v + e), r = C(u) (the inner
// stage's reconstruction), e' = fl(u - r). So r + e' = u up to the one
// rounding of u - r: |r + e' - u| <= 2^-24 |u - r| per coordinate (exact when
// r is within a factor 2 of u, Sterbenz).
//
// Stage "error_feedback" (a transform, no settings). The memory lives in the
// sender's instance; decode() passes straight through to the inner stage.
// encode() throws std::invalid_argument if v does not have the pipeline's
// dimension. unbiased() is false: one call returns C(v + e), not v.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "core/compression/compressor.h"

namespace fedsim {

// A stage that can run error feedback inside its own passes over memory
// (fewer reads and writes than encode() between error feedback's two). Error
// feedback uses it when its inner stage implements it; the result must be
// the same bytes and floats as the two apart.
class FusesErrorFeedback {
 public:
  virtual ~FusesErrorFeedback() = default;
  // encode(u, rng, out, reconstructed) for u = fl(v + memory), then memory =
  // fl(u - reconstructed). If it throws, memory is unchanged.
  virtual void encode_with_memory(std::span<const float> v, std::span<float> memory, Rng& rng, Bytes& out,
                                  std::span<float> reconstructed) = 0;
};

class ErrorFeedback final : public Compressor {
 public:
  ErrorFeedback(std::unique_ptr<Compressor> inner, std::size_t dim);

  void encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) override;
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) override;
  bool unbiased() const override { return false; }
  bool last_skipped() const override { return inner_->last_skipped(); }
  void save(StateWriter& out) const override {
    out.begin("error_feedback");
    out.vec(residual_);
    inner_->save(out);
  }
  void restore(StateReader& in) override {
    in.begin("error_feedback");
    in.into(std::span<float>(residual_));
    inner_->restore(in);
  }

  // e: what has been left unsent so far (zero initially).
  std::span<const float> residual() const { return residual_; }

 private:
  std::unique_ptr<Compressor> inner_;
  FusesErrorFeedback* fused_;     // inner_ when it fuses error feedback, else null
  std::vector<float> residual_;
  std::vector<float> corrected_;  // scratch: u = v + e (unused when fused)
};

}  // namespace fedsim
