#include "core/compression/chb_censoring.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

#include "core/base/errors.h"

namespace fedsim {

ChbCensoring::ChbCensoring(std::unique_ptr<Compressor> inner, std::size_t dim, double threshold)
    : CensoringBase("chb_censoring", std::move(inner), dim), threshold_(threshold) {}

bool ChbCensoring::skip(std::span<const float>, double change_sq) {
  const bool skipped = movement_sq_ >= 0.0 && change_sq < threshold_ * movement_sq_;
  movement_sq_ = -1.0;  // told afresh before every message
  return skipped;
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
