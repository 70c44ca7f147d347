#include "core/compression/threshold_quantizer.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <stdexcept>
#include <string>

#include "core/coding/bit_io.h"
#include "core/compression/lane_kernels.h"
#include "core/compression/vector_norms.h"

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

// Elias gamma codes of small values as they are written (first bit in bit
// 0): floor(log2 g) zeros, then g MSB first.
constexpr std::size_t kGammaTableSize = 256;
struct GammaCode {
  std::uint32_t bits;
  int length;
};
const std::array<GammaCode, kGammaTableSize>& gamma_table() {
  static const auto table = [] {
    std::array<GammaCode, kGammaTableSize> t{};
    for (std::uint32_t g = 1; g < kGammaTableSize; ++g) {
      const int len = static_cast<int>(std::bit_width(g));
      std::uint32_t reversed = 0;
      for (int b = 0; b < len; ++b) reversed |= ((g >> (len - 1 - b)) & 1u) << b;
      t[g] = GammaCode{reversed << (len - 1), 2 * len - 1};
    }
    return t;
  }();
  return table;
}

// The inverse, indexed by the next 12 bits of a stream: g | length << 8 for
// the gamma code that starts there (g < 64), or 0 when it is longer.
constexpr std::size_t kGammaDecodeSize = 1u << 12;
const std::array<std::uint16_t, kGammaDecodeSize>& gamma_decode_table() {
  static const auto table = [] {
    std::array<std::uint16_t, kGammaDecodeSize> t{};
    for (std::uint32_t g = 1; g < 64; ++g) {
      const GammaCode c = gamma_table()[g];
      for (std::uint32_t rest = 0; (rest << c.length) < kGammaDecodeSize; ++rest)
        t[c.bits | (rest << c.length)] = static_cast<std::uint16_t>(g | (static_cast<std::uint32_t>(c.length) << 8));
    }
    return t;
  }();
  return table;
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
  const float max_abs = fedsim::max_abs(v.data(), n);
  if (!std::isfinite(max_abs)) throw std::invalid_argument("threshold: input is not finite");
  const float low = mode_ == Mode::kRelative ? static_cast<float>(threshold_ * static_cast<double>(max_abs))
                                             : static_cast<float>(threshold_);
  const float high = std::max(max_abs, low);
  const float step = grid_step(low, high, levels_);
  const std::uint32_t top = levels_ - 1;
  const float top_f = static_cast<float>(top);

  // Quantize first (reconstructed and the entry lists hold the result), then
  // write. Per block, without branches on the data: the grid index and the
  // fraction of every coordinate; then the random draws, in index order, for
  // the coordinates that need one (kept, step > 0, below the top level), as
  // one draw each of the scalar generator exactly as a coordinate-by-
  // coordinate loop makes them; then the values and the list of sent entries.
  sent_.clear();
  level_of_.resize(kLaneBlock);
  fraction_.resize(kLaneBlock);
  draws_.resize(kLaneBlock);
  for (std::size_t c0 = 0; c0 < n; c0 += kLaneBlock) {
    const std::size_t m = std::min(kLaneBlock, n - c0);
    const float* x = v.data() + c0;
    std::size_t need = 0;
    for (std::size_t k = 0; k < m; ++k) {
      const float a = std::fabs(x[k]);
      const bool kept = a >= low && a > 0.0f;
      const float scaled = step > 0.0f ? std::min((a - low) / step, top_f) : 0.0f;
      const float floor_x = std::floor(scaled);
      const std::uint32_t j = kept ? static_cast<std::uint32_t>(floor_x) : 0u;
      level_of_[k] = j;
      fraction_[k] = scaled - floor_x;
      draws_[need] = static_cast<std::uint32_t>(k);
      need += (kept && step > 0.0f && j < top) ? 1 : 0;
    }
    for (std::size_t d = 0; d < need; ++d) {
      const std::uint32_t k = draws_[d];
      level_of_[k] += rng.uniform_float() < fraction_[k] ? 1u : 0u;
    }
    std::size_t count = sent_.size();
    sent_.resize(count + m);
    for (std::size_t k = 0; k < m; ++k) {
      const float a = std::fabs(x[k]);
      const bool kept = a >= low && a > 0.0f;
      const float q = kept ? grid_value(low, high, step, level_of_[k]) : 0.0f;
      // A zero is never sent, so the decoder writes +0: no -0 here either.
      reconstructed[c0 + k] = x[k] < 0.0f && q != 0.0f ? -q : q;
      sent_[count] = (c0 + k) | (static_cast<std::uint64_t>(level_of_[k]) << 40);
      count += q != 0.0f ? 1 : 0;
    }
    sent_.resize(count);
  }

  BitWriter writer(out);
  writer.write_f32(low);
  writer.write_f32(high);
  writer.write_gamma(sent_.size() + 1);
  std::size_t previous = 0;
  const int level_bits = level_bits_;
  for (const std::uint64_t entry : sent_) {
    const std::size_t i = static_cast<std::size_t>(entry & ((std::uint64_t{1} << 40) - 1));
    const std::uint64_t level = entry >> 40;
    const std::uint64_t gap = i + 1 - previous;
    previous = i + 1;
    const std::uint64_t sign = std::signbit(reconstructed[i]) ? 1u : 0u;
    if (gap < kGammaTableSize) {
      // gamma(gap), the sign and the level in one write when they fit.
      const GammaCode g = gamma_table()[gap];
      const int length = g.length + 1 + level_bits;
      if (length <= 64) {
        writer.write(g.bits | (sign << g.length) | ((level << 1) << g.length), length);
        continue;
      }
    }
    writer.write_gamma(gap);
    writer.write_bit(sign != 0);
    writer.write(level, level_bits);
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
  const int level_bits = level_bits_;
  const auto& table = gamma_decode_table();
  constexpr int kPeek = 56;
  for (std::uint64_t e = 0; e < count; ++e) {
    std::uint64_t gap, j;
    bool negative;
    // gamma(gap), sign and level from one peek when the gap's code is short
    // and the whole entry is in the payload; else field by field.
    int available;
    const std::uint64_t bits = reader.peek(kPeek, available);
    const std::uint16_t g = table[bits & (kGammaDecodeSize - 1)];
    const int g_length = g >> 8;
    if (g_length > 0 && g_length + 1 + level_bits <= available) {
      gap = g & 0xFFu;
      negative = ((bits >> g_length) & 1u) != 0;
      j = (bits >> (g_length + 1)) & BitWriter::mask(level_bits);
      reader.skip(g_length + 1 + level_bits);
    } else {
      gap = reader.read_gamma();
      negative = false;
      j = 0;
      if (gap <= n - previous) {  // else rejected below, before reading on
        negative = reader.read_bit();
        j = reader.read(level_bits_);
      }
    }
    if (gap > n - previous) throw DecodeError("threshold entry " + std::to_string(e) + " lies past the end of the vector");
    previous += gap;
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
