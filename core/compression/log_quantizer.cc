#include "core/compression/log_quantizer.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>
#include <string>

#include "core/coding/bit_io.h"
#include "core/compression/vector_norms.h"

namespace fedsim {
namespace {

// log2 of a positive finite float within 0.01: its exponent plus a
// quadratic in the mantissa m in [1, 2) (log2 m ~ (m - 1)(1.3466 - 0.3466 (m - 1)),
// exact at both ends).
float rough_log2(float a) {
  const auto bits = std::bit_cast<std::uint32_t>(a);
  const auto exponent = static_cast<float>(static_cast<std::int32_t>(bits >> 23) - 127);
  const float t = std::bit_cast<float>((bits & 0x7FFFFFu) | 0x3F800000u) - 1.0f;
  return exponent + t * (1.3466f - 0.3466f * t);
}

}  // namespace

LogQuantizer::LogQuantizer(double base, int bits, Mode mode, double threshold)
    : base_(base), bits_(bits), mode_(mode), threshold_(threshold) {
  if (!(base > 1.0) || bits < 1 || bits > 8) throw std::invalid_argument("log_quant: base > 1 and bits in [1, 8]");
  const std::size_t codes = std::size_t{1} << bits;
  ratios_.resize(codes);
  for (std::size_t c = 0; c < codes; ++c) ratios_[c] = static_cast<float>(std::pow(base, -static_cast<double>(c)));
  magnitudes_.resize(codes + 1);
}

void LogQuantizer::fill_magnitudes(float max_abs) {
  for (std::size_t c = 0; c < ratios_.size(); ++c) magnitudes_[c] = max_abs * ratios_[c];
  magnitudes_.back() = 0.0f;
}

void LogQuantizer::encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  const std::size_t n = v.size();
  const float max_abs = fedsim::max_abs(v.data(), n);
  if (!std::isfinite(max_abs)) throw std::invalid_argument("log_quant: input is not finite");
  const float threshold = mode_ == Mode::kRelative ? static_cast<float>(threshold_ * static_cast<double>(max_abs))
                                                   : static_cast<float>(threshold_);
  fill_magnitudes(max_abs);
  // lower = the number of magnitudes >= a = the index of the first one
  // below a, in [1, C + 1] (m_0 = M >= a > 0 = m_(C+1)): estimated as
  // log_base(M / a) from the floats' exponents and mantissas (a rough log2,
  // within 0.01), then corrected by walking the table, which makes it exact
  // whatever the estimate's error; the walk is rarely more than one step.
  const float* const table = magnitudes_.data();
  const auto last = static_cast<std::int32_t>(magnitudes_.size() - 1);  // C + 1
  const float per_log2 = max_abs > 0.0f ? static_cast<float>(1.0 / std::log2(base_)) : 0.0f;
  const float log2_max = max_abs > 0.0f ? rough_log2(max_abs) : 0.0f;
  positions_.clear();
  codes_.clear();
  for (std::size_t i = 0; i < n; ++i) {
    const float a = std::fabs(v[i]);
    reconstructed[i] = 0.0f;
    if (a == 0.0f || a < threshold) continue;
    const float estimate = (log2_max - rough_log2(a)) * per_log2 + 1.0f;
    auto lower = static_cast<std::int32_t>(std::clamp(estimate, 1.0f, static_cast<float>(last)));
    while (table[lower] >= a) ++lower;
    while (table[lower - 1] < a) --lower;
    const double lo = table[lower];
    const double hi = table[lower - 1];
    const double p_up = (static_cast<double>(a) - lo) / (hi - lo);
    const std::size_t code = static_cast<std::size_t>(rng.uniform() < p_up ? lower - 1 : lower);
    const float q = table[code];
    if (code >= ratios_.size() || q == 0.0f) continue;
    reconstructed[i] = v[i] < 0.0f ? -q : q;
    positions_.push_back(i);
    codes_.push_back(static_cast<std::uint8_t>(code));
  }

