#include "core/compression/qsgd.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/coding/bit_io.h"
#include "core/base/lane_rng.h"
#include "core/base/simd.h"
#include "core/compression/lane_kernels.h"
#include "core/compression/vector_norms.h"

namespace fedsim {
namespace {

using simd::i32x8;
using simd::u16x8;
using simd::u64x2;
using simd::u64x4;
using simd::u8x8;
using simd::f32x8;
constexpr std::size_t kChunk = simd::kChunk;

// Coordinates quantized per pass (random draws and codes buffered in L1).
constexpr std::size_t kBlock = 1024;
static_assert(kBlock % kChunk == 0);
constexpr std::uint32_t kMaxLevels = 1u << 24;


int bit_width_of(std::uint32_t x) { return static_cast<int>(std::bit_width(x)); }

// Scale |v_i| -> a_i = |v_i| * s / norm without overflowing when the norm is
// tiny: both factors pre-multiplied by an exact power of two.
struct Scaling {
  float pre = 1.0f;
  float scale = 0.0f;
};
Scaling make_scaling(float norm, std::uint32_t levels) {
  Scaling sc;
  sc.scale = static_cast<float>(levels) / norm;
  if (!std::isfinite(sc.scale)) {
    sc.pre = 0x1.0p64f;
    sc.scale = static_cast<float>(levels) / (norm * sc.pre);
  }
  return sc;
}

struct BlockParams {
  float pre, scale, levels_f, unit;
  std::int32_t levels;
};

// Quantizes m (a multiple of 16) coordinates, V::kLanes at a time:
//   a = min(|x| * pre * scale, s), level = floor(a) + [u < a - floor(a)],
//   u = (random >> 8) * 2^-24 uniform on [0, 1) in steps of 2^-24,
//   code = s + sgn(x) * level, rec = sgn(x) * level * unit (+0 when level = 0).
// kPackWidth = 0 stores the codes; 2, 4 or 8 stores them as a bit stream of
// that width instead (kPackWidth bytes per 8 coordinates). kNarrow packs
// with narrowing conversions (single instructions on AVX-512). Every shape
// and way gives the same values and bytes.
// All comparisons are on non-negative values, done as integer subtraction
// (see simd.h); a, u and the fractions are non-negative floats, whose bit
// patterns order like their values.
template <int kPackWidth, class V, bool kNarrow>
[[gnu::always_inline]] inline void quantize_impl(const BlockParams& p, const float* x, const std::uint32_t* random,
                                                 std::size_t m, float* rec, std::uint32_t* codes,
                                                 std::uint8_t* packed) {
  using u32 = typename V::u32;
  using i32 = typename V::i32;
  using f32 = typename V::f32;
  using u64 = typename V::u64;
  constexpr std::size_t kLanes = V::kLanes;
  const f32 pre = f32{} + p.pre;
  const f32 scale = f32{} + p.scale;
  const i32 levels_bits = i32{} + std::bit_cast<std::int32_t>(p.levels_f);
  const i32 levels = i32{} + p.levels;
  const f32 unit = f32{} + p.unit;
  for (std::size_t i = 0; i < m; i += kLanes) {
    u32 xb, r;
    std::memcpy(&xb, x + i, sizeof xb);
    std::memcpy(&r, random + i, sizeof r);
    // Vector casts reinterpret bits; __builtin_convertvector converts values.
    const f32 scaled = ((f32)(xb & 0x7FFFFFFFu) * pre) * scale;
    const i32 below = FEDSIM_SIMD_MASK_LT((i32)scaled, levels_bits);
    const f32 a = (f32)(((i32)scaled & below) | (levels_bits & ~below));
    const i32 floor_a = __builtin_convertvector(a, i32);
    const f32 frac = a - __builtin_convertvector(floor_a, f32);
    const f32 u = __builtin_convertvector((i32)(r >> 8), f32) * 0x1.0p-24f;
    const i32 level = floor_a - FEDSIM_SIMD_MASK_LT((i32)u, (i32)frac);
    const i32 nonzero = FEDSIM_SIMD_MASK_LT(i32{}, level);
    const i32 neg = (i32)(xb >> 31) & nonzero;  // 0 or 1
    const i32 code = levels + ((level ^ -neg) + neg);
    const f32 magnitude = __builtin_convertvector(level, f32) * unit;
    const i32 rec_bits = (i32)magnitude | (neg << 31);
    std::memcpy(rec + i, &rec_bits, sizeof rec_bits);
    if constexpr (kPackWidth == 0) {
      std::memcpy(codes + i, &code, sizeof code);
    } else {
      // Merge neighbours until the lanes' codes form one stream: 2w bits in
      // each 64-bit lane, then 4w, 8w (and 16w for 16 lanes).
      constexpr int w = kPackWidth;
      std::uint8_t* dst = packed + i / 8 * w;
      u64 pairs = (u64)code;
      pairs = (pairs | (pairs >> (32 - w))) & ((std::uint64_t{1} << (2 * w)) - 1);
      if constexpr (kNarrow) {
        static_assert(kLanes == 16);
        if constexpr (w == 8) {
          const u16x8 all = __builtin_convertvector(pairs, u16x8);
          std::memcpy(dst, &all, 16);
        } else {
          const u8x8 bytes = __builtin_convertvector(pairs, u8x8);
          std::uint64_t all;
          std::memcpy(&all, &bytes, 8);
          if constexpr (w == 2) {
            all = (all | (all >> 4)) & 0x00FF00FF00FF00FFULL;
            all = (all | (all >> 8)) & 0x0000FFFF0000FFFFULL;
            all = (all | (all >> 16)) & 0x00000000FFFFFFFFULL;
          }
          std::memcpy(dst, &all, 2 * w);
        }
      } else if constexpr (kLanes == 16) {
        const u64x4 quads = __builtin_shufflevector(pairs, pairs, 0, 2, 4, 6) |
                            (__builtin_shufflevector(pairs, pairs, 1, 3, 5, 7) << (2 * w));
        const u64x2 octs =
            __builtin_shufflevector(quads, quads, 0, 2) | (__builtin_shufflevector(quads, quads, 1, 3) << (4 * w));
        if constexpr (w == 8) {
          std::memcpy(dst, &octs, 16);
        } else {
          const std::uint64_t all = octs[0] | (octs[1] << (8 * w));
          std::memcpy(dst, &all, 2 * w);
        }
      } else {
        const u64x2 quads =
            __builtin_shufflevector(pairs, pairs, 0, 2) | (__builtin_shufflevector(pairs, pairs, 1, 3) << (2 * w));
        const std::uint64_t all = quads[0] | (quads[1] << (4 * w));
        std::memcpy(dst, &all, w);
      }
    }
  }
}

// AVX-512: 16 lanes and narrowing packs. AVX2: 8 lanes. The baseline (four
// SSE registers per 16 lanes) does best with 16.
template <int W>
FEDSIM_TARGET_AVX512 void quantize_avx512(const BlockParams& p, const float* x, const std::uint32_t* random,
                                          std::size_t m, float* rec, std::uint32_t* codes, std::uint8_t* packed) {
  quantize_impl<W, simd::Lanes16, true>(p, x, random, m, rec, codes, packed);
}
template <int W>
FEDSIM_TARGET_AVX2 void quantize_avx2(const BlockParams& p, const float* x, const std::uint32_t* random,
                                      std::size_t m, float* rec, std::uint32_t* codes, std::uint8_t* packed) {
  quantize_impl<W, simd::Lanes8, false>(p, x, random, m, rec, codes, packed);
}
template <int W>
void quantize_baseline(const BlockParams& p, const float* x, const std::uint32_t* random, std::size_t m, float* rec,
                       std::uint32_t* codes, std::uint8_t* packed) {
  quantize_impl<W, simd::Lanes16, false>(p, x, random, m, rec, codes, packed);
}

using QuantizeKernel = void (*)(const BlockParams&, const float*, const std::uint32_t*, std::size_t, float*,
                                std::uint32_t*, std::uint8_t*);

template <int W>
QuantizeKernel kernel_for_this_cpu() {
  static const QuantizeKernel kernel =
      simd::pick<QuantizeKernel>(simd::best_isa(), quantize_avx512<W>, quantize_avx2<W>, quantize_baseline<W>);
  return kernel;
}

// pack_width 0: codes only (elias and widths other than 2, 4, 8).
QuantizeKernel pick_kernel(int pack_width) {
  switch (pack_width) {
    case 2: return kernel_for_this_cpu<2>();
    case 4: return kernel_for_this_cpu<4>();
    case 8: return kernel_for_this_cpu<8>();
    default: return kernel_for_this_cpu<0>();
  }
}

// Any m: the last partial chunk of 16 runs through the same kernel on a
// zero-padded copy, so that every coordinate is computed the same way.
void quantize_block(QuantizeKernel kernel, int pack_width, const BlockParams& p, const float* x,
                    const std::uint32_t* random, std::size_t m, float* rec, std::uint32_t* codes,
                    std::uint8_t* packed) {
  const std::size_t full = m - m % kChunk;
  kernel(p, x, random, full, rec, codes, packed);
  if (full == m) return;
  const std::size_t tail = m - full;
  float x_pad[kChunk] = {}, rec_pad[kChunk];
  std::uint32_t codes_pad[kChunk];
  std::uint8_t packed_pad[2 * 8];
  std::memcpy(x_pad, x + full, tail * sizeof(float));
  kernel(p, x_pad, random + full, kChunk, rec_pad, codes_pad, packed_pad);
  std::memcpy(rec + full, rec_pad, tail * sizeof(float));
  if (pack_width == 0)
    std::memcpy(codes + full, codes_pad, tail * sizeof(std::uint32_t));
  else
    std::memcpy(packed + full / 8 * pack_width, packed_pad, 2 * static_cast<std::size_t>(pack_width));
}

// Elias entries with a short gap and level, as {bits, length << 32}, so
// that an entry's length is the sum of its parts' high halves.
// Gap g < 256: omega(g). Signed level d, |d| <= 256, at d + 256: the sign bit
// then omega(|d|). Taken from BitWriter itself, so the same bits.
constexpr std::size_t kShortGap = 256;
constexpr std::size_t kShortLevel = 256;
std::uint64_t written_bits(void (*write)(BitWriter&, std::uint64_t), std::uint64_t value) {
  Bytes bytes;
  std::uint64_t length;
  {
    BitWriter w(bytes);
    write(w, value);
    length = w.bit_count();
  }
  std::uint64_t bits = 0;
  std::memcpy(&bits, bytes.data(), bytes.size());
  return bits | (length << 32);
}
const std::array<std::uint64_t, kShortGap>& gap_codes() {
  static const auto table = [] {
    std::array<std::uint64_t, kShortGap> t{};
    for (std::uint64_t g = 1; g < kShortGap; ++g)
      t[g] = written_bits([](BitWriter& w, std::uint64_t v) { w.write_omega(v); }, g);
    return t;
  }();
  return table;
}
const std::array<std::uint64_t, 2 * kShortLevel>& level_codes() {
  static const auto table = [] {
    std::array<std::uint64_t, 2 * kShortLevel> t{};
    for (std::uint64_t i = 0; i < 2 * kShortLevel; ++i) {
      if (i == kShortLevel) continue;  // level 0 is not coded
      t[i] = written_bits(
          [](BitWriter& w, std::uint64_t v) {
            const bool neg = v < kShortLevel;
            w.write_bit(neg);
            w.write_omega(neg ? kShortLevel - v : v - kShortLevel);
          },
          i);
    }
    return t;
  }();
  return table;
}

// A bucket's Elias entries, gathered in a local byte buffer (kept apart
// from a BitWriter's state, which every store into its byte buffer may
// alias) and handed to `out` in whole words, so that `out` stays word-aligned.
struct EntryWriter {
  static constexpr std::size_t kBytes = 4096;
  explicit EntryWriter(BitWriter& out) : out(out) {}
  EntryWriter(const EntryWriter&) = delete;  // bits points into buffer
  EntryWriter& operator=(const EntryWriter&) = delete;
  // Hands over the whole words buffered; `reserve` bytes stay free.
  void make_room(std::size_t reserve) {
    if (bits.byte + reserve <= kBytes) return;
    const std::size_t whole = bits.byte / 8 * 8;
    out.write_stream(buffer, 8 * static_cast<std::uint64_t>(whole));
    std::memmove(buffer, buffer + whole, bits.byte - whole);
    bits.byte -= whole;
  }
  // Everything, bits in flight included (the end of the bucket, or a long entry next).
  void finish() {
    out.write_stream(buffer, 8 * static_cast<std::uint64_t>(bits.byte));
    out.write(bits.acc, bits.filled);
    bits = FastBitWriter{buffer};
  }

