#include "core/compression/threshold_quantizer.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>
#include <string>

#include "core/coding/bit_io.h"

namespace fedsim {
namespace {

// One expression for both ends, so reconstructed == decoded bit for bit.
// Capped at `high`: with high near the float limit, low + j * step could
// round past it (even to infinity).
float grid_value(float low, float high, float step, std::uint32_t j) {
  return std::min(low + static_cast<float>(j) * step, high);
}

float grid_step(float low, float high, std::uint32_t levels) {
  return (high - low) / static_cast<float>(levels - 1);
}

}  // namespace

ThresholdQuantizer::ThresholdQuantizer(Mode mode, double threshold, std::uint32_t levels)
    : mode_(mode),
      threshold_(threshold),
      levels_(levels),
      level_bits_(static_cast<int>(std::bit_width(levels - 1))) {
  if (levels < 2) throw std::invalid_argument("threshold: levels must be >= 2");
}

void ThresholdQuantizer::encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  const std::size_t n = v.size();
  float max_abs = 0.0f;
  for (float x : v) {
    if (!std::isfinite(x)) throw std::invalid_argument("threshold: input is not finite");
    max_abs = std::max(max_abs, std::fabs(x));
  }
  const float low = mode_ == Mode::kRelative ? static_cast<float>(threshold_ * static_cast<double>(max_abs))
                                             : static_cast<float>(threshold_);
  const float high = std::max(max_abs, low);
  const float step = grid_step(low, high, levels_);

  // Quantize first (reconstructed and level_of_ hold the result), then write.
  level_of_.resize(n);
  std::size_t count = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const float a = std::fabs(v[i]);
    float q = 0.0f;
    if (a >= low && a > 0.0f) {
      std::uint32_t j = 0;
      if (step > 0.0f) {
        const float x = std::min((a - low) / step, static_cast<float>(levels_ - 1));
        const float floor_x = std::floor(x);
        j = static_cast<std::uint32_t>(floor_x);
        if (j < levels_ - 1 && rng.uniform_float() < x - floor_x) ++j;
      }
      q = grid_value(low, high, step, j);
      level_of_[i] = j;
      if (q != 0.0f) ++count;
    }
    // A zero is never sent, so the decoder writes +0: no -0 here either.
    reconstructed[i] = v[i] < 0.0f && q != 0.0f ? -q : q;
  }

  BitWriter writer(out);
  writer.write_f32(low);
  writer.write_f32(high);
  writer.write_gamma(count + 1);
  std::size_t previous = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const float q = reconstructed[i];
    if (q == 0.0f) continue;
    writer.write_gamma(i + 1 - previous);
    previous = i + 1;
    writer.write_bit(q < 0.0f);
    writer.write(level_of_[i], level_bits_);
  }
}

void ThresholdQuantizer::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  const std::size_t n = out.size();
  BitReader reader(payload);
  const float low = reader.read_f32();
  const float high = reader.read_f32();
  if (!std::isfinite(low) || !std::isfinite(high) || !(low >= 0.0f) || !(low <= high))
    throw DecodeError("threshold payload has threshold " + std::to_string(low) + " and maximum " +
                      std::to_string(high) + ", expected 0 <= threshold <= maximum, both finite");
  const std::uint64_t count = reader.read_gamma() - 1;
  if (count > n) throw DecodeError("threshold payload claims " + std::to_string(count) + " entries for " +
                                   std::to_string(n) + " coordinates");
  const float step = grid_step(low, high, levels_);
  std::fill(out.begin(), out.end(), 0.0f);
  std::size_t previous = 0;
  for (std::uint64_t e = 0; e < count; ++e) {
    const std::uint64_t gap = reader.read_gamma();
    if (gap > n - previous) throw DecodeError("threshold entry " + std::to_string(e) + " lies past the end of the vector");
    previous += gap;
    const bool negative = reader.read_bit();
    const std::uint64_t j = reader.read(level_bits_);
    if (j >= levels_) throw DecodeError("threshold entry " + std::to_string(e) + " has level " + std::to_string(j) +
                                        ", expected < " + std::to_string(levels_));
    const float q = grid_value(low, high, step, static_cast<std::uint32_t>(j));
    if (q == 0.0f) throw DecodeError("threshold entry " + std::to_string(e) + " is zero, which is never sent");
    out[previous - 1] = negative ? -q : q;
  }
  reader.expect_end();
}

namespace {

FEDSIM_REGISTER_STAGE(
    "threshold", StageKind::kQuantizer,
    [](const Config& settings, StageContext&) -> std::unique_ptr<Compressor> {
      if (settings.has("threshold") && settings.has("relative"))
        settings.fail("relative", "either threshold or relative", "both");
      const bool absolute = settings.has("threshold");
      const double threshold = settings.get_double("threshold", 0.0, 0.0, 3.0e38);
      const double relative = settings.get_double("relative", 0.1, 0.0, 1.0);
      if (!(relative < 1.0)) settings.fail("relative", "a number in [0, 1)", std::to_string(relative));
      const auto levels = settings.get_int("levels", 4, 2, std::int64_t{1} << 24);
      return std::make_unique<ThresholdQuantizer>(
          absolute ? ThresholdQuantizer::Mode::kAbsolute : ThresholdQuantizer::Mode::kRelative,
          absolute ? threshold : relative, static_cast<std::uint32_t>(levels));
    },
    "QCMD-style threshold quantization: |v_i| < threshold -> 0, the rest stochastically onto `levels` points "
    "between threshold and max|v_i|; biased by the filtered part");

}  // namespace
}  // namespace fedsim
