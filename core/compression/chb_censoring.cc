#include "core/compression/chb_censoring.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

#include "core/base/errors.h"

namespace fedsim {

ChbCensoring::ChbCensoring(std::unique_ptr<Compressor> inner, std::size_t dim, double threshold)
    : inner_(std::move(inner)), threshold_(threshold), last_sent_(dim, 0.0f) {}

void ChbCensoring::encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  const std::size_t n = last_sent_.size();
  if (v.size() != n || reconstructed.size() != n)
    throw std::invalid_argument("chb_censoring: vector of " + std::to_string(v.size()) + " values, built for " +
                                std::to_string(n));
  double change = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(v[i]) - static_cast<double>(last_sent_[i]);
    change += d * d;
  }
  last_skipped_ = movement_sq_ >= 0.0 && change < threshold_ * movement_sq_;
  movement_sq_ = -1.0;  // told afresh before every message
  if (last_skipped_) {
    out.push_back(kSkipped);
    std::copy(last_sent_.begin(), last_sent_.end(), reconstructed.begin());
    return;
  }
  out.push_back(kSent);
  inner_->encode(v, rng, out, reconstructed);
  std::copy(reconstructed.begin(), reconstructed.end(), last_sent_.begin());
}

void ChbCensoring::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  const std::size_t n = last_sent_.size();
  if (out.size() != n)
    throw std::invalid_argument("chb_censoring: vector of " + std::to_string(out.size()) + " values, built for " +
                                std::to_string(n));
  if (payload.empty()) throw DecodeError("chb_censoring payload is empty, expected a marker byte");
  const std::uint8_t marker = payload[0];
  if (marker == kSkipped) {
    if (payload.size() != 1)
      throw DecodeError("chb_censoring skip marker followed by " + std::to_string(payload.size() - 1) + " bytes");
    std::copy(last_sent_.begin(), last_sent_.end(), out.begin());
    last_skipped_ = true;
    return;
  }
  if (marker != kSent) throw DecodeError("chb_censoring marker " + std::to_string(marker) + ", expected 0 or 1");
  inner_->decode(payload.subspan(1), out);
  std::copy(out.begin(), out.end(), last_sent_.begin());
  last_skipped_ = false;
}

namespace {

FEDSIM_REGISTER_STAGE(
    "chb_censoring", StageKind::kTransform,
    [](const Config& settings, StageContext& ctx) -> std::unique_ptr<Compressor> {
      const double threshold = settings.get_double("threshold", 1.0, 0.0, 1e12);
      return std::make_unique<ChbCensoring>(std::move(ctx.inner), ctx.dim, threshold);
    },
    "CHB censoring: skip (1 byte) when ||v - last sent||^2 < threshold ||x_t - x_{t-1}||^2 (first stage)");

}  // namespace
}  // namespace fedsim
