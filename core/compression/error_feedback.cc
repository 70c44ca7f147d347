#include "core/compression/error_feedback.h"

#include <stdexcept>
#include <string>

namespace fedsim {

ErrorFeedback::ErrorFeedback(std::unique_ptr<Compressor> inner, std::size_t dim)
    : inner_(std::move(inner)),
      fused_(dynamic_cast<FusesErrorFeedback*>(inner_.get())),
      residual_(dim, 0.0f),
      corrected_(fused_ != nullptr ? 0 : dim, 0.0f) {}

void ErrorFeedback::encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  const std::size_t n = residual_.size();
  if (v.size() != n || reconstructed.size() != n)
    throw std::invalid_argument("error_feedback: vector of " + std::to_string(v.size()) + " values, built for " +
                                std::to_string(n));
  if (fused_ != nullptr) {
    fused_->encode_with_memory(v, residual_, rng, out, reconstructed);
    return;
  }
  for (std::size_t i = 0; i < n; ++i) corrected_[i] = v[i] + residual_[i];
  inner_->encode(corrected_, rng, out, reconstructed);
  for (std::size_t i = 0; i < n; ++i) residual_[i] = corrected_[i] - reconstructed[i];
}

void ErrorFeedback::decode(std::span<const std::uint8_t> payload, std::span<float> out) { inner_->decode(payload, out); }

namespace {

FEDSIM_REGISTER_STAGE(
    "error_feedback", StageKind::kTransform,
    [](const Config&, StageContext& ctx) -> std::unique_ptr<Compressor> {
      return std::make_unique<ErrorFeedback>(std::move(ctx.inner), ctx.dim);
    },
    "EF-SGD memory: send C(v + e), keep e <- v + e - C(v + e); makes sign/top_k converge");

}  // namespace
}  // namespace fedsim
