#include "core/compression/natural_compression.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/coding/bit_io.h"
#include "core/base/lane_rng.h"
#include "core/base/simd.h"

namespace fedsim {
namespace {

static_assert(std::endian::native == std::endian::little, "the 9-bit packing below assumes little endian");

using simd::u64x2;
using simd::u64x4;
constexpr std::size_t kChunk = simd::kChunk;
constexpr std::size_t kChunkBytes = 9 * kChunk / 8;  // 16 codes of 9 bits
constexpr std::size_t kBlock = 1024;                 // coordinates per batch of random words
static_assert(kBlock % kChunk == 0);

// m (a multiple of 16) coordinates, V::kLanes at a time: float bits + 23
// random bits -> 9-bit code (exponent | sign << 8) and the reconstruction.
// Rounds the exponent up when random23 < mantissa (P = mantissa / 2^23);
// 2^128 is not a float, so an exponent rounded up to 255 is clamped to 254.
// Returns non-zero when an input is not finite (exponent 255).
template <class V>
[[gnu::always_inline]] inline std::uint32_t natural_impl(const float* x, const std::uint32_t* random, std::size_t m,
                                                         float* rec, std::uint8_t* dst) {
  using u32 = typename V::u32;
  using i32 = typename V::i32;
  using u64 = typename V::u64;
  constexpr std::size_t kLanes = V::kLanes;
  i32 bad = {};
  for (std::size_t i = 0; i < m; i += kLanes, dst += 9 * kLanes / 8) {
    u32 xb, r;
    std::memcpy(&xb, x + i, sizeof xb);
    std::memcpy(&r, random + i, sizeof r);
    const i32 exponent = (i32)((xb >> 23) & 0xFFu);
    const i32 mantissa = (i32)(xb & 0x7FFFFFu);
    // x == 255 exactly when (x ^ 255) - 1 is negative, for x in [0, 256).
    bad |= ((exponent ^ 255) - 1) >> 31;
    i32 e = exponent - FEDSIM_SIMD_MASK_LT((i32)(r >> 9), mantissa);
    e += ((e ^ 255) - 1) >> 31;
    const u32 sign = xb >> 31;
    const u32 code = (u32)e | (sign << 8);
    const u32 rec_bits = ((u32)e << 23) | (sign << 31);
    std::memcpy(rec + i, &rec_bits, sizeof rec_bits);
    // Merge neighbours: 2 codes in 18 bits, 4 in 36, then 8 in 72 (9 bytes).
    u64 pairs = (u64)code;
    pairs = (pairs & 0x1FFu) | ((pairs >> 32) << 9);
    if constexpr (kLanes == 16) {
      const u64x4 quads = __builtin_shufflevector(pairs, pairs, 0, 2, 4, 6) |
                          (__builtin_shufflevector(pairs, pairs, 1, 3, 5, 7) << 18);
      const std::uint64_t lo0 = quads[0] | (quads[1] << 36);
      const std::uint64_t lo1 = quads[2] | (quads[3] << 36);
      std::memcpy(dst, &lo0, 8);
      dst[8] = static_cast<std::uint8_t>(quads[1] >> 28);
      std::memcpy(dst + 9, &lo1, 8);
      dst[17] = static_cast<std::uint8_t>(quads[3] >> 28);
    } else {
      const u64x2 quads =
          __builtin_shufflevector(pairs, pairs, 0, 2) | (__builtin_shufflevector(pairs, pairs, 1, 3) << 18);
      const std::uint64_t lo = quads[0] | (quads[1] << 36);
      std::memcpy(dst, &lo, 8);
      dst[8] = static_cast<std::uint8_t>(quads[1] >> 28);
    }
  }
  std::uint32_t any = 0;
  for (std::size_t j = 0; j < kLanes; ++j) any |= static_cast<std::uint32_t>(bad[j]);
  return any;
}

// As in qsgd.cc: AVX-512 and the baseline with 16 lanes, AVX2 with 8.
FEDSIM_TARGET_AVX512 std::uint32_t natural_avx512(const float* x, const std::uint32_t* random, std::size_t m,
                                                  float* rec, std::uint8_t* dst) {
  return natural_impl<simd::Lanes16>(x, random, m, rec, dst);
}
FEDSIM_TARGET_AVX2 std::uint32_t natural_avx2(const float* x, const std::uint32_t* random, std::size_t m, float* rec,
                                              std::uint8_t* dst) {
  return natural_impl<simd::Lanes8>(x, random, m, rec, dst);
}
std::uint32_t natural_baseline(const float* x, const std::uint32_t* random, std::size_t m, float* rec,
                               std::uint8_t* dst) {
  return natural_impl<simd::Lanes16>(x, random, m, rec, dst);
}

using NaturalKernel = std::uint32_t (*)(const float*, const std::uint32_t*, std::size_t, float*, std::uint8_t*);

NaturalKernel natural_kernel_for_this_cpu() {
  static const NaturalKernel kernel =
      simd::pick<NaturalKernel>(simd::best_isa(), natural_avx512, natural_avx2, natural_baseline);
  return kernel;
}

inline float nat_value(std::uint32_t code) { return std::bit_cast<float>(((code & 0xFFu) << 23) | ((code >> 8) << 31)); }

}  // namespace

void NaturalCompression::encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  if (v.size() != dim_ || reconstructed.size() != dim_)
    throw std::invalid_argument("natural: vector size mismatch");
  const std::size_t start = out.size();
  out.resize(start + payload_bytes(dim_));
  std::uint8_t* dst = out.data() + start;
  const float* x = v.data();
  float* rec = reconstructed.data();
  const NaturalKernel natural_chunks = natural_kernel_for_this_cpu();
  LaneRng lanes(rng);
  std::uint64_t random_words[kBlock / 2];
  const auto* random = reinterpret_cast<const std::uint32_t*>(random_words);
  std::uint32_t bad = 0;
  for (std::size_t c0 = 0; c0 < dim_; c0 += kBlock) {
    const std::size_t m = std::min(kBlock, dim_ - c0);
    lanes.fill(random_words, (m + kChunk - 1) / kChunk);
    const std::size_t full = m - m % kChunk;
    bad |= natural_chunks(x + c0, random, full, rec + c0, dst + c0 / 8 * 9);
    if (full < m) {
      // The last partial chunk, zero-padded: zeros code to 0, so the padding
      // bits of the final byte come out zero.
      const std::size_t tail = m - full;
      float x_pad[kChunk] = {}, rec_pad[kChunk];
      std::uint8_t dst_pad[kChunkBytes];
      std::memcpy(x_pad, x + c0 + full, tail * sizeof(float));
      bad |= natural_chunks(x_pad, random + full, kChunk, rec_pad, dst_pad);
      std::memcpy(rec + c0 + full, rec_pad, tail * sizeof(float));
      std::memcpy(dst + (c0 + full) / 8 * 9, dst_pad, (9 * tail + 7) / 8);
    }
  }
  if (bad) {
    out.resize(start);
    throw std::invalid_argument("natural: non-finite input");
  }
}

