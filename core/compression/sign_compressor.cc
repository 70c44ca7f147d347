#include "core/compression/sign_compressor.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include <algorithm>
#include <bit>
#include <cstring>

#include "core/coding/bit_io.h"
#include "core/compression/lane_kernels.h"

namespace fedsim {
namespace {

using simd::i32x8;

// u_i = v_i, or fl(v_i + memory_i) with error feedback (kFeedback); words_i
// = the sign of u_i < 0 in bit 31, rec_i = +-scale (+scale for -0); with
// error feedback memory_i = fl(u_i - rec_i).
template <bool kFeedback>
[[gnu::always_inline]] inline void sign_words_impl(const float* v, float* memory, std::size_t m, float scale,
                                                   std::uint32_t* words, float* rec) {
  const std::int32_t scale_bits = std::bit_cast<std::int32_t>(scale);
  std::size_t i = 0;
  for (; i + 8 <= m; i += 8) {
    simd::f32x8 u;
    std::memcpy(&u, v + i, sizeof u);
    if constexpr (kFeedback) {
      simd::f32x8 e;
      std::memcpy(&e, memory + i, sizeof e);
      u += e;
    }
    const i32x8 x = (i32x8)u;
    const i32x8 nonzero = FEDSIM_SIMD_MASK_LT(i32x8{}, x & 0x7FFFFFFF);
    const i32x8 negative = x & nonzero & static_cast<std::int32_t>(0x80000000u);
    const i32x8 value = negative | scale_bits;
    std::memcpy(words + i, &negative, sizeof negative);
    std::memcpy(rec + i, &value, sizeof value);
    if constexpr (kFeedback) {
      const simd::f32x8 e = u - (simd::f32x8)value;
      std::memcpy(memory + i, &e, sizeof e);
    }
  }
  for (; i < m; ++i) {
    const float u = kFeedback ? v[i] + memory[i] : v[i];
    const bool negative = u < 0.0f;
    words[i] = negative ? 0x80000000u : 0u;
    rec[i] = negative ? -scale : scale;
    if constexpr (kFeedback) memory[i] = u - rec[i];
  }
}
FEDSIM_TARGET_AVX2 void sign_words_avx2(const float* v, float* memory, std::size_t m, float scale,
                                        std::uint32_t* words, float* rec) {
  sign_words_impl<false>(v, memory, m, scale, words, rec);
}
void sign_words_baseline(const float* v, float* memory, std::size_t m, float scale, std::uint32_t* words,
                         float* rec) {
  sign_words_impl<false>(v, memory, m, scale, words, rec);
}
FEDSIM_TARGET_AVX2 void sign_words_feedback_avx2(const float* v, float* memory, std::size_t m, float scale,
                                                 std::uint32_t* words, float* rec) {
  sign_words_impl<true>(v, memory, m, scale, words, rec);
}
void sign_words_feedback_baseline(const float* v, float* memory, std::size_t m, float scale,
                                  std::uint32_t* words, float* rec) {
  sign_words_impl<true>(v, memory, m, scale, words, rec);
}

// The sign code of u = v, or of u = fl(v + memory) leaving memory = fl(u -
// reconstructed) when memory is not null (error feedback fused: v and the
// memory are read twice, the memory written once, u never stored).
void encode_signs(std::span<const float> v, float* memory, Bytes& out, std::span<float> reconstructed) {
  const std::size_t n = v.size();
  // ||u||_1 summed in double in index order (the scale's definition).
  double l1 = 0.0;
  if (memory == nullptr) {
    for (float x : v) l1 += std::fabs(static_cast<double>(x));
  } else {
    for (std::size_t i = 0; i < n; ++i) l1 += std::fabs(static_cast<double>(v[i] + memory[i]));
  }
  const float scale = n == 0 ? 0.0f : static_cast<float>(l1 / static_cast<double>(n));
  if (!std::isfinite(scale)) throw std::invalid_argument("sign: input is not finite or its mean |v_i| overflows float");
  const std::size_t start = out.size();
  out.reserve(start + SignCompressor::payload_bytes(n));
  put_f32(out, scale);
  out.resize(start + SignCompressor::payload_bytes(n), 0);
  std::uint8_t* bits = out.data() + start + 4;
  // Bit i set when u_i < 0 (not for -0): the sign bit of a word that is
  // also non-zero when the sign is cleared. rec_i = +-scale with that sign.
  static const auto plain = simd::pick(simd::best_isa(), sign_words_avx2, sign_words_avx2, sign_words_baseline);
  static const auto feedback =
      simd::pick(simd::best_isa(), sign_words_feedback_avx2, sign_words_feedback_avx2, sign_words_feedback_baseline);
  const auto kernel = memory == nullptr ? plain : feedback;
  std::uint32_t words[kLaneBlock];
  for (std::size_t c0 = 0; c0 < n; c0 += kLaneBlock) {
    const std::size_t m = std::min(kLaneBlock, n - c0);
    kernel(v.data() + c0, memory == nullptr ? nullptr : memory + c0, m, scale, words, reconstructed.data() + c0);
    pack_top_bits(words, m, bits + c0 / 8);
  }
}

}  // namespace

void SignCompressor::encode(std::span<const float> v, Rng&, Bytes& out, std::span<float> reconstructed) {
  encode_signs(v, nullptr, out, reconstructed);
}

void SignCompressor::encode_with_memory(std::span<const float> v, std::span<float> memory, Rng&, Bytes& out,
                                        std::span<float> reconstructed) {
  if (memory.size() != v.size() || reconstructed.size() != v.size())
    throw std::invalid_argument("sign: vector, memory and reconstruction sizes differ");
  encode_signs(v, memory.data(), out, reconstructed);
}

void SignCompressor::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  const std::size_t n = out.size();
  if (payload.size() != payload_bytes(n))
    throw DecodeError("sign payload has " + std::to_string(payload.size()) + " bytes, expected " +
                      std::to_string(payload_bytes(n)));
  ByteReader header(payload.first(4));
  const float scale = header.f32();
  if (!std::isfinite(scale) || !(scale >= 0.0f))
    throw DecodeError("sign payload has scale " + std::to_string(scale) + ", expected a finite value >= 0");
  const std::uint8_t* bits = payload.data() + 4;
  if (n % 8 != 0 && (bits[n / 8] >> (n % 8)) != 0) throw DecodeError("sign payload has non-zero padding bits");
  expand_sign_bits(bits, n, scale, false, out.data());
}

namespace {

FEDSIM_REGISTER_STAGE(
    "sign", StageKind::kQuantizer,
    [](const Config&, StageContext&) -> std::unique_ptr<Compressor> { return std::make_unique<SignCompressor>(); },
    "scaled sign (||v||_1/n) sgn(v_i): 1 bit per coordinate + one float; biased, use with error_feedback");

}  // namespace
}  // namespace fedsim