  BitWriter& out;
  std::uint8_t buffer[kBytes + 8];
  FastBitWriter bits{buffer};  // bits.byte: bytes of buffer finished; acc holds the next `filled` < 8 bits
};

// Bit k of out[k / 8] set iff codes[k] != s (level k non-zero), for k < m;
// the bits of the last byte past m are zero.
[[gnu::always_inline]] inline void nonzero_bits_impl(const std::uint32_t* codes, std::size_t m, std::uint32_t s,
                                                     std::uint8_t* out) {
  using simd::u32x8;
  const u32x8 sv = u32x8{} + s;
  std::size_t k = 0;
  for (; k + 8 <= m; k += 8) {
    u32x8 c;
    std::memcpy(&c, codes + k, sizeof c);
    // Codes are below 2^25: one of c - s and s - c is negative iff c != s.
    out[k / 8] = lane_bits_to_byte(((c - sv) | (sv - c)) >> 31);
  }
  if (k < m) {
    std::uint8_t last = 0;
    for (std::size_t j = k; j < m; ++j) last = static_cast<std::uint8_t>(last | ((codes[j] != s ? 1u : 0u) << (j - k)));
    out[k / 8] = last;
  }
}
FEDSIM_TARGET_AVX2 void nonzero_bits_avx2(const std::uint32_t* codes, std::size_t m, std::uint32_t s,
                                          std::uint8_t* out) {
  nonzero_bits_impl(codes, m, s, out);
}
void nonzero_bits_baseline(const std::uint32_t* codes, std::size_t m, std::uint32_t s, std::uint8_t* out) {
  nonzero_bits_impl(codes, m, s, out);
}

// Elias coding of one block's non-zeros: omega(gap), sign bit, omega(level)
// each. The non-zeros are found from a bit mask of 64 coordinates at a time
// (with s ~ sqrt(n) about half of the coordinates are zero, at random, which
// a branch per coordinate would mispredict), and a short entry is two table
// look-ups and a store, without a branch per byte or word.
// `last` is the 1-based position of the previous non-zero in the bucket.
// Returns the number of non-zeros.
[[gnu::noinline]] std::size_t code_entries(EntryWriter& ew, const std::uint32_t* codes, std::size_t m,
                                           std::size_t c0, std::uint32_t s, std::size_t& last_nonzero) {
  // 64 short entries take at most 64 * 31 bits; the last stores 8 bytes.
  constexpr std::size_t kGroupBytes = 64 * 31 / 8 + 16;
  static const auto find_nonzeros = simd::pick(simd::best_isa(), nonzero_bits_avx2, nonzero_bits_avx2,
                                               nonzero_bits_baseline);
  const std::uint64_t* const gaps = gap_codes().data();
  const std::uint64_t* const levels = level_codes().data();
  std::uint8_t nonzero[kBlock / 8 + 8];
  find_nonzeros(codes, m, s, nonzero);
  std::size_t last = last_nonzero;
  std::size_t count = 0;
  // Signed level + kShortLevel, as an unsigned index.
  const std::uint32_t bias = s - static_cast<std::uint32_t>(kShortLevel);
  FastBitWriter w = ew.bits;  // in registers while coding
  for (std::size_t k0 = 0; k0 < m; k0 += 64) {
    std::uint64_t mask = 0;
    std::memcpy(&mask, nonzero + k0 / 8, std::min<std::size_t>(8, (m - k0 + 7) / 8));
    if (w.byte + kGroupBytes > EntryWriter::kBytes) {
      ew.bits = w;
      ew.make_room(kGroupBytes);
      w = ew.bits;
    }
    count += static_cast<std::size_t>(std::popcount(mask));
    const std::size_t base = c0 + k0 + 1;
    for (; mask != 0; mask &= mask - 1) {
      const std::size_t at = static_cast<std::size_t>(std::countr_zero(mask));
      const std::size_t gap = base + at - last;
      last = base + at;
      const std::uint32_t index = codes[k0 + at] - bias;  // wraps when the level is far below -256
      if ((gap | (index >> 1)) < kShortGap) [[likely]] {
        const std::uint64_t g = gaps[gap];
        const std::uint64_t l = levels[index];
        const std::uint64_t bits = static_cast<std::uint32_t>(g) | (static_cast<std::uint64_t>(static_cast<std::uint32_t>(l)) << (g >> 32));
        w.put(bits, static_cast<int>((g + l) >> 32));  // at most 31 bits
      } else {
        ew.bits = w;
        ew.finish();
        const std::uint32_t diff = codes[k0 + at] - s;
        const std::uint32_t neg = diff >> 31;
        ew.out.write_omega(gap);
        ew.out.write_bit(neg != 0);
        ew.out.write_omega((diff ^ (0u - neg)) + neg);
        w = ew.bits;
      }
    }
  }
  ew.bits = w;
  last_nonzero = last;
  return count;
}

// Codes -> values, for the fixed coding. Returns false when a code is above 2s.
// Lanes8 on every variant (two SSE registers on the baseline).
[[gnu::always_inline]] inline bool dequantize_impl(const std::uint32_t* codes, std::size_t m, std::int32_t s,
                                                   float unit, float* out) {
  const i32x8 levels = i32x8{} + s;
  const i32x8 max_code = i32x8{} + 2 * s;
  const f32x8 unit_v = f32x8{} + unit;
  i32x8 bad = {};
  std::size_t i = 0;
  for (; i + 8 <= m; i += 8) {
    i32x8 code;
    std::memcpy(&code, codes + i, sizeof code);
    bad |= FEDSIM_SIMD_MASK_LT(max_code, code);
    const i32x8 negmask = FEDSIM_SIMD_MASK_LT(code, levels);
    const i32x8 level = ((code - levels) ^ negmask) - negmask;
    const f32x8 magnitude = __builtin_convertvector(level, f32x8) * unit_v;
    const i32x8 bits = (i32x8)magnitude | (negmask << 31);
    std::memcpy(out + i, &bits, sizeof bits);
  }
  bool ok = true;
  for (std::size_t j = 0; j < 8; ++j) ok = ok && bad[j] == 0;
  for (; i < m; ++i) {
    const std::uint32_t code = codes[i];
    ok = ok && code <= 2u * static_cast<std::uint32_t>(s);
    const std::uint32_t neg = code < static_cast<std::uint32_t>(s) ? 1u : 0u;
    const std::uint32_t level = neg ? static_cast<std::uint32_t>(s) - code : code - static_cast<std::uint32_t>(s);
    out[i] = std::bit_cast<float>(std::bit_cast<std::uint32_t>(static_cast<float>(level) * unit) | (neg << 31));
  }
  return ok;
}
FEDSIM_TARGET_AVX512 bool dequantize_avx512(const std::uint32_t* codes, std::size_t m, std::int32_t s, float unit,
                                            float* out) {
  return dequantize_impl(codes, m, s, unit, out);
}
FEDSIM_TARGET_AVX2 bool dequantize_avx2(const std::uint32_t* codes, std::size_t m, std::int32_t s, float unit,
                                        float* out) {
  return dequantize_impl(codes, m, s, unit, out);
}
bool dequantize_baseline(const std::uint32_t* codes, std::size_t m, std::int32_t s, float unit, float* out) {
  return dequantize_impl(codes, m, s, unit, out);
}

bool dequantize_codes(const std::uint32_t* codes, std::size_t m, std::int32_t s, float unit, float* out) {
  static const auto kernel = simd::pick(simd::best_isa(), dequantize_avx512, dequantize_avx2, dequantize_baseline);
  return kernel(codes, m, s, unit, out);
}

// Whole elias entries (omega(gap), sign, omega(level)) of at most
// kOmegaPeekBits bits, indexed by the next kOmegaPeekBits bits of the stream:
// gap | level << 8 | sign << 16 | length << 24, or 0 when the entry there is
// longer. With s ~ sqrt(n) nearly every entry fits.
const std::array<std::uint32_t, 1u << BitReader::kOmegaPeekBits>& entry_table() {
  static const auto table = [] {
    std::array<std::uint32_t, 1u << BitReader::kOmegaPeekBits> t{};
    const auto& omega = BitReader::kOmegaDecodeTable;
    constexpr std::uint32_t kMask = (1u << BitReader::kOmegaPeekBits) - 1;
    for (std::uint32_t bits = 0; bits <= kMask; ++bits) {
      const std::uint32_t g = omega[bits];
      const std::uint32_t g_length = g >> 8;
      if (g_length == 0 || g_length + 1 >= BitReader::kOmegaPeekBits) continue;
      const std::uint32_t l = omega[(bits >> (g_length + 1)) & kMask];
      const std::uint32_t length = g_length + 1 + (l >> 8);
      if ((l >> 8) == 0 || length > BitReader::kOmegaPeekBits) continue;
      t[bits] = (g & 0xFFu) | ((l & 0xFFu) << 8) | (((bits >> g_length) & 1u) << 16) | (length << 24);
    }
    return t;
  }();
  return table;
}

}  // namespace

Qsgd::Qsgd(std::size_t dim, std::uint32_t levels, std::size_t bucket_size, Norm norm, Coding coding)
    : dim_(dim),
      levels_(levels),
      bucket_size_(bucket_size == 0 || bucket_size > dim ? std::max<std::size_t>(dim, 1) : bucket_size),
      norm_(norm),
      coding_(coding),
      fixed_width_(bit_width_of(2 * levels)) {
  if (levels < 1 || levels > kMaxLevels) throw std::invalid_argument("qsgd: levels out of range");
  random_.resize(kBlock / 2);
  codes_.resize(kBlock);
  packed_.resize(kBlock * 8 / 8);
}

void Qsgd::encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  if (v.size() != dim_ || reconstructed.size() != dim_) throw std::invalid_argument("qsgd: vector size mismatch");
  const std::uint32_t s = levels_;
  const float s_f = static_cast<float>(s);
  const std::size_t n_buckets = dim_ == 0 ? 0 : (dim_ + bucket_size_ - 1) / bucket_size_;
  if (coding_ == Coding::kFixed)
    out.reserve(out.size() + n_buckets * 4 + (dim_ * static_cast<std::size_t>(fixed_width_) + 7) / 8);
  else
    out.reserve(out.size() + n_buckets * 8 + dim_ / 8 + 16);

