// Shared pieces of the vectorised quantizers (TernGrad, natural dithering,
// sign, FedVote, threshold): the block size of their passes, fixed-width
// code streams written in bulk, sign-bit streams packed and expanded eight
// coordinates at a time, and FedVote's P(+1) vectorised.
//
// Every function gives the same bytes and floats on every SIMD path
// (core/base/simd.h); the kernels run 8 lanes of 32 bits, as AVX2 does best,
// and an AVX-512 CPU runs the AVX2 variant.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

#include "core/base/simd.h"
#include "core/coding/bit_io.h"

namespace fedsim {

// Coordinates per pass of the kernels (their random words and codes stay in L1).
constexpr std::size_t kLaneBlock = 1024;

// Appends codes[0, m), each below 2^width (1 <= width <= 32), as one
// LSB-first stream of `width`-bit fields: what m calls of w.write(code,
// width) would write.
void write_codes(BitWriter& w, const std::uint32_t* codes, std::size_t m, int width);

// The byte whose bit j is lane j of `bits` (each lane 0 or 1), by shifts and
// a shuffle reduction (no movemask in portable code). Inlined into the
// kernels' _avx2 / _baseline variants.
[[gnu::always_inline]] inline std::uint8_t lane_bits_to_byte(simd::u32x8 bits) {
  const simd::u32x8 shift = {0, 1, 2, 3, 4, 5, 6, 7};
  simd::u32x8 b = bits << shift;
  b |= __builtin_shufflevector(b, b, 4, 5, 6, 7, 0, 1, 2, 3);
  b |= __builtin_shufflevector(b, b, 2, 3, 0, 1, 6, 7, 4, 5);
  b |= __builtin_shufflevector(b, b, 1, 0, 3, 2, 5, 4, 7, 6);
  return static_cast<std::uint8_t>(b[0]);
}

// Sign bits: bit i of the LSB-first stream is bit 31 of words[i]. Writes
// ceil(n / 8) bytes to out (padding bits zero).
void pack_top_bits(const std::uint32_t* words, std::size_t n, std::uint8_t* out);

// out[i] = magnitude with its sign bit set to (bit i of bits) XOR invert.
void expand_sign_bits(const std::uint8_t* bits, std::size_t n, float magnitude, bool invert, float* out);

// The same on the variant for `isa` (a narrower one if the CPU lacks it), for
// the tests that compare the variants.
void write_codes(BitWriter& w, const std::uint32_t* codes, std::size_t m, int width, simd::Isa isa);
void pack_top_bits(const std::uint32_t* words, std::size_t n, std::uint8_t* out, simd::Isa isa);
void expand_sign_bits(const std::uint8_t* bits, std::size_t n, float magnitude, bool invert, float* out,
                      simd::Isa isa);

// P(+1) of FedVote's binary vote, (1 + tanh(z / 2)) / 2 = 1 / (1 + exp(-z)),
// for z = 2 k h: out[i] = logistic(z[i]) within 2e-6 absolute of the exact
// value (tested), 0 for a NaN z; |z| is capped at 80 (logistic(-80) =
// 1.8e-35 stands for 0, logistic(80) rounds to 1).
void logistic(const float* z, std::size_t n, float* out);
void logistic(const float* z, std::size_t n, float* out, simd::Isa isa);

// Replaces the 8 lanes of v by their logistic(), in registers, for kernels
// that fuse it with their other passes (FedVote's encoder); inlined into
// their _avx2 / _baseline variants, it rounds as logistic() does. (v is a
// reference: a vector passed or returned by value warns -Wpsabi.)
//
// exp(w), w = -z clamped to [-80, 80], as 2^k exp(r): k = round(w / ln 2),
// r = w - k ln 2 (Cody-Waite, ln 2 in two parts, the first exact times any
// |k| <= 128), |r| <= ln 2 / 2, and exp(r) by its Taylor polynomial of
// degree 7 (truncation below 1e-8). Only adds, multiplies and one division:
// no fused multiply-add on any path, so every variant rounds alike.
// Comparisons are integer ones on magnitudes (simd.h).
[[gnu::always_inline]] inline void logistic8(simd::f32x8& v) {
  using simd::f32x8;
  using simd::i32x8;
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693145751953125f;
  constexpr float kLn2Lo = 1.42860682030941723e-6f;
  const i32x8 clamp_bits = i32x8{} + std::bit_cast<std::int32_t>(80.0f);
  const i32x8 inf_bits = i32x8{} + 0x7F800000;
  const i32x8 zb = (i32x8)v;
  const i32x8 mag = zb & 0x7FFFFFFF;
  const i32x8 is_nan = FEDSIM_SIMD_MASK_LT(inf_bits, mag);
  const i32x8 small = FEDSIM_SIMD_MASK_LT(mag, clamp_bits);
  const i32x8 clamped = (mag & small) | (clamp_bits & ~small);
  // w = -z, clamped.
  const f32x8 w = (f32x8)(clamped | (~zb & static_cast<std::int32_t>(0x80000000u)));
  // k = round(w / ln 2) as floor(x + 0.5), by truncating a positive value.
  const f32x8 x = w * kLog2e + 128.5f;
  const i32x8 k = __builtin_convertvector(x, i32x8) - 128;
  const f32x8 kf = __builtin_convertvector(k, f32x8);
  const f32x8 r = (w - kf * kLn2Hi) - kf * kLn2Lo;
  f32x8 p = r * (1.0f / 5040.0f) + (1.0f / 720.0f);
  p = p * r + (1.0f / 120.0f);
  p = p * r + (1.0f / 24.0f);
  p = p * r + (1.0f / 6.0f);
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const f32x8 e = p * (f32x8)((k + 127) << 23);
  const f32x8 result = 1.0f / (1.0f + e);
  v = (f32x8)((i32x8)result & ~is_nan);
}

}  // namespace fedsim
