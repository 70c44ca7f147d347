// Portable SIMD for the measured hot kernels (quantizers, bit packing, bulk
// random draws): GCC/Clang vector extensions over 8 or 16 lanes of 32 bits.
//
// Every clone performs the same lane-wise IEEE operations in the same order,
// so results are bit-identical whichever clone runs. The AVX-512 clone may
// contract a * b + c into a fused multiply-add: kernels must not contain such
// a pattern unless the product is exact (float squares summed in double are).
//
// Portable kernels avoid vector comparisons and narrowing conversions: GCC
// lowers those element by element when the vector is wider than the target's
// registers. Masks come from arithmetic shifts instead (FEDSIM_SIMD_MASK_LT).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace fedsim::simd {

// Kernels work on chunks of kChunk coordinates (the unit of their tails and
// of the random draws), as one 16-lane vector or two 8-lane ones.
constexpr int kChunk = 16;
using u32x16 = std::uint32_t __attribute__((vector_size(64)));
using i32x16 = std::int32_t __attribute__((vector_size(64)));
using f32x16 = float __attribute__((vector_size(64)));
using u64x8 = std::uint64_t __attribute__((vector_size(64)));
using u32x8 = std::uint32_t __attribute__((vector_size(32)));
using i32x8 = std::int32_t __attribute__((vector_size(32)));
using f32x8 = float __attribute__((vector_size(32)));
using u64x4 = std::uint64_t __attribute__((vector_size(32)));
using f64x4 = double __attribute__((vector_size(32)));
using u64x2 = std::uint64_t __attribute__((vector_size(16)));
using u8x8 = std::uint8_t __attribute__((vector_size(8)));
using u16x8 = std::uint16_t __attribute__((vector_size(16)));

// Vector shapes for kernels templated on the width. GCC compiles 64-byte
// vectors well for AVX-512 and for SSE (four registers) but poorly for AVX2,
// so AVX2 code uses 8 lanes. (The vector types must be named here: a
// vector_size depending on a template parameter is silently dropped.)
struct Lanes16 {
  static constexpr int kLanes = 16;
  using u32 = u32x16;
  using i32 = i32x16;
  using f32 = f32x16;
  using u64 = u64x8;
};
struct Lanes8 {
  static constexpr int kLanes = 8;
  using u32 = u32x8;
  using i32 = i32x8;
  using f32 = f32x8;
  using u64 = u64x4;
};

// -1 where a < b, else 0; valid when a and b are both in [0, 2^31).
#define FEDSIM_SIMD_MASK_LT(a, b) (((a) - (b)) >> 31)

}  // namespace fedsim::simd

// Two ways to build for several instruction sets:
// - FEDSIM_SIMD_DISPATCH on a function compiles it for the build's baseline
//   and, on x86-64, also for AVX2 and AVX-512; the loader picks the best.
//   Such functions use vectors of at most 32 bytes (see Lanes8).
// - For kernels whose best code differs by instruction set (vector width;
//   narrowing conversions are one instruction on AVX-512 and element by
//   element elsewhere), FEDSIM_TARGET_AVX2 / FEDSIM_TARGET_AVX512 mark
//   explicit variants and best_isa() chooses among them at run time.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(FEDSIM_NO_SIMD_DISPATCH)
#define FEDSIM_SIMD_X86 1
#define FEDSIM_TARGET_AVX2 __attribute__((target("avx2")))
#define FEDSIM_TARGET_AVX512 __attribute__((target("avx512f")))
#if defined(__AVX512F__)
#define FEDSIM_SIMD_DISPATCH
#else
#define FEDSIM_SIMD_DISPATCH __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#else
#define FEDSIM_SIMD_X86 0
#define FEDSIM_TARGET_AVX2
#define FEDSIM_TARGET_AVX512
#define FEDSIM_SIMD_DISPATCH
#endif

namespace fedsim::simd {

enum class Isa { kBaseline, kAvx2, kAvx512 };

// The widest instruction set this CPU and OS support (checked once), for
// the explicit variants. The environment variable FEDSIM_SIMD=avx2 or
// FEDSIM_SIMD=baseline caps it, to compare or test the narrower variants on
// a wider machine (results are the same, see above).
inline Isa best_isa() {
#if FEDSIM_SIMD_X86
  static const Isa isa = [] {
    __builtin_cpu_init();
    Isa best = Isa::kBaseline;
    if (__builtin_cpu_supports("avx512f"))
      best = Isa::kAvx512;
    else if (__builtin_cpu_supports("avx2"))
      best = Isa::kAvx2;
    const char* cap = std::getenv("FEDSIM_SIMD");
    if (cap != nullptr && std::strcmp(cap, "baseline") == 0) best = Isa::kBaseline;
    if (cap != nullptr && std::strcmp(cap, "avx2") == 0 && best == Isa::kAvx512) best = Isa::kAvx2;
    return best;
  }();
  return isa;
#else
  return Isa::kBaseline;
#endif
}

}  // namespace fedsim::simd