  BitWriter writer(out);
  writer.write_f32(max_abs);
  writer.write_gamma(positions_.size() + 1);
  std::size_t previous = 0;  // 1-based position of the previous entry
  for (std::size_t start = 0; start < positions_.size(); start += kBlock) {
    const std::size_t end = std::min(positions_.size(), start + kBlock);
    std::uint64_t widest = 0;
    std::size_t p = previous;
    for (std::size_t e = start; e < end; ++e) {
      widest = std::max<std::uint64_t>(widest, positions_[e] + 1 - p - 1);
      p = positions_[e] + 1;
    }
    const int width = static_cast<int>(std::bit_width(widest));
    writer.write(static_cast<std::uint64_t>(width), kWidthBits);
    for (std::size_t e = start; e < end; ++e) {
      writer.write(positions_[e] - previous, width);  // gap - 1
      previous = positions_[e] + 1;
      writer.write_bit(reconstructed[positions_[e]] < 0.0f);
      writer.write(codes_[e], bits_);
    }
  }
}

void LogQuantizer::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  const std::size_t n = out.size();
  BitReader reader(payload);
  const float max_abs = reader.read_f32();
  if (!std::isfinite(max_abs) || !(max_abs >= 0.0f))
    throw DecodeError("log_quant payload has maximum " + std::to_string(max_abs) + ", expected finite and >= 0");
  const std::uint64_t count = reader.read_gamma() - 1;
  if (count > n) throw DecodeError("log_quant payload claims " + std::to_string(count) + " entries for " +
                                   std::to_string(n) + " coordinates");
  fill_magnitudes(max_abs);
  std::fill(out.begin(), out.end(), 0.0f);
  std::size_t previous = 0;
  int width = 0;
  for (std::uint64_t e = 0; e < count; ++e) {
    if (e % kBlock == 0) {
      width = static_cast<int>(reader.read(kWidthBits));
      if (width > 57) throw DecodeError("log_quant block width " + std::to_string(width) + " exceeds 57 bits");
    }
    const std::uint64_t gap_minus_one = reader.read(width);
    if (gap_minus_one >= n - previous)
      throw DecodeError("log_quant entry " + std::to_string(e) + " lies past the end of the vector");
    previous += gap_minus_one + 1;
    const bool negative = reader.read_bit();
    const std::uint64_t code = reader.read(bits_);
    const float q = magnitudes_[code];
    if (q == 0.0f) throw DecodeError("log_quant entry " + std::to_string(e) + " has magnitude 0, which is never sent");
    out[previous - 1] = negative ? -q : q;
  }
  reader.expect_end();
}

namespace {

FEDSIM_REGISTER_STAGE(
    "log_quant", StageKind::kQuantizer,
    [](const Config& settings, StageContext&) -> std::unique_ptr<Compressor> {
      const double base = settings.get_double("base", 2.0, 1.0, 1000.0);
      if (!(base > 1.0)) settings.fail("base", "a number in (1, 1000]", std::to_string(base));
      const int bits = static_cast<int>(settings.get_int("bits", 4, 1, 8));
      if (settings.has("threshold") && settings.has("relative"))
        settings.fail("relative", "either threshold or relative", "both");
      const bool absolute = settings.has("threshold");
      const double threshold = settings.get_double("threshold", 0.0, 0.0, 3.0e38);
      const double relative = settings.get_double("relative", 0.0, 0.0, 1.0);
      if (!(relative < 1.0)) settings.fail("relative", "a number in [0, 1)", std::to_string(relative));
      return std::make_unique<LogQuantizer>(base, bits,
                                            absolute ? LogQuantizer::Mode::kAbsolute : LogQuantizer::Mode::kRelative,
                                            absolute ? threshold : relative);
    },
    "FastSGD-style log quantization: magnitudes M*base^-c (c < 2^bits) with unbiased stochastic rounding, "
    "entries below threshold dropped, positions delta-coded with a bit width per block of 64");

}  // namespace
}  // namespace fedsim
