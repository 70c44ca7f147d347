#include "core/compression/vector_norms.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/coding/bit_io.h"
#include "core/base/errors.h"
#include "core/base/simd.h"

namespace fedsim {
namespace {

using simd::f32x8;
using simd::f64x4;
using simd::i32x8;
using f32x4 = float __attribute__((vector_size(16)));
using f64x8 = double __attribute__((vector_size(64)));
constexpr std::size_t kChunk = simd::kChunk;

// ||v||_2 accumulated in double. Lane j of the accumulators sums the squares
// of coordinate j (mod 16) of each chunk; the lanes are added at the end in a
// fixed order. The squares of floats are exact in double, so the sum does not
// depend on whether the compiler fuses multiply and add (it does on AVX-512).
// Two shapes with equal results: GCC splits the float -> double conversion
// of an 8-wide vector well only on AVX-512.
template <bool kWide>
[[gnu::always_inline]] inline double l2_norm_impl(const float* v, std::size_t n) {
  std::size_t i = 0;
  double lanes[16];
  if constexpr (kWide) {
    f64x8 acc[2] = {};
    for (; i + kChunk <= n; i += kChunk) {
      for (int h = 0; h < 2; ++h) {
        f32x8 x;
        std::memcpy(&x, v + i + 8 * h, sizeof x);
        const f64x8 d = __builtin_convertvector(x, f64x8);
        acc[h] += d * d;
      }
    }
    std::memcpy(lanes, acc, sizeof lanes);
  } else {
    f64x4 acc[4] = {};
    for (; i + kChunk <= n; i += kChunk) {
      for (int q = 0; q < 4; ++q) {
        f32x4 x;
        std::memcpy(&x, v + i + 4 * q, sizeof x);
        const f64x4 d = __builtin_convertvector(x, f64x4);
        acc[q] += d * d;
      }
    }
    std::memcpy(lanes, acc, sizeof lanes);
  }
  double sum = 0.0;
  for (int j = 0; j < 8; ++j) sum += lanes[j] + lanes[8 + j];
  for (; i < n; ++i) sum += static_cast<double>(v[i]) * static_cast<double>(v[i]);
  return std::sqrt(sum);
}
FEDSIM_TARGET_AVX512 double l2_norm_avx512(const float* v, std::size_t n) { return l2_norm_impl<true>(v, n); }
FEDSIM_TARGET_AVX2 double l2_norm_avx2(const float* v, std::size_t n) { return l2_norm_impl<false>(v, n); }
double l2_norm_baseline(const float* v, std::size_t n) { return l2_norm_impl<false>(v, n); }

// max|v_i| on the bit patterns: for non-negative floats the integer order is
// the numeric order, and a NaN anywhere yields a NaN (caught by the caller).
// Lanes8 on every variant (AVX2's width; two SSE registers on the baseline).
[[gnu::always_inline]] inline float max_abs_impl(const float* v, std::size_t n) {
  i32x8 m = {};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    i32x8 x;
    std::memcpy(&x, v + i, sizeof x);
    x &= 0x7FFFFFFF;
    const i32x8 less = FEDSIM_SIMD_MASK_LT(m, x);
    m = (m & ~less) | (x & less);
  }
  std::uint32_t best = 0;
  for (std::size_t j = 0; j < 8; ++j) best = std::max(best, static_cast<std::uint32_t>(m[j]));
  for (; i < n; ++i) best = std::max(best, std::bit_cast<std::uint32_t>(v[i]) & 0x7FFFFFFFu);
  return std::bit_cast<float>(best);
}
FEDSIM_TARGET_AVX512 float max_abs_avx512(const float* v, std::size_t n) { return max_abs_impl(v, n); }
FEDSIM_TARGET_AVX2 float max_abs_avx2(const float* v, std::size_t n) { return max_abs_impl(v, n); }
float max_abs_baseline(const float* v, std::size_t n) { return max_abs_impl(v, n); }

}  // namespace

double l2_norm(const float* v, std::size_t n, simd::Isa isa) {
  return simd::pick(isa, l2_norm_avx512, l2_norm_avx2, l2_norm_baseline)(v, n);
}

double l2_norm(const float* v, std::size_t n) {
  static const auto kernel = simd::pick(simd::best_isa(), l2_norm_avx512, l2_norm_avx2, l2_norm_baseline);
  return kernel(v, n);
}

float max_abs(const float* v, std::size_t n, simd::Isa isa) {
  return simd::pick(isa, max_abs_avx512, max_abs_avx2, max_abs_baseline)(v, n);
}

float max_abs(const float* v, std::size_t n) {
  static const auto kernel = simd::pick(simd::best_isa(), max_abs_avx512, max_abs_avx2, max_abs_baseline);
  return kernel(v, n);
}

float bucket_norm(bool l2, const float* v, std::size_t n, const char* scheme) {
  const float norm = l2 ? static_cast<float>(l2_norm(v, n)) : max_abs(v, n);
  if (!std::isfinite(norm)) throw std::invalid_argument(std::string(scheme) + ": non-finite input or norm overflow");
  return norm;
}

float read_bucket_norm(BitReader& r, const char* scheme) {
  const float norm = r.read_f32();
  if (!std::isfinite(norm) || std::signbit(norm))
    throw DecodeError(std::string(scheme) + ": bucket norm " + std::to_string(norm) +
                      " is not a finite non-negative number");
  return norm;
}

}  // namespace fedsim
