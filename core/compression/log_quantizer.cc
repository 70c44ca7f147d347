#include "core/compression/log_quantizer.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/base/lane_rng.h"
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

struct QuantizeParams {
  float threshold;  // >= 0
  float log2_max;
  float per_log2;
  std::int32_t last;  // C + 1
  const float* table;            // magnitudes_: m_0 .. m_C, then 0 at index C + 1
  const std::uint64_t* pairs;    // pairs_: m_l | m_(l-1) << 32 at index l in [1, C + 1]
};

// The neighbouring magnitudes of the lanes' indices l in [1, C + 1]: lo =
// m_l and hi = m_(l-1) as bit patterns, from one load per lane of the pair
// table (m_l | m_(l-1) << 32 at index l): half the loads of two lookups; on
// 8 lanes the pairs are split into lo and hi by two shuffles.
template <class I>
[[gnu::always_inline]] inline void gather_pairs(const std::uint64_t* pairs, const I& index, I& lo, I& hi) {
  constexpr int kLanes = sizeof(I) / sizeof(std::int32_t);
  if constexpr (kLanes == 8) {
    using u64x4 = std::uint64_t __attribute__((vector_size(32)));
    alignas(32) std::int32_t at[8];
    std::memcpy(at, &index, sizeof at);
    const u64x4 first = {pairs[at[0]], pairs[at[1]], pairs[at[2]], pairs[at[3]]};
    const u64x4 second = {pairs[at[4]], pairs[at[5]], pairs[at[6]], pairs[at[7]]};
    lo = __builtin_shufflevector((I)first, (I)second, 0, 2, 4, 6, 8, 10, 12, 14);
    hi = __builtin_shufflevector((I)first, (I)second, 1, 3, 5, 7, 9, 11, 13, 15);
  } else {
    for (int j = 0; j < kLanes; ++j) {
      const std::uint64_t pair = pairs[index[j]];
      lo[j] = static_cast<std::int32_t>(static_cast<std::uint32_t>(pair));
      hi[j] = static_cast<std::int32_t>(pair >> 32);
    }
  }
}

// log2 of positive normal floats, within 2e-6 plus rounding: the exponent,
// and log2 of the mantissa m in [sqrt(1/2), sqrt(2)) from the series
// 2/ln 2 (s + s^3/3 + s^5/5), s = (m - 1)/(m + 1), |s| < 0.1716 (the terms
// left out sum to less than 2e-6). A subnormal gets an estimate that is off, which
// the table check in quantize_impl corrects.
template <class V>
[[gnu::always_inline]] inline void log2_lanes(const typename V::i32& a_bits, typename V::f32& out) {
  using i32 = typename V::i32;
  using f32 = typename V::f32;
  i32 exponent = (a_bits >> 23) - 127;
  i32 mantissa = (a_bits & 0x7FFFFF) | 0x3F800000;
  const i32 halve = FEDSIM_SIMD_MASK_LT(i32{} + 0x3FB504F3, mantissa);  // m > sqrt(2)
  mantissa -= halve & 0x00800000;
  exponent -= halve;
  const f32 m = (f32)mantissa;
  const f32 s = (m - 1.0f) / (m + 1.0f);
  const f32 s2 = s * s;
  const f32 series = s * (2.8853900817779268f + s2 * (0.96179669392597560f + s2 * 0.57707801635558536f));
  out = __builtin_convertvector(exponent, f32) + series;
}