void NaturalCompression::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  if (out.size() != dim_) throw std::invalid_argument("natural: output size mismatch");
  if (payload.size() != payload_bytes(dim_))
    throw DecodeError("natural: payload has " + std::to_string(payload.size()) + " bytes, expected " +
                      std::to_string(payload_bytes(dim_)));
  const std::uint8_t* src = payload.data();
  float* dst = out.data();
  std::uint32_t bad = 0;
  std::size_t i = 0;
  for (; i + 8 <= dim_; i += 8, src += 9) {
    std::uint64_t lo;
    std::memcpy(&lo, src, 8);
    for (int k = 0; k < 7; ++k) {
      const auto c = static_cast<std::uint32_t>(lo >> (9 * k)) & 0x1FFu;
      bad |= (c & 0xFFu) == 0xFFu ? 1u : 0u;
      dst[i + k] = nat_value(c);
    }
    const std::uint32_t c7 = static_cast<std::uint32_t>(lo >> 63) | (static_cast<std::uint32_t>(src[8]) << 1);
    bad |= (c7 & 0xFFu) == 0xFFu ? 1u : 0u;
    dst[i + 7] = nat_value(c7);
  }
  if (i < dim_) {
    BitReader r(payload.subspan(static_cast<std::size_t>(src - payload.data())));
    for (; i < dim_; ++i) {
      const auto c = static_cast<std::uint32_t>(r.read(9));
      bad |= (c & 0xFFu) == 0xFFu ? 1u : 0u;
      dst[i] = nat_value(c);
    }
    r.expect_end();
  }
  if (bad) throw DecodeError("natural: exponent field 255 (infinity / NaN) in payload");
}

namespace {

FEDSIM_REGISTER_STAGE(
    "natural", StageKind::kQuantizer,
    [](const Config&, StageContext& ctx) -> std::unique_ptr<Compressor> {
      return std::make_unique<NaturalCompression>(ctx.dim);
    },
    "natural compression C_nat (Horvath et al. 2019): stochastic rounding to powers of two, 9 bits; unbiased");

}  // namespace
}  // namespace fedsim
