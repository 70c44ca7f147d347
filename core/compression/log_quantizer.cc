#include "core/compression/log_quantizer.h"

#include <algorithm>
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

// Coordinates per pass: their estimates and the pending entries stay in L1.
constexpr std::size_t kPass = 1024;
constexpr std::size_t kChunk = simd::kChunk;
static_assert(kPass % kChunk == 0);

// log2 of a positive finite float within 0.01: its exponent plus a
// quadratic in the mantissa m in [1, 2) (log2 m ~ (m - 1)(1.3466 - 0.3466 (m - 1)),
// exact at both ends).
float rough_log2(float a) {
  const auto bits = std::bit_cast<std::uint32_t>(a);
  const auto exponent = static_cast<float>(static_cast<std::int32_t>(bits >> 23) - 127);
  const float t = std::bit_cast<float>((bits & 0x7FFFFFu) | 0x3F800000u) - 1.0f;
  return exponent + t * (1.3466f - 0.3466f * t);
}

struct EstimateParams {
  float threshold;  // >= 0
  float log2_max;
  float per_log2;
  float last;       // C + 1
};

// Over m (a multiple of 16) coordinates: whether each is kept (|x| > 0 and
// >= threshold, 0 or 1) and its estimated `lower` (see encode()), clamped to
// [1, C + 1]; zeroes rec; sets the neighbours lo = 0, hi = 1 (those of the
// kept coordinates are set later). The estimate needs not be the scalar rough_log2's
// to the bit: the table walk after it makes `lower` exact whatever its error.
template <class V>
[[gnu::always_inline]] inline void estimate_impl(const EstimateParams& p, const float* x, std::size_t m,
                                                 std::uint32_t* kept_out, std::int32_t* lower, float* rec, float* lo,
                                                 float* hi) {
  using u32 = typename V::u32;
  using i32 = typename V::i32;
  using f32 = typename V::f32;
  const i32 threshold_bits = i32{} + std::bit_cast<std::int32_t>(p.threshold);
  const f32 log2_max = f32{} + p.log2_max;
  const f32 per_log2 = f32{} + p.per_log2;
  const i32 one = i32{} + 1;
  const i32 last_bits = i32{} + std::bit_cast<std::int32_t>(p.last);
  for (std::size_t i = 0; i < m; i += V::kLanes) {
    u32 xb;
    std::memcpy(&xb, x + i, sizeof xb);
    const i32 a_bits = (i32)(xb & 0x7FFFFFFFu);
    const i32 kept = ~FEDSIM_SIMD_MASK_LT(a_bits, threshold_bits) & FEDSIM_SIMD_MASK_LT(i32{}, a_bits);
    const f32 exponent = __builtin_convertvector((a_bits >> 23) - 127, f32);
    const f32 t = (f32)((a_bits & 0x7FFFFF) | 0x3F800000) - 1.0f;
    const f32 log2_a = exponent + t * (1.3466f - 0.3466f * t);
    const f32 estimate = (log2_max - log2_a) * per_log2 + 1.0f;
    // Clamped to [1, last] (negative floats to +0 first, then compared as
    // bit patterns); truncation is then the floor.
    i32 e_bits = (i32)estimate & ~((i32)estimate >> 31);
    const i32 below_last = FEDSIM_SIMD_MASK_LT(e_bits, last_bits);
    e_bits = (e_bits & below_last) | (last_bits & ~below_last);
    i32 low = __builtin_convertvector((f32)e_bits, i32);
    low += FEDSIM_SIMD_MASK_LT(low, one) & 1;  // 0 -> 1
    const i32 kept_bit = kept & 1;
    const f32 zero = {};
    const f32 unit = zero + 1.0f;
    std::memcpy(kept_out + i, &kept_bit, sizeof kept_bit);
    std::memcpy(lower + i, &low, sizeof low);
    std::memcpy(rec + i, &zero, sizeof zero);
    std::memcpy(lo + i, &zero, sizeof zero);
    std::memcpy(hi + i, &unit, sizeof unit);
  }
}