// Quantizes m (a multiple of 16) coordinates; see encode() for the definition.
// Per coordinate: whether it is kept (|x| > 0 and >= threshold); lower = the
// number of magnitudes >= a = |x|, in [1, C + 1] (m_0 = M >= a > 0 = m_(C+1)),
// estimated as floor(log_base(M / a)) + 1 and checked against the table
// (m_lower < a <= m_(lower-1)). Where the estimate is off (a within about
// 1e-5 steps of a magnitude, subnormals: rare), kExact walks such lanes to
// the exact index; without it the result is false and such lanes' outputs
// are wrong (the caller then runs kExact); then one draw rounds up to hi = m_(lower-1) or down to lo =
// m_lower (round_up8). Writes rec (0 unless sent) and word = 2^31 | sign |
// code << 1 for an entry that is sent (its magnitude is not 0), else 0.
template <class V, bool kExact>
[[gnu::always_inline]] inline bool quantize_impl(const QuantizeParams& p, const float* x, const std::uint32_t* random,
                                                 std::size_t m, float* rec, std::uint32_t* words) {
  using u32 = typename V::u32;
  using i32 = typename V::i32;
  using f32 = typename V::f32;
  constexpr int kLanes = V::kLanes;
  const i32 threshold_bits = i32{} + std::bit_cast<std::int32_t>(p.threshold);
  const f32 log2_max = f32{} + p.log2_max;
  const f32 per_log2 = f32{} + p.per_log2;
  const i32 one = i32{} + 1;
  const i32 last_bits = i32{} + std::bit_cast<std::int32_t>(static_cast<float>(p.last));
  const float* const table = p.table;
  i32 any_unbracketed = {};
  for (std::size_t i = 0; i < m; i += kLanes) {
    u32 xb;
    std::memcpy(&xb, x + i, sizeof xb);
    const i32 a_bits = (i32)(xb & 0x7FFFFFFFu);
    const f32 a = (f32)a_bits;
    const i32 kept = ~FEDSIM_SIMD_MASK_LT(a_bits, threshold_bits) & FEDSIM_SIMD_MASK_LT(i32{}, a_bits);
    f32 log2_a;
    log2_lanes<V>(a_bits, log2_a);
    const f32 estimate = (log2_max - log2_a) * per_log2 + 1.0f;
    // Clamped to [1, C + 1] (negative floats to +0 first, then compared as
    // bit patterns); truncation is then the floor.
    i32 e_bits = (i32)estimate & ~((i32)estimate >> 31);
    const i32 below_last = FEDSIM_SIMD_MASK_LT(e_bits, last_bits);
    e_bits = (e_bits & below_last) | (last_bits & ~below_last);
    i32 lower = __builtin_convertvector((f32)e_bits, i32);
    lower += FEDSIM_SIMD_MASK_LT(lower, one) & 1;  // 0 -> 1
    // (Non-negative floats compare as their bit patterns.)
    i32 lo, hi;
    gather_pairs(p.pairs, lower, lo, hi);
    const i32 unbracketed = kept & (~FEDSIM_SIMD_MASK_LT(lo, a_bits) | FEDSIM_SIMD_MASK_LT(hi, a_bits));
    if constexpr (!kExact) {
      any_unbracketed |= unbracketed;
    } else {
      for (int j = 0; j < kLanes; ++j) {
        if (unbracketed[j] == 0) continue;
        std::int32_t l = lower[j];
        while (table[l] >= a[j]) ++l;
        while (table[l - 1] < a[j]) --l;
        lower[j] = l;
        lo[j] = std::bit_cast<std::int32_t>(table[l]);
        hi[j] = std::bit_cast<std::int32_t>(table[l - 1]);
      }
    }
    // Up with probability (a - lo) / (hi - lo), in float as TernGrad's draw
    // (terngrad.cc): u = (r >> 8) 2^-24, up iff u (hi - lo) < a - lo.
    u32 r;
    std::memcpy(&r, random + i, sizeof r);
    const f32 u = __builtin_convertvector((i32)(r >> 8), f32) * 0x1.0p-24f;
    const f32 low = (f32)lo;
    // Both sides are >= 0 in the lanes that are kept and bracketed; the others
    // (whose results are discarded) compare zeros, so that the integer
    // subtraction in the mask cannot overflow.
    const i32 bracketed = kExact ? kept : kept & ~unbracketed;
    const i32 up = FEDSIM_SIMD_MASK_LT((i32)(u * ((f32)hi - low)) & bracketed, (i32)(a - low) & bracketed);
    // up is -1 or 0: the code is lower - 1 when rounding up.
    const i32 code = lower + up;
    const i32 q_bits = (hi & up) | (lo & ~up);
    const i32 sent = kept & FEDSIM_SIMD_MASK_LT(i32{}, q_bits);
    const i32 sign = (i32)(xb >> 31);
    const i32 value = sent & (q_bits | (sign << 31));
    const i32 word = sent & ((i32{} + static_cast<std::int32_t>(0x80000000u)) | sign | (code << 1));
    std::memcpy(rec + i, &value, sizeof value);
    std::memcpy(words + i, &word, sizeof word);
  }
  bool any = false;
  for (int j = 0; j < kLanes; ++j) any |= any_unbracketed[j] != 0;
  return !any;
}