  const int width = fixed_width_;
  const int pack_width = coding_ == Coding::kFixed && (width == 2 || width == 4 || width == 8) ? width : 0;
  const QuantizeKernel kernel = pick_kernel(pack_width);
  LaneRng lanes(rng);
  std::uint32_t* const codes = codes_.data();
  const auto* const random = reinterpret_cast<const std::uint32_t*>(random_.data());

  BitWriter w(out);
  for (std::size_t b0 = 0; b0 < dim_; b0 += bucket_size_) {
    const std::size_t len = std::min(bucket_size_, dim_ - b0);
    const float* x = v.data() + b0;
    float* rec = reconstructed.data() + b0;
    const float norm = bucket_norm(norm_ == Norm::kL2, x, len, "qsgd");
    w.write_f32(norm);
    if (norm == 0.0f) {
      std::fill(rec, rec + len, 0.0f);
      continue;
    }
    const Scaling sc = make_scaling(norm, s);
    const BlockParams params{sc.pre, sc.scale, s_f, norm / s_f, static_cast<std::int32_t>(s)};
    std::size_t nonzeros = 0;
    std::size_t last = 0;  // 1-based position of the previous non-zero
    entries_.clear();
    BitWriter entries(entries_);
    EntryWriter entry_writer(entries);
    for (std::size_t c0 = 0; c0 < len; c0 += kBlock) {
      const std::size_t m = std::min(kBlock, len - c0);
      // Two 32-bit halves per word, 16 coordinates per step of the lanes.
      lanes.fill(random_.data(), (m + kChunk - 1) / kChunk);
      quantize_block(kernel, pack_width, params, x + c0, random, m, rec + c0, codes, packed_.data());
      if (pack_width != 0) {
        w.write_stream(packed_.data(), static_cast<std::uint64_t>(m) * static_cast<std::uint64_t>(pack_width));
      } else if (coding_ == Coding::kFixed) {
        write_codes(w, codes, m, width);  // fixed coding at a width other than 2, 4 or 8
      } else {
        // Elias coding needs the bucket's non-zero count first: code the
        // entries apart and append them once the bucket is done.
        nonzeros += code_entries(entry_writer, codes, m, c0, s, last);
      }
    }
    if (coding_ == Coding::kFixed) continue;
    entry_writer.finish();
    const std::uint64_t entry_bits = entries.bit_count();
    entries.flush();
    w.write_omega(nonzeros + 1);
    w.write_stream(entries_.data(), entry_bits);
  }
}

