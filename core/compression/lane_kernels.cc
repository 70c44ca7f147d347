#include "core/compression/lane_kernels.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace fedsim {
namespace {

using simd::f32x8;
using simd::i32x8;
using simd::u32x8;

// Bit 31 of 8 words -> one byte (lane j -> bit j).
[[gnu::always_inline]] inline void pack_top_bits_impl(const std::uint32_t* words, std::size_t n, std::uint8_t* out) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    u32x8 w;
    std::memcpy(&w, words + i, sizeof w);
    out[i / 8] = lane_bits_to_byte(w >> 31);
  }
  if (i < n) {
    std::uint8_t last = 0;
    for (std::size_t j = i; j < n; ++j) last = static_cast<std::uint8_t>(last | ((words[j] >> 31) << (j - i)));
    out[i / 8] = last;
  }
}
FEDSIM_TARGET_AVX2 void pack_top_bits_avx2(const std::uint32_t* words, std::size_t n, std::uint8_t* out) {
  pack_top_bits_impl(words, n, out);
}
void pack_top_bits_baseline(const std::uint32_t* words, std::size_t n, std::uint8_t* out) {
  pack_top_bits_impl(words, n, out);
}

[[gnu::always_inline]] inline void expand_sign_bits_impl(const std::uint8_t* bits, std::size_t n, float magnitude,
                                                         bool invert, float* out) {
  const std::uint32_t mag = std::bit_cast<std::uint32_t>(magnitude) & 0x7FFFFFFFu;
  const std::uint32_t flip = invert ? 0x80000000u : 0u;
  const u32x8 shift = {31, 30, 29, 28, 27, 26, 25, 24};
  const u32x8 base = u32x8{} + mag;
  const u32x8 flip_v = u32x8{} + flip;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const u32x8 b = ((u32x8{} + bits[i / 8]) << shift) & 0x80000000u;
    const u32x8 value = base | (b ^ flip_v);
    std::memcpy(out + i, &value, sizeof value);
  }
  for (; i < n; ++i) {
    const std::uint32_t b = static_cast<std::uint32_t>((bits[i / 8] >> (i % 8)) & 1u) << 31;
    out[i] = std::bit_cast<float>(mag | (b ^ flip));
  }
}
FEDSIM_TARGET_AVX2 void expand_sign_bits_avx2(const std::uint8_t* bits, std::size_t n, float magnitude, bool invert,
                                              float* out) {
  expand_sign_bits_impl(bits, n, magnitude, invert, out);
}
void expand_sign_bits_baseline(const std::uint8_t* bits, std::size_t n, float magnitude, bool invert, float* out) {
  expand_sign_bits_impl(bits, n, magnitude, invert, out);
}

[[gnu::always_inline]] inline void logistic_impl(const float* z, std::size_t n, float* out) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    f32x8 v;
    std::memcpy(&v, z + i, sizeof v);
    logistic8(v);
    std::memcpy(out + i, &v, sizeof v);
  }
  if (i < n) {
    f32x8 v = {};
    std::memcpy(&v, z + i, (n - i) * sizeof(float));
    logistic8(v);
    std::memcpy(out + i, &v, (n - i) * sizeof(float));
  }
}
FEDSIM_TARGET_AVX2 void logistic_avx2(const float* z, std::size_t n, float* out) { logistic_impl(z, n, out); }
void logistic_baseline(const float* z, std::size_t n, float* out) { logistic_impl(z, n, out); }

// Codes of kMaxPackWidth bits or fewer are packed eight at a time: 8 codes
// of `width` bits are `width` whole bytes.
constexpr int kMaxPackWidth = 15;
constexpr std::size_t kPackCodes = 1024;  // codes per packed chunk

// Packs codes[0, m) (m a multiple of 8, each below 2^width, width <=
// kMaxPackWidth) into m * width / 8 bytes of out, LSB first, as one stream;
// writes up to 16 bytes past them. Neighbours merge in 64-bit lanes: 2
// codes per lane, then 4, then 8 in two words.
[[gnu::always_inline]] inline void pack_codes_impl(const std::uint32_t* codes, std::size_t m, int width,
                                                   std::uint8_t* out) {
  using simd::u64x2;
  using simd::u64x4;
  const u64x4 pair_mask = u64x4{} + ((std::uint64_t{1} << (2 * width)) - 1);
  const int w = width;
  for (std::size_t i = 0; i < m; i += 8) {
    u32x8 c;
    std::memcpy(&c, codes + i, sizeof c);
    u64x4 pairs = (u64x4)c;
    pairs = (pairs | (pairs >> (32 - w))) & pair_mask;
    const u64x2 quads =
        __builtin_shufflevector(pairs, pairs, 0, 2) | (__builtin_shufflevector(pairs, pairs, 1, 3) << (2 * w));
    const std::uint64_t lo = quads[0] | (quads[1] << (4 * w));
    const std::uint64_t hi = (quads[1] >> 1) >> (63 - 4 * w);  // quads[1] >> (64 - 4w), 0 for w <= 8
    std::memcpy(out, &lo, 8);
    std::memcpy(out + 8, &hi, 8);
    out += w;
  }
}
FEDSIM_TARGET_AVX2 void pack_codes_avx2(const std::uint32_t* codes, std::size_t m, int width, std::uint8_t* out) {
  pack_codes_impl(codes, m, width, out);
}
void pack_codes_baseline(const std::uint32_t* codes, std::size_t m, int width, std::uint8_t* out) {
  pack_codes_impl(codes, m, width, out);
}

