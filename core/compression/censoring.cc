#include "core/compression/censoring.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "core/base/errors.h"

namespace fedsim {

CensoringBase::CensoringBase(const char* name, std::unique_ptr<Compressor> inner, std::size_t dim)
    : name_(name), inner_(std::move(inner)), last_sent_(dim, 0.0f) {}

void CensoringBase::encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  const std::size_t n = last_sent_.size();
  if (v.size() != n || reconstructed.size() != n)
    throw std::invalid_argument(std::string(name_) + ": vector of " + std::to_string(v.size()) +
                                " values, built for " + std::to_string(n));
  double change = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(v[i]) - static_cast<double>(last_sent_[i]);
    change += d * d;
  }
  last_skipped_ = skip(v, change);
  if (last_skipped_) {
    out.push_back(kSkipped);
    std::copy(last_sent_.begin(), last_sent_.end(), reconstructed.begin());
    return;
  }
  out.push_back(kSent);
  inner_->encode(v, rng, out, reconstructed);
  std::copy(reconstructed.begin(), reconstructed.end(), last_sent_.begin());
}

void CensoringBase::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  const std::size_t n = last_sent_.size();
  const std::string name(name_);
  if (out.size() != n)
    throw std::invalid_argument(name + ": vector of " + std::to_string(out.size()) + " values, built for " +
                                std::to_string(n));
  if (payload.empty()) throw DecodeError(name + " payload is empty, expected a marker byte");
  const std::uint8_t marker = payload[0];
  if (marker == kSkipped) {
    if (payload.size() != 1)
      throw DecodeError(name + " skip marker followed by " + std::to_string(payload.size() - 1) + " bytes");
    std::copy(last_sent_.begin(), last_sent_.end(), out.begin());
    last_skipped_ = true;
    return;
  }
  if (marker != kSent) throw DecodeError(name + " marker " + std::to_string(marker) + ", expected 0 or 1");
  inner_->decode(payload.subspan(1), out);
  std::copy(out.begin(), out.end(), last_sent_.begin());
  last_skipped_ = false;
}

Censoring::Censoring(std::unique_ptr<Compressor> inner, std::size_t dim, double threshold)
    : CensoringBase("censoring", std::move(inner), dim), threshold_(threshold) {}

bool Censoring::skip(std::span<const float> v, double change_sq) {
  double norm = 0.0;
  for (float x : v) norm += static_cast<double>(x) * static_cast<double>(x);
  return change_sq <= threshold_ * norm;
}

namespace {

FEDSIM_REGISTER_STAGE(
    "censoring", StageKind::kTransform,
    [](const Config& settings, StageContext& ctx) -> std::unique_ptr<Compressor> {
      const double threshold = settings.get_double("threshold", 0.01, 0.0, 1.0);
      if (!(threshold < 1.0)) settings.fail("threshold", "a number in [0, 1)", std::to_string(threshold));
      return std::make_unique<Censoring>(std::move(ctx.inner), ctx.dim, threshold);
    },
    "lazy aggregation (CHB): skip the message (1 byte) when ||v - last sent||^2 <= threshold ||v||^2");

}  // namespace
}  // namespace fedsim