void Qsgd::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  if (out.size() != dim_) throw std::invalid_argument("qsgd: output size mismatch");
  const std::uint32_t s = levels_;
  const float s_f = static_cast<float>(s);
  BitReader r(payload);
  for (std::size_t b0 = 0; b0 < dim_; b0 += bucket_size_) {
    const std::size_t len = std::min(bucket_size_, dim_ - b0);
    float* dst = out.data() + b0;
    const float norm = read_bucket_norm(r, "qsgd");
    if (norm == 0.0f) {
      std::fill(dst, dst + len, 0.0f);
      continue;
    }
    const float unit = norm / s_f;
    if (coding_ == Coding::kFixed) {
      for (std::size_t c0 = 0; c0 < len; c0 += kBlock) {
        const std::size_t m = std::min(kBlock, len - c0);
        r.read_codes(fixed_width_, m, codes_.data());
        if (!dequantize_codes(codes_.data(), m, static_cast<std::int32_t>(s), unit, dst + c0)) {
          const std::uint32_t bad = *std::find_if(codes_.begin(), codes_.begin() + static_cast<long>(m),
                                                  [&](std::uint32_t c) { return c > 2u * s; });
          throw DecodeError("qsgd: level code " + std::to_string(bad) + " out of range");
        }
      }
      continue;
    }
    std::fill(dst, dst + len, 0.0f);
    const std::uint64_t count_plus_one = r.read_omega();
    if (count_plus_one - 1 > len)
      throw DecodeError("qsgd: " + std::to_string(count_plus_one - 1) + " non-zeros in a bucket of " +
                        std::to_string(len));
    std::uint64_t pos = 0;
    constexpr int kPeek = 2 * BitReader::kOmegaPeekBits + 1;
    const auto& omega = BitReader::kOmegaDecodeTable;
    const auto& entries = entry_table();
    constexpr std::uint32_t kPeekMask = (1u << BitReader::kOmegaPeekBits) - 1;
    for (std::uint64_t k = 0; k + 1 < count_plus_one; ++k) {
      // Gap, sign and level with one table look-up when the entry is short,
      // two when both codes are, else bit by bit.
      std::uint64_t gap, level;
      std::uint32_t neg;
      int available;
      const std::uint64_t bits = r.peek(kPeek, available);
      const std::uint32_t e = entries[bits & kPeekMask];
      const std::uint32_t g = omega[bits & kPeekMask];
      const int g_length = static_cast<int>(g >> 8);
      const std::uint32_t l = omega[(bits >> (g_length + 1)) & kPeekMask];
      const int total = g_length + 1 + static_cast<int>(l >> 8);
      if (e != 0 && static_cast<int>(e >> 24) <= available) {
        gap = e & 0xFFu;
        level = (e >> 8) & 0xFFu;
        neg = (e >> 16) & 1u;
        r.skip(static_cast<int>(e >> 24));
      } else if (g_length > 0 && (l >> 8) > 0 && total <= available) {
        gap = g & 0xFFu;
        neg = static_cast<std::uint32_t>(bits >> g_length) & 1u;
        level = l & 0xFFu;
        r.skip(total);
      } else {
        gap = r.read_omega();
        neg = 0;
        level = 0;
        if (gap <= len - pos) {  // else rejected below, before reading on
          neg = r.read_bit() ? 1u : 0u;
          level = r.read_omega();
        }
      }
      if (gap > len - pos) throw DecodeError("qsgd: non-zero position beyond the bucket");
      pos += gap;
      if (level > s) throw DecodeError("qsgd: level " + std::to_string(level) + " above s = " + std::to_string(s));
      dst[pos - 1] =
          std::bit_cast<float>(std::bit_cast<std::uint32_t>(static_cast<float>(level) * unit) | (neg << 31));
    }
  }
  r.expect_end();
}

namespace {

std::unique_ptr<Compressor> make_qsgd(const Config& cfg, StageContext& ctx) {
  const auto levels = static_cast<std::uint32_t>(cfg.get_int("levels", 15, 1, kMaxLevels));
  const auto bucket = static_cast<std::size_t>(cfg.get_int("bucket", 0, 0, std::int64_t{1} << 40));
  const std::string norm = cfg.get_choice("norm", "l2", {"l2", "max"});
  const std::string coding = cfg.get_choice("coding", "elias", {"elias", "fixed"});
  return std::make_unique<Qsgd>(ctx.dim, levels, bucket, norm == "l2" ? Qsgd::Norm::kL2 : Qsgd::Norm::kMax,
                                coding == "elias" ? Qsgd::Coding::kElias : Qsgd::Coding::kFixed);
}

FEDSIM_REGISTER_STAGE("qsgd", StageKind::kQuantizer, make_qsgd,
                      "QSGD (Alistarh et al. 2017): s levels, per-bucket norm, Elias or fixed-width coding; unbiased");

}  // namespace
}  // namespace fedsim