void write_codes_packed(BitWriter& w, const std::uint32_t* codes, std::size_t m, int width, simd::Isa isa) {
  const auto pack = simd::pick(isa, pack_codes_avx2, pack_codes_avx2, pack_codes_baseline);
  std::uint8_t bytes[kPackCodes / 8 * kMaxPackWidth + 16];
  std::size_t k = 0;
  for (const std::size_t whole = m - m % 8; k < whole;) {
    const std::size_t chunk = std::min(kPackCodes, whole - k);
    pack(codes + k, chunk, width, bytes);
    w.write_stream(bytes, static_cast<std::uint64_t>(chunk) * static_cast<std::uint64_t>(width));
    k += chunk;
  }
  for (; k < m; ++k) w.write(codes[k], width);
}

void write_codes_words(BitWriter& w, const std::uint32_t* codes, std::size_t m, int width) {
  constexpr std::size_t kWords = 512;
  std::uint64_t words[kWords];
  std::size_t k = 0;
  while (k < m) {
    // Each chunk fills at most kWords words, then goes to w at once.
    const std::size_t chunk = std::min<std::size_t>(m - k, (kWords - 1) * 64 / static_cast<std::size_t>(width));
    std::size_t full = 0;
    std::uint64_t acc = 0;
    int filled = 0;  // < 64
    for (std::size_t e = k + chunk; k < e; ++k) {
      const std::uint64_t bits = codes[k];
      const int before = filled;
      acc |= bits << before;
      filled += width;
      if (filled >= 64) {
        words[full++] = acc;
        filled -= 64;
        acc = (bits >> 1) >> (63 - before);
      }
    }
    w.write_stream(reinterpret_cast<const std::uint8_t*>(words), 64 * static_cast<std::uint64_t>(full));
    w.write(acc, filled);
  }
}

}  // namespace

void write_codes(BitWriter& w, const std::uint32_t* codes, std::size_t m, int width, simd::Isa isa) {
  if (width <= kMaxPackWidth)
    write_codes_packed(w, codes, m, width, isa);
  else
    write_codes_words(w, codes, m, width);
}
void write_codes(BitWriter& w, const std::uint32_t* codes, std::size_t m, int width) {
  static const simd::Isa isa = simd::best_isa();
  write_codes(w, codes, m, width, isa);
}

void pack_top_bits(const std::uint32_t* words, std::size_t n, std::uint8_t* out, simd::Isa isa) {
  simd::pick(isa, pack_top_bits_avx2, pack_top_bits_avx2, pack_top_bits_baseline)(words, n, out);
}
void pack_top_bits(const std::uint32_t* words, std::size_t n, std::uint8_t* out) {
  static const auto kernel = simd::pick(simd::best_isa(), pack_top_bits_avx2, pack_top_bits_avx2, pack_top_bits_baseline);
  kernel(words, n, out);
}

void expand_sign_bits(const std::uint8_t* bits, std::size_t n, float magnitude, bool invert, float* out,
                      simd::Isa isa) {
  simd::pick(isa, expand_sign_bits_avx2, expand_sign_bits_avx2, expand_sign_bits_baseline)(bits, n, magnitude,
                                                                                            invert, out);
}
void expand_sign_bits(const std::uint8_t* bits, std::size_t n, float magnitude, bool invert, float* out) {
  static const auto kernel =
      simd::pick(simd::best_isa(), expand_sign_bits_avx2, expand_sign_bits_avx2, expand_sign_bits_baseline);
  kernel(bits, n, magnitude, invert, out);
}

void logistic(const float* z, std::size_t n, float* out, simd::Isa isa) {
  simd::pick(isa, logistic_avx2, logistic_avx2, logistic_baseline)(z, n, out);
}
void logistic(const float* z, std::size_t n, float* out) {
  static const auto kernel = simd::pick(simd::best_isa(), logistic_avx2, logistic_avx2, logistic_baseline);
  kernel(z, n, out);
}

}  // namespace fedsim