// P(rounding up to hi) = (|x| - lo) / (hi - lo) in double, as the scalar
// definition computes it, over m (a multiple of 16) coordinates.
[[gnu::always_inline]] inline void round_up_impl(const float* x, const float* lo, const float* hi, std::size_t m,
                                                 double* p_up) {
  using f32x4 = float __attribute__((vector_size(16)));
  using u32x4 = std::uint32_t __attribute__((vector_size(16)));
  for (std::size_t i = 0; i < m; i += 4) {
    u32x4 xb;
    f32x4 l, h;
    std::memcpy(&xb, x + i, sizeof xb);
    std::memcpy(&l, lo + i, sizeof l);
    std::memcpy(&h, hi + i, sizeof h);
    const simd::f64x4 a = __builtin_convertvector((f32x4)(xb & 0x7FFFFFFFu), simd::f64x4);
    const simd::f64x4 low = __builtin_convertvector(l, simd::f64x4);
    const simd::f64x4 p = (a - low) / (__builtin_convertvector(h, simd::f64x4) - low);
    std::memcpy(p_up + i, &p, sizeof p);
  }
}

FEDSIM_TARGET_AVX2 void estimate_avx2(const EstimateParams& p, const float* x, std::size_t m, std::uint32_t* kept,
                                      std::int32_t* lower, float* rec, float* lo, float* hi) {
  estimate_impl<simd::Lanes8>(p, x, m, kept, lower, rec, lo, hi);
}
void estimate_baseline(const EstimateParams& p, const float* x, std::size_t m, std::uint32_t* kept,
                       std::int32_t* lower, float* rec, float* lo, float* hi) {
  estimate_impl<simd::Lanes16>(p, x, m, kept, lower, rec, lo, hi);
}
using EstimateKernel = void (*)(const EstimateParams&, const float*, std::size_t, std::uint32_t*, std::int32_t*,
                                float*, float*, float*);
FEDSIM_TARGET_AVX2 void round_up_avx2(const float* x, const float* lo, const float* hi, std::size_t m, double* p_up) {
  round_up_impl(x, lo, hi, m, p_up);
}
void round_up_baseline(const float* x, const float* lo, const float* hi, std::size_t m, double* p_up) {
  round_up_impl(x, lo, hi, m, p_up);
}
using RoundUpKernel = void (*)(const float*, const float*, const float*, std::size_t, double*);

