#include "core/compression/threshold_quantizer.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/base/simd.h"
#include "core/coding/bit_io.h"
#include "core/compression/vector_norms.h"

namespace fedsim {
namespace {

static_assert(std::endian::native == std::endian::little, "the bit streams below are loaded and stored as words");

// Coordinates per pass: their levels, fractions and codes stay in L1.
constexpr std::size_t kBlock = 1024;
constexpr std::size_t kChunk = simd::kChunk;
static_assert(kBlock % kChunk == 0);

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
// 0): floor(log2 g) zeros, then g MSB first. Entry 0 is the empty code.
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

// The kernels' parameters; every float is non-negative (bit patterns order
// like the values, so comparisons are integer subtractions, see simd.h).
struct GridParams {
  float low, high, step, top_f;
  std::uint32_t top;
};

// Pass 1 over m (a multiple of 16) coordinates, before the draws: the grid
// index below |x| (0 for the coordinates not kept), its fraction of a step
// above that point, and whether the coordinate is kept (0 or 1). The same
// float operations as the scalar definition: (|x| - low) / step capped at
// top; its floor is its truncation (>= 0).
template <class V>
[[gnu::always_inline]] inline void levels_impl(const GridParams& p, const float* x, std::size_t m,
                                               std::uint32_t* level, float* fraction, std::uint32_t* kept_out) {
  using u32 = typename V::u32;
  using i32 = typename V::i32;
  using f32 = typename V::f32;
  const i32 low_bits = i32{} + std::bit_cast<std::int32_t>(p.low);
  const i32 top_bits = i32{} + std::bit_cast<std::int32_t>(p.top_f);
  const i32 stepping = i32{} + (p.step > 0.0f ? -1 : 0);
  const f32 low = f32{} + p.low;
  const f32 step = f32{} + p.step;
  for (std::size_t i = 0; i < m; i += V::kLanes) {
    u32 xb;
    std::memcpy(&xb, x + i, sizeof xb);
    const i32 a_bits = (i32)(xb & 0x7FFFFFFFu);
    const i32 kept = ~FEDSIM_SIMD_MASK_LT(a_bits, low_bits) & FEDSIM_SIMD_MASK_LT(i32{}, a_bits);
    const i32 used = kept & stepping;
    i32 scaled = (i32)(((f32)a_bits - low) / step) & used;  // >= 0 where used
    const i32 below_top = FEDSIM_SIMD_MASK_LT(scaled, top_bits);
    scaled = (scaled & below_top) | (top_bits & ~below_top);
    const i32 j = __builtin_convertvector((f32)scaled, i32);
    const f32 frac = (f32)scaled - __builtin_convertvector(j, f32);
    const i32 kept_bit = kept & 1;
    std::memcpy(level + i, &j, sizeof j);
    std::memcpy(fraction + i, &frac, sizeof frac);
    std::memcpy(kept_out + i, &kept_bit, sizeof kept_bit);
  }
}

// Pass 2, after the draws: the reconstruction (+0 when not sent) and each
// coordinate's entry: sign | level << 1, with bit 31 set when it is sent
// (its value is not zero).
template <class V>
[[gnu::always_inline]] inline void values_impl(const GridParams& p, const float* x, std::size_t m,
                                               const std::uint32_t* level, float* rec, std::uint32_t* entry) {
  using u32 = typename V::u32;
  using i32 = typename V::i32;
  using f32 = typename V::f32;
  const i32 low_bits = i32{} + std::bit_cast<std::int32_t>(p.low);
  const i32 high_bits = i32{} + std::bit_cast<std::int32_t>(p.high);
  const f32 low = f32{} + p.low;
  const f32 step = f32{} + p.step;
  for (std::size_t i = 0; i < m; i += V::kLanes) {
    u32 xb;
    i32 j;
    std::memcpy(&xb, x + i, sizeof xb);
    std::memcpy(&j, level + i, sizeof j);
    const i32 a_bits = (i32)(xb & 0x7FFFFFFFu);
    const i32 kept = ~FEDSIM_SIMD_MASK_LT(a_bits, low_bits) & FEDSIM_SIMD_MASK_LT(i32{}, a_bits);
    i32 q = (i32)(low + __builtin_convertvector(j, f32) * step);  // >= 0
    const i32 below_high = FEDSIM_SIMD_MASK_LT(q, high_bits);
    q = ((q & below_high) | (high_bits & ~below_high)) & kept;
    const i32 sent = FEDSIM_SIMD_MASK_LT(i32{}, q);
    // A zero is never sent, so the decoder writes +0: no -0 here either.
    const u32 sign = xb & 0x80000000u & (u32)sent;
    const u32 rec_bits = (u32)q | sign;
    const u32 e = (sign >> 31) | ((u32)j << 1) | ((u32)sent & 0x80000000u);
    std::memcpy(rec + i, &rec_bits, sizeof rec_bits);
    std::memcpy(entry + i, &e, sizeof e);
  }
}

// AVX2 (and AVX-512 CPUs) with 8 lanes, the baseline with 16 (as qsgd.cc).
FEDSIM_TARGET_AVX2 void levels_avx2(const GridParams& p, const float* x, std::size_t m, std::uint32_t* level,
                                    float* fraction, std::uint32_t* draws) {
  levels_impl<simd::Lanes8>(p, x, m, level, fraction, draws);
}
void levels_baseline(const GridParams& p, const float* x, std::size_t m, std::uint32_t* level, float* fraction,
                     std::uint32_t* draws) {
  levels_impl<simd::Lanes16>(p, x, m, level, fraction, draws);
}
FEDSIM_TARGET_AVX2 void values_avx2(const GridParams& p, const float* x, std::size_t m, const std::uint32_t* level,
                                    float* rec, std::uint32_t* entry) {
  values_impl<simd::Lanes8>(p, x, m, level, rec, entry);
}
void values_baseline(const GridParams& p, const float* x, std::size_t m, const std::uint32_t* level, float* rec,
                     std::uint32_t* entry) {
  values_impl<simd::Lanes16>(p, x, m, level, rec, entry);
}

using LevelsKernel = void (*)(const GridParams&, const float*, std::size_t, std::uint32_t*, float*, std::uint32_t*);
using ValuesKernel = void (*)(const GridParams&, const float*, std::size_t, const std::uint32_t*, float*,
                              std::uint32_t*);

// Elias gamma of any n >= 1 (for gaps past the table). By value, so that
// the caller's writer stays in registers.
[[gnu::noinline]] FastBitWriter put_gamma(FastBitWriter w, std::uint64_t n) {
  const int len = static_cast<int>(std::bit_width(n));
  for (int zeros = len - 1; zeros > 0; zeros -= std::min(zeros, 32)) w.put(0, std::min(zeros, 32));
  std::uint64_t reversed = 0;
  for (int b = 0; b < len; ++b) reversed |= ((n >> (len - 1 - b)) & 1u) << b;
  if (len > 32) {
    w.put(reversed & 0xFFFFFFFFu, 32);
    w.put(reversed >> 32, len - 32);
  } else {
    w.put(reversed, len);
  }
  return w;
}

// Out of the decoder's loop, which stays small.
[[noreturn, gnu::noinline, gnu::cold]] void throw_bad_entry(std::uint64_t e, const std::string& what) {
  throw DecodeError("threshold entry " + std::to_string(e) + " " + what);
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
  // Positions are kept in 40 bits while the entries are coded.
  if (n >= (std::size_t{1} << 40)) throw std::invalid_argument("threshold: vectors of 2^40 coordinates or more");
  const float max_abs = fedsim::max_abs(v.data(), n);
  if (!std::isfinite(max_abs)) throw std::invalid_argument("threshold: input is not finite");
  const float low = mode_ == Mode::kRelative ? static_cast<float>(threshold_ * static_cast<double>(max_abs))
                                             : static_cast<float>(threshold_);
  const float high = std::max(max_abs, low);
  const GridParams p{low, high, grid_step(low, high, levels_), static_cast<float>(levels_ - 1), levels_ - 1};

  static const LevelsKernel levels_kernel = simd::pick<LevelsKernel>(simd::best_isa(), levels_avx2, levels_avx2,
                                                                     levels_baseline);
  static const ValuesKernel values_kernel = simd::pick<ValuesKernel>(simd::best_isa(), values_avx2, values_avx2,
                                                                     values_baseline);

  // Per block, without branches on the data: the grid index, fraction and
  // whether it is kept, of every coordinate (SIMD); the list of the kept
  // ones; the random draws, in index order, for the kept coordinates that
  // need one (step > 0, below the top level: a branch rarely taken), one
  // draw each of the scalar generator exactly as a coordinate-by-coordinate
  // loop makes them; the values and entries (SIMD); then the sent entries'
  // codes (the kept ones but zeros), gamma(gap) + sign + level in one put,
  // into a scratch stream that follows the header (whose entry count is
  // known only at the end).
  level_of_.resize(kBlock);
  fraction_.resize(kBlock);
  kept_.resize(kBlock);
  entry_.resize(kBlock);
  float x_pad[kChunk], rec_pad[kChunk];
  Rng local = rng;  // in registers while drawing
  const auto& gamma = gamma_table();
  const int level_bits = level_bits_;
  FastBitWriter w{stream_.data()};
  std::size_t previous = 0;  // 1-based position of the last sent entry
  std::uint64_t count = 0;
  for (std::size_t c0 = 0; c0 < n; c0 += kBlock) {
    const std::size_t m = std::min(kBlock, n - c0);
    const std::size_t full = m - m % kChunk;
    const float* x = v.data() + c0;
    levels_kernel(p, x, full, level_of_.data(), fraction_.data(), kept_.data());
    if (full < m) {
      std::fill(std::begin(x_pad), std::end(x_pad), 0.0f);
      std::memcpy(x_pad, x + full, (m - full) * sizeof(float));
      levels_kernel(p, x_pad, kChunk, level_of_.data() + full, fraction_.data() + full, kept_.data() + full);
    }
    std::uint32_t* const kept = kept_.data();
    std::uint32_t* const level = level_of_.data();
    std::size_t kept_count = 0;
    for (std::size_t k = 0; k < m; ++k) {
      const std::uint32_t is_kept = kept[k];
      kept[kept_count] = static_cast<std::uint32_t>(k);
      kept_count += is_kept;
    }
    if (p.step > 0.0f) {
      const float* const fraction = fraction_.data();
      for (std::size_t d = 0; d < kept_count; ++d) {
        const std::uint32_t k = kept[d];
        if (level[k] < p.top) level[k] += local.uniform_float() < fraction[k] ? 1u : 0u;
      }
    }
    values_kernel(p, x, full, level, reconstructed.data() + c0, entry_.data());
    if (full < m) {
      values_kernel(p, x_pad, kChunk, level + full, rec_pad, entry_.data() + full);
      std::memcpy(reconstructed.data() + c0 + full, rec_pad, (m - full) * sizeof(float));
    }

    // Room for m entries of at most 25 + 2 * 41 bits (n < 2^40), plus a word.
    const std::size_t room = w.byte + kept_count * 14 + 16;
    if (stream_.size() < room) {
      stream_.resize(std::max(room, 2 * stream_.size()));
      w.buffer = stream_.data();
    }
    // The writer's state and the loop's in registers (the stores go through
    // a byte pointer, which may alias anything in memory).
    FastBitWriter local_writer = w;
    const std::uint32_t* const entries = entry_.data();
    std::uint32_t sent_here = 0;
    std::size_t d = 0;
    if (level_bits <= 12) {
      // Two entries per put (each at most 15 + 1 + 12 bits) while both gaps
      // have table codes; the others one at a time below.
      for (; d + 1 < kept_count; d += 2) {
        const std::uint32_t e0 = entries[kept[d]], e1 = entries[kept[d + 1]];
        const std::uint32_t sent0 = e0 >> 31, sent1 = e1 >> 31;
        const std::size_t position0 = c0 + kept[d] + 1, position1 = c0 + kept[d + 1] + 1;
        const std::size_t gap0 = position0 - previous;
        const std::size_t middle = sent0 != 0 ? position0 : previous;
        const std::size_t gap1 = position1 - middle;
        if (((sent0 & static_cast<std::uint32_t>(gap0 >= kGammaTableSize)) |
             (sent1 & static_cast<std::uint32_t>(gap1 >= kGammaTableSize))) != 0)
          break;
        const GammaCode g0 = gamma[gap0 < kGammaTableSize ? gap0 : 0];
        const GammaCode g1 = gamma[gap1 < kGammaTableSize ? gap1 : 0];
        const std::uint64_t keep0 = 0 - static_cast<std::uint64_t>(sent0);
        const std::uint64_t keep1 = 0 - static_cast<std::uint64_t>(sent1);
        const std::uint64_t code0 = (g0.bits | (static_cast<std::uint64_t>(e0 & 0x7FFFFFFFu) << g0.length)) & keep0;
        const std::uint64_t code1 = (g1.bits | (static_cast<std::uint64_t>(e1 & 0x7FFFFFFFu) << g1.length)) & keep1;
        const int length0 = (g0.length + 1 + level_bits) & static_cast<int>(keep0);
        const int length1 = (g1.length + 1 + level_bits) & static_cast<int>(keep1);
        local_writer.put(code0 | (code1 << length0), length0 + length1);
        previous = sent1 != 0 ? position1 : middle;
        sent_here += sent0 + sent1;
      }
    }
    for (; d < kept_count; ++d) {
      const std::uint32_t k = kept[d];
      const std::uint32_t e = entries[k];
      const std::uint32_t sent = e >> 31;
      const std::uint64_t payload = e & 0x7FFFFFFFu;
      const std::size_t position = c0 + k + 1;
      const std::size_t gap = position - previous;
      if ((sent & static_cast<std::uint32_t>(gap >= kGammaTableSize)) != 0) {
        local_writer = put_gamma(local_writer, gap);
        local_writer.put(payload, 1 + level_bits);
        previous = position;
        ++sent_here;
        continue;
      }
      const GammaCode g = gamma[gap < kGammaTableSize ? gap : 0];
      const std::uint64_t keep = 0 - static_cast<std::uint64_t>(sent);
      local_writer.put((g.bits | (payload << g.length)) & keep, (g.length + 1 + level_bits) & static_cast<int>(keep));
      previous = sent != 0 ? position : previous;
      sent_here += sent;
    }
    w = local_writer;
    count += sent_here;
  }
  rng = local;

  BitWriter writer(out);
  writer.write_f32(low);
  writer.write_f32(high);
  writer.write_gamma(count + 1);
  writer.write_stream(stream_.data(), w.bit_count());
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
  const std::uint64_t level_mask = BitWriter::mask(level_bits);
  const auto& table = gamma_decode_table();
  const std::uint8_t* const bytes = payload.data();
  const std::size_t size = payload.size();
  // The entries from a bit position, through a 64-bit buffer refilled a
  // word at a time (its bits above `valid` are the stream's next bits or
  // zeros): an entry whose gap has a short code (g < 64) is decoded from the
  // buffer while it holds the longest such entry; the others, and those in
  // the last 8 bytes, field by field through a BitReader (which checks
  // truncation), in the same order of checks.
  std::uint64_t position = static_cast<std::uint64_t>(size) * 8 - reader.bits_left_total();
  const int longest = 11 + 1 + level_bits;  // <= 36
  const auto accept = [&](std::uint64_t e, std::uint64_t gap, bool negative, std::uint64_t j)
                          __attribute__((always_inline)) {
    if (gap > n - previous) [[unlikely]]
      throw_bad_entry(e, "lies past the end of the vector");
    previous += gap;
    if (j >= levels_) [[unlikely]]
      throw_bad_entry(e, "has level " + std::to_string(j) + ", expected < " + std::to_string(levels_));
    const float q = grid_value(low, high, step, static_cast<std::uint32_t>(j));
    if (q == 0.0f) [[unlikely]]
      throw_bad_entry(e, "is zero, which is never sent");
    out[previous - 1] = negative ? -q : q;
  };
  std::uint64_t e = 0;
  while (e < count) {
    const std::size_t byte = static_cast<std::size_t>(position >> 3);
    bool field_by_field = true;
    if (byte + 8 <= size) {
      const std::uint8_t* next = bytes + byte;
      std::uint64_t buffer;
      std::memcpy(&buffer, next, 8);
      next += 7;
      buffer >>= position & 7;
      int valid = 56 - static_cast<int>(position & 7);
      field_by_field = false;
      while (e < count) {
        while (valid >= longest && e < count) {
          const std::uint16_t g = table[buffer & (kGammaDecodeSize - 1)];
          const int g_length = g >> 8;
          if (g_length == 0) {
            field_by_field = true;
            break;
          }
          const bool negative = ((buffer >> g_length) & 1u) != 0;
          const std::uint64_t j = (buffer >> (g_length + 1)) & level_mask;
          const int length = g_length + 1 + level_bits;
          buffer >>= length;
          valid -= length;
          accept(e, g & 0xFFu, negative, j);
          ++e;
        }
        if (field_by_field || e >= count || static_cast<std::size_t>(next - bytes) + 8 > size) break;
        std::uint64_t word;
        std::memcpy(&word, next, 8);
        buffer |= word << valid;
        next += (63 - valid) >> 3;
        valid |= 56;
      }
      position = static_cast<std::uint64_t>(next - bytes) * 8 - static_cast<std::uint64_t>(valid);
      if (!field_by_field) continue;  // done, or near the end
    }
    if (e >= count) break;
    const std::size_t at = static_cast<std::size_t>(position >> 3);
    BitReader field(payload.subspan(at));
    field.read(static_cast<int>(position & 7));
    const std::uint64_t gap = field.read_gamma();
    bool negative = false;
    std::uint64_t j = 0;
    if (gap <= n - previous) {  // else rejected in accept(), before reading on
      negative = field.read_bit();
      j = field.read(level_bits);
    }
    position = static_cast<std::uint64_t>(size) * 8 - field.bits_left_total();
    accept(e, gap, negative, j);
    ++e;
  }
  BitReader rest(payload.subspan(static_cast<std::size_t>(position >> 3)));
  rest.read(static_cast<int>(position & 7));
  rest.expect_end();
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
