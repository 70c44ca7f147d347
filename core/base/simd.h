// Portable SIMD for the measured hot kernels (quantizers, bit packing, bulk
// random draws): GCC/Clang vector extensions over 8 or 16 lanes of 32 bits.
//
// Every variant performs the same lane-wise IEEE operations in the same
// order, so results are bit-identical whichever variant runs. The AVX-512
// variant may contract a * b + c into a fused multiply-add: kernels must not
// contain such a pattern unless the product is exact (float squares summed in
// double are).
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

// Building for several instruction sets: a kernel is written once (an
// always-inline template or function) and instantiated as explicit variants,
// `name_avx512` marked FEDSIM_TARGET_AVX512, `name_avx2` marked
// FEDSIM_TARGET_AVX2 and `name_baseline` for the build's baseline; pick()
// chooses one at run time, once per kernel (a function pointer in a static).
// tools/check_isa.sh checks that 256-bit and 512-bit instructions occur only
// in functions so named.
//
// Not target_clones: clang 14 (the fuzz build) silently compiled such a
// function, max_abs, declared without the attribute in its header, as one
// AVX-512 function without resolver or fallback, which died with SIGILL on
// AVX2 CPUs. Explicit variants behave the same with every compiler and
// sanitizer, and FEDSIM_SIMD caps all of them.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(FEDSIM_NO_SIMD_DISPATCH)
#define FEDSIM_SIMD_X86 1
#define FEDSIM_TARGET_AVX2 __attribute__((target("avx2")))
#define FEDSIM_TARGET_AVX512 __attribute__((target("avx512f")))
#else
#define FEDSIM_SIMD_X86 0
#define FEDSIM_TARGET_AVX2
#define FEDSIM_TARGET_AVX512
#endif

namespace fedsim::simd {

enum class Isa { kBaseline, kAvx2, kAvx512 };

// The widest instruction set this CPU and OS support (checked once).
inline Isa cpu_isa() {
#if FEDSIM_SIMD_X86
  static const Isa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return Isa::kAvx512;
    if (__builtin_cpu_supports("avx2")) return Isa::kAvx2;
    return Isa::kBaseline;
  }();
  return isa;
#else
  return Isa::kBaseline;
#endif
}

// cpu_isa(), capped by the environment variable FEDSIM_SIMD=avx2 or
// FEDSIM_SIMD=baseline (read once) to compare or test the narrower variants
// on a wider machine (results are the same, see above). The kernels use this.
inline Isa best_isa() {
  static const Isa isa = [] {
    Isa best = cpu_isa();
    const char* cap = std::getenv("FEDSIM_SIMD");
    if (cap != nullptr && std::strcmp(cap, "baseline") == 0) best = Isa::kBaseline;
    if (cap != nullptr && std::strcmp(cap, "avx2") == 0 && best == Isa::kAvx512) best = Isa::kAvx2;
    return best;
  }();
  return isa;
}

// "avx512", "avx2" or "baseline" (as FEDSIM_SIMD spells them).
inline const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    case Isa::kBaseline: break;
  }
  return "baseline";
}

// The variant for `isa`, or for the widest narrower one this CPU runs when
// it lacks `isa`. Kernels call it once: `static const auto kernel =
// simd::pick(simd::best_isa(), f_avx512, f_avx2, f_baseline);`.
template <class Fn>
Fn pick(Isa isa, Fn avx512, Fn avx2, Fn baseline) {
  if (isa > cpu_isa()) isa = cpu_isa();
  switch (isa) {
    case Isa::kAvx512: return avx512;
    case Isa::kAvx2: return avx2;
    case Isa::kBaseline: break;
  }
  return baseline;
}

}  // namespace fedsim::simd