// Out of the decoder's loop, which stays small.
[[noreturn, gnu::noinline, gnu::cold]] void throw_bad_entry(std::uint64_t e, const char* what) {
  throw DecodeError("log_quant entry " + std::to_string(e) + " " + what);
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

// Writes the pending entries' blocks of 64 (all of them when `all`, else the
// full blocks only) and keeps the rest pending.
void LogQuantizer::write_blocks(bool all) {
  const std::size_t blocks = all ? (pending_ + kBlock - 1) / kBlock : pending_ / kBlock;
  const std::size_t written = std::min(pending_, blocks * kBlock);
  // Room for every entry at 6 + 57 + 1 + 8 bits, plus a word.
  const std::size_t room = stream_byte_ + written * 9 + blocks + 16;
  if (stream_.size() < room) stream_.resize(std::max(room, 2 * stream_.size()));
  FastBitWriter w{stream_.data(), stream_byte_, stream_acc_, stream_filled_};
  const std::uint64_t* const pending = pending_entries_.data();
  constexpr std::uint64_t kGapMask = (std::uint64_t{1} << 40) - 1;
  const int bits = bits_;
  for (std::size_t start = 0; start < written; start += kBlock) {
    const std::size_t end = std::min(written, start + kBlock);
    std::uint64_t any = 0;  // as wide as the widest gap - 1
    for (std::size_t e = start; e < end; ++e) any |= pending[e];
    const int width = static_cast<int>(std::bit_width(any & kGapMask));
    w.put(static_cast<std::uint64_t>(width), kWidthBits);
    if (width + 1 + bits <= 56) {
      for (std::size_t e = start; e < end; ++e)
        w.put((pending[e] & kGapMask) | ((pending[e] >> 40) << width), width + 1 + bits);
    } else {
      for (std::size_t e = start; e < end; ++e) {
        w.put(pending[e] & kGapMask, width);
        w.put(pending[e] >> 40, 1 + bits);
      }
    }
  }
  stream_byte_ = w.byte;
  stream_acc_ = w.acc;
  stream_filled_ = w.filled;
  std::copy(pending_entries_.begin() + static_cast<std::ptrdiff_t>(written),
            pending_entries_.begin() + static_cast<std::ptrdiff_t>(pending_), pending_entries_.begin());
  pending_ -= written;
}

void LogQuantizer::encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  const std::size_t n = v.size();
  // Positions are kept in 40 bits while the entries are coded.
  if (n >= (std::size_t{1} << 40)) throw std::invalid_argument("log_quant: vectors of 2^40 coordinates or more");
  const float max_abs = fedsim::max_abs(v.data(), n);
  if (!std::isfinite(max_abs)) throw std::invalid_argument("log_quant: input is not finite");
  const float threshold = mode_ == Mode::kRelative ? static_cast<float>(threshold_ * static_cast<double>(max_abs))
                                                   : static_cast<float>(threshold_);
  fill_magnitudes(max_abs);
  // lower = the number of magnitudes >= a = the index of the first one
  // below a, in [1, C + 1] (m_0 = M >= a > 0 = m_(C+1)): estimated as
  // log_base(M / a) from the floats' exponents and mantissas (a rough log2,
  // within 0.01, in SIMD), then corrected by walking the table, which makes
  // it exact whatever the estimate's error; the walk is rarely more than
  // one step.
  const float* const table = magnitudes_.data();
  const auto last = static_cast<std::int32_t>(magnitudes_.size() - 1);  // C + 1
  const EstimateParams params{threshold, max_abs > 0.0f ? rough_log2(max_abs) : 0.0f,
                              max_abs > 0.0f ? static_cast<float>(1.0 / std::log2(base_)) : 0.0f,
                              static_cast<float>(last)};
  static const EstimateKernel estimate_kernel =
      simd::pick<EstimateKernel>(simd::best_isa(), estimate_avx2, estimate_avx2, estimate_baseline);
  static const RoundUpKernel round_up_kernel =
      simd::pick<RoundUpKernel>(simd::best_isa(), round_up_avx2, round_up_avx2, round_up_baseline);

  // Per pass: the kept flags and estimates (SIMD); the list of the kept
  // coordinates; their exact lower and neighbours; the probabilities of
  // rounding up (SIMD); then, for each kept one in index order, one draw of
  // the scalar generator as before, the value, and the entry appended to the
  // pending ones, which are written in blocks of 64 to a scratch stream that
  // follows the header (whose entry count is known only at the end).
  kept_.resize(kPass);
  lower_.resize(kPass);
  lo_.resize(kPass);
  hi_.resize(kPass);
  p_up_.resize(kPass);
  pending_entries_.resize(kPass + kBlock);
  pending_ = 0;
  previous_ = 0;
  stream_byte_ = 0;
  stream_acc_ = 0;
  stream_filled_ = 0;
  std::uint64_t count = 0;
  Rng local = rng;  // in registers while drawing
  alignas(32) float x_pad[kChunk];
  float rec_pad[kChunk];
  for (std::size_t c0 = 0; c0 < n; c0 += kPass) {
    const std::size_t m = std::min(kPass, n - c0);
    const std::size_t full = m - m % kChunk;
    const float* const x = v.data() + c0;
    float* const rec = reconstructed.data() + c0;
    std::uint32_t* const kept = kept_.data();
    std::int32_t* const lower_of = lower_.data();
    float* const lo = lo_.data();
    float* const hi = hi_.data();
    double* const p_up = p_up_.data();
    estimate_kernel(params, x, full, kept, lower_of, rec, lo, hi);
    if (full < m) {
      std::fill(std::begin(x_pad), std::end(x_pad), 0.0f);
      std::memcpy(x_pad, x + full, (m - full) * sizeof(float));
      estimate_kernel(params, x_pad, kChunk, kept + full, lower_of + full, rec_pad, lo + full, hi + full);
      std::memcpy(rec + full, rec_pad, (m - full) * sizeof(float));
    }
    std::size_t kept_count = 0;
    for (std::size_t k = 0; k < m; ++k) {
      const std::uint32_t is_kept = kept[k];
      kept[kept_count] = static_cast<std::uint32_t>(k);
      kept_count += is_kept;
    }
    for (std::size_t d = 0; d < kept_count; ++d) {
      const std::uint32_t k = kept[d];
      const float a = std::fabs(x[k]);
      std::int32_t lower = lower_of[k];
      while (table[lower] >= a) ++lower;
      while (table[lower - 1] < a) --lower;
      // The entry if rounded down: sign | lower << 1.
      lower_of[k] = static_cast<std::int32_t>((std::bit_cast<std::uint32_t>(x[k]) >> 31) |
                                              (static_cast<std::uint32_t>(lower) << 1));
      lo[k] = table[lower];
      hi[k] = table[lower - 1];
    }
    round_up_kernel(x, lo, hi, full, p_up);
    if (full < m) round_up_kernel(x_pad, lo + full, hi + full, kChunk, p_up + full);
    // Few live values, so that the generator's state stays in registers.
    std::uint64_t* const pending_entries = pending_entries_.data();
    std::size_t pending = pending_;
    std::size_t previous = previous_;  // 1-based position of the last entry
    for (std::size_t d = 0; d < kept_count; ++d) {
      const std::uint32_t k = kept[d];
      const auto down = static_cast<std::uint32_t>(lower_of[k]);
      const std::uint32_t entry = down - (local.uniform() < p_up[k] ? 2u : 0u);
      // magnitudes_[C + 1] is 0: q is 0 exactly when the entry is not sent.
      const auto q = std::bit_cast<std::uint32_t>(table[entry >> 1]);
      const std::uint32_t sent = q != 0 ? 1u : 0u;
      rec[k] = std::bit_cast<float>(q | ((entry & sent) << 31));
      const std::size_t position = c0 + k;
      pending_entries[pending] = (position - previous) | (static_cast<std::uint64_t>(entry) << 40);
      pending += sent;
      previous = sent != 0 ? position + 1 : previous;
    }
    previous_ = previous;
    count += pending - pending_;
    pending_ = pending;
    write_blocks(false);
  }
  write_blocks(true);
  rng = local;

  BitWriter writer(out);
  writer.write_f32(max_abs);
  writer.write_gamma(count + 1);
  writer.write_stream(stream_.data(), stream_byte_ * 8 + static_cast<std::uint64_t>(stream_filled_));
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
  const float* const magnitudes = magnitudes_.data();
  const std::uint8_t* const bytes = payload.data();
  const std::size_t size = payload.size();
  const int bits = bits_;
  const std::uint64_t code_mask = BitWriter::mask(bits);
  std::size_t previous = 0;
  const auto accept = [&](std::uint64_t e, std::uint64_t gap_minus_one, bool negative, std::uint64_t code)
                          __attribute__((always_inline)) {
    previous += gap_minus_one + 1;
    const float q = magnitudes[code];
    if (q == 0.0f) [[unlikely]]
      throw_bad_entry(e, "has magnitude 0, which is never sent");
    out[previous - 1] = negative ? -q : q;
  };
  // Per block of 64 entries, all of the same length: from one word load
  // each while the block lies 8 bytes before the end of the payload, else
  // field by field through a BitReader (which checks truncation), in the
  // same order of reads and checks.
  std::uint64_t position = static_cast<std::uint64_t>(size) * 8 - reader.bits_left_total();
  const auto field_reader = [&](std::uint64_t at) {
    BitReader field(payload.subspan(static_cast<std::size_t>(at >> 3)));
    field.read(static_cast<int>(at & 7));
    return field;
  };
  const auto word_at = [&](std::uint64_t at) {
    std::uint64_t word;
    std::memcpy(&word, bytes + (at >> 3), 8);
    return word >> (at & 7);
  };
  for (std::uint64_t e = 0; e < count;) {
    const std::uint64_t block = std::min<std::uint64_t>(kBlock, count - e);
    int width;
    if ((position >> 3) + 8 <= size) {
      width = static_cast<int>(word_at(position) & BitWriter::mask(kWidthBits));
      position += kWidthBits;
    } else {
      BitReader field = field_reader(position);
      width = static_cast<int>(field.read(kWidthBits));
      position = static_cast<std::uint64_t>(size) * 8 - field.bits_left_total();
    }
    if (width > 57) throw DecodeError("log_quant block width " + std::to_string(width) + " exceeds 57 bits");
    const int length = width + 1 + bits;
    const std::uint64_t gap_mask = BitWriter::mask(width);
    if (length <= 56 && ((position + (block - 1) * static_cast<std::uint64_t>(length)) >> 3) + 8 <= size) {
      for (std::uint64_t r = 0; r < block; ++r, ++e) {
        const std::uint64_t word = word_at(position);
        position += static_cast<std::uint64_t>(length);
        const std::uint64_t gap_minus_one = word & gap_mask;
        if (gap_minus_one >= n - previous) [[unlikely]]
          throw_bad_entry(e, "lies past the end of the vector");
        accept(e, gap_minus_one, ((word >> width) & 1u) != 0, (word >> (width + 1)) & code_mask);
      }
    } else {
      BitReader field = field_reader(position);
      for (std::uint64_t r = 0; r < block; ++r, ++e) {
        const std::uint64_t gap_minus_one = field.read(width);
        if (gap_minus_one >= n - previous) throw_bad_entry(e, "lies past the end of the vector");
        const bool negative = field.read_bit();
        accept(e, gap_minus_one, negative, field.read(bits));
      }
      position = static_cast<std::uint64_t>(size) * 8 - field.bits_left_total();
    }
  }
  BitReader rest = field_reader(position);
  rest.expect_end();
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