FEDSIM_TARGET_AVX2 bool quantize_avx2(const QuantizeParams& p, const float* x, const std::uint32_t* random,
                                      std::size_t m, float* rec, std::uint32_t* words, bool exact) {
  return exact ? quantize_impl<simd::Lanes8, true>(p, x, random, m, rec, words)
               : quantize_impl<simd::Lanes8, false>(p, x, random, m, rec, words);
}
bool quantize_baseline(const QuantizeParams& p, const float* x, const std::uint32_t* random, std::size_t m,
                       float* rec, std::uint32_t* words, bool exact) {
  return exact ? quantize_impl<simd::Lanes16, true>(p, x, random, m, rec, words)
               : quantize_impl<simd::Lanes16, false>(p, x, random, m, rec, words);
}
using QuantizeKernel = bool (*)(const QuantizeParams&, const float*, const std::uint32_t*, std::size_t, float*,
                                std::uint32_t*, bool);

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
    const int length = width + 1 + bits;
    if (length <= 56) {
      // The fields of up to four entries go to the writer at once (the same
      // LSB-first stream as one put per entry).
      const auto field = [&](std::size_t e) { return (pending[e] & kGapMask) | ((pending[e] >> 40) << width); };
      std::size_t e = start;
      if (width == 0) {  // consecutive positions: the fields are the entries
        for (; e + 4 <= end; e += 4)
          w.put((pending[e] >> 40) | ((pending[e + 1] >> 40) << length) | ((pending[e + 2] >> 40) << (2 * length)) |
                    ((pending[e + 3] >> 40) << (3 * length)),
                4 * length);
      } else if (4 * length <= 56) {
        for (; e + 4 <= end; e += 4)
          w.put(field(e) | (field(e + 1) << length) | (field(e + 2) << (2 * length)) | (field(e + 3) << (3 * length)),
                4 * length);
      } else if (2 * length <= 56) {
        for (; e + 2 <= end; e += 2) w.put(field(e) | (field(e + 1) << length), 2 * length);
      }
      for (; e < end; ++e) w.put(field(e), length);
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
  // The neighbouring magnitudes of each index l in [1, C + 1] (gather_pairs).
  pairs_.resize(magnitudes_.size());
  pairs_[0] = 0;  // never read
  for (std::size_t l = 1; l < magnitudes_.size(); ++l)
    pairs_[l] = std::bit_cast<std::uint32_t>(magnitudes_[l]) |
                (static_cast<std::uint64_t>(std::bit_cast<std::uint32_t>(magnitudes_[l - 1])) << 32);
  const auto last = static_cast<std::int32_t>(magnitudes_.size() - 1);  // C + 1
  const QuantizeParams params{threshold, max_abs > 0.0f ? static_cast<float>(std::log2(static_cast<double>(max_abs))) : 0.0f,
                              max_abs > 0.0f ? static_cast<float>(1.0 / std::log2(base_)) : 0.0f, last,
                              magnitudes_.data(), pairs_.data()};
  static const QuantizeKernel quantize_kernel =
      simd::pick<QuantizeKernel>(simd::best_isa(), quantize_avx2, quantize_avx2, quantize_baseline);

  // Per pass of coordinates: 32 random bits per coordinate from the lanes
  // (whether it is kept or not: the draws do not depend on the data), the
  // values and entry words (SIMD), then the sent entries appended to the
  // pending ones with their gaps, which are written in blocks of 64 to a
  // scratch stream that follows the header (whose entry count is known only
  // at the end).
  random_.resize(kPass / 2);
  words_.resize(kPass);
  pending_entries_.resize(kPass + kBlock);
  pending_ = 0;
  previous_ = 0;
  stream_byte_ = 0;
  stream_acc_ = 0;
  stream_filled_ = 0;
  std::uint64_t count = 0;
  LaneRng lanes(rng);
  alignas(32) float x_pad[kChunk];
  float rec_pad[kChunk];
  for (std::size_t c0 = 0; c0 < n; c0 += kPass) {
    const std::size_t m = std::min(kPass, n - c0);
    const std::size_t full = m - m % kChunk;
    const float* const x = v.data() + c0;
    float* const rec = reconstructed.data() + c0;
    std::uint32_t* const words = words_.data();
    const auto* const random = reinterpret_cast<const std::uint32_t*>(random_.data());
    lanes.fill(random_.data(), (m + kChunk - 1) / kChunk);  // two draws per word, 16 per step
    // The fast pass is exact unless a lane's estimate missed its bracket
    // (rare); then the pass is run again with the exact walk per lane, which
    // gives the other lanes the same results (the draws are per coordinate).
    const auto quantize_pass = [&](bool exact) {
      bool ok = quantize_kernel(params, x, random, full, rec, words, exact);
      if (full < m) {
        std::fill(std::begin(x_pad), std::end(x_pad), 0.0f);
        std::memcpy(x_pad, x + full, (m - full) * sizeof(float));
        ok &= quantize_kernel(params, x_pad, random + full, kChunk, rec_pad, words + full, exact);
        std::memcpy(rec + full, rec_pad, (m - full) * sizeof(float));
      }
      return ok;
    };
    if (!quantize_pass(false)) quantize_pass(true);
    // One store per coordinate, advanced only past a sent entry; eight
    // coordinates that are all sent (the usual case for dense gradients)
    // give eight consecutive entries at once.
    std::uint64_t* const pending_entries = pending_entries_.data();
    std::size_t pending = pending_;
    std::size_t previous = previous_;  // 1-based position of the last entry
    const auto append = [&](std::size_t k) __attribute__((always_inline)) {
      const std::uint32_t word = words[k];
      const std::size_t position = c0 + k;
      pending_entries[pending] = (position - previous) | (static_cast<std::uint64_t>(word & 0x7FFFFFFFu) << 40);
      const std::uint32_t sent = word >> 31;
      pending += sent;
      previous = sent != 0 ? position + 1 : previous;
    };
    std::size_t k = 0;
    for (; k + 8 <= m; k += 8) {
      std::uint64_t w[4];
      std::memcpy(w, words + k, sizeof w);
      constexpr std::uint64_t kBoth = 0x8000000080000000u;
      if ((w[0] & w[1] & w[2] & w[3] & kBoth) == kBoth) {
        for (std::size_t j = 0; j < 8; ++j)
          pending_entries[pending + j] = static_cast<std::uint64_t>(words[k + j] & 0x7FFFFFFFu) << 40;
        pending_entries[pending] |= c0 + k - previous;
        pending += 8;
        previous = c0 + k + 8;
      } else {
        for (std::size_t j = 0; j < 8; ++j) append(k + j);
      }
    }
    for (; k < m; ++k) append(k);
    previous_ = previous;
    count += pending - pending_;
    pending_ = pending;
    write_blocks(false);
  }
  write_blocks(true);

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
    const bool in_words =
        length <= 56 && ((position + (block - 1) * static_cast<std::uint64_t>(length)) >> 3) + 8 <= size;
    if (in_words && width == 0 && 4 * length <= 57 && block <= n - previous) {
      // Consecutive positions (every gap is 1) that all lie in the vector:
      // four entries per word load; an entry of magnitude 0 (never sent) is
      // looked for again, to report the first, only when the block has one.
      float* const dst = out.data() + previous;
      const std::uint64_t field_mask = BitWriter::mask(length);
      std::uint32_t zero = 0;
      std::uint64_t r = 0;
      const auto decode_field = [&](std::uint64_t field) __attribute__((always_inline)) {
        const auto q = std::bit_cast<std::uint32_t>(magnitudes[field >> 1]);
        zero |= static_cast<std::uint32_t>(q == 0);
        dst[r++] = std::bit_cast<float>(q | static_cast<std::uint32_t>((field & 1u) << 31));
      };
      while (r + 4 <= block) {  // decode_field advances r
        const std::uint64_t word = word_at(position);
        position += 4 * static_cast<std::uint64_t>(length);
        decode_field(word & field_mask);
        decode_field((word >> length) & field_mask);
        decode_field((word >> (2 * length)) & field_mask);
        decode_field((word >> (3 * length)) & field_mask);
      }
      while (r < block) {
        decode_field(word_at(position) & field_mask);
        position += static_cast<std::uint64_t>(length);
      }
      if (zero != 0) [[unlikely]] {
        for (r = 0; dst[r] != 0.0f; ++r) {
        }
        throw_bad_entry(e + r, "has magnitude 0, which is never sent");
      }
      previous += block;
      e += block;
    } else if (in_words) {
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
