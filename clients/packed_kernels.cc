#include "clients/packed_kernels.h"

// axpy_codes must perform the same float operations on every path: no fused
// multiply-add in the AVX-512 variant (core/base/simd.h).
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <algorithm>
#include <cassert>
#include <cstring>

#if FEDSIM_SIMD_X86
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace fedsim::packed {

namespace {

constexpr std::size_t kCodesPerChunk = 16;

// Scalar kernels on whole bytes (the padding codes are zero): the tails of the
// vector kernels, and every path on a non-x86 build.
template <int B>
[[gnu::always_inline]] inline std::uint64_t dot_bytes_scalar(const std::uint8_t* a, const std::uint8_t* b,
                                                             std::size_t bytes) {
  constexpr unsigned kMask = (1u << B) - 1u;
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < bytes; ++i)
    for (int s = 0; s < 8; s += B) total += ((a[i] >> s) & kMask) * ((b[i] >> s) & kMask);
  return total;
}
template <int B>
[[gnu::always_inline]] inline std::uint64_t sum_bytes_scalar(const std::uint8_t* a, std::size_t bytes) {
  constexpr unsigned kMask = (1u << B) - 1u;
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < bytes; ++i)
    for (int s = 0; s < 8; s += B) total += (a[i] >> s) & kMask;
  return total;
}
template <int B>
[[gnu::always_inline]] inline void axpy_scalar(float alpha, float beta, const std::uint8_t* codes, std::size_t first,
                                               std::size_t n, float* y) {
  for (std::size_t i = first; i < n; ++i) {
    const std::size_t bit = i * B;
    const float k = static_cast<float>((codes[bit >> 3] >> (bit & 7)) & ((1u << B) - 1u));
    float t = k * beta;
    t = t + alpha;
    y[i] = y[i] + t;
  }
}

#if FEDSIM_SIMD_X86
// Integer dot products: the bit planes of each byte (mask after a 16-bit
// shift) multiplied with pmaddubsw (unsigned x signed bytes, pairs summed in
// 16 bits: codes < 16 fit) or, for 8-bit codes, widened to 16 bits and
// multiplied with pmaddwd; pairs summed into 32-bit lanes by pmaddwd; the lanes
// flushed into 64 bits every kFlushBlocks blocks (at most 4 * 255^2 per lane
// and block: 4096 blocks stay below 2^31). Sums with psadbw (64-bit lanes).
// The order of the additions differs from path to path; the sums are exact
// integers, so the results do not.
constexpr std::size_t kFlushBlocks = 4096;

template <int B>
[[gnu::always_inline]] inline std::uint64_t dot_sse(const std::uint8_t* a, const std::uint8_t* b, std::size_t bytes) {
  const std::size_t blocks = bytes / 16;
  const __m128i ones = _mm_set1_epi16(1);
  const __m128i mask = _mm_set1_epi8(static_cast<char>((1u << B) - 1u));
  std::uint64_t total = 0;
  for (std::size_t k = 0; k < blocks;) {
    const std::size_t end = std::min(blocks, k + kFlushBlocks);
    __m128i acc = _mm_setzero_si128();
    for (; k < end; ++k) {
      const __m128i va = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + 16 * k));
      const __m128i vb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 16 * k));
      if constexpr (B == 8) {
        const __m128i zero = _mm_setzero_si128();
        acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_unpacklo_epi8(va, zero), _mm_unpacklo_epi8(vb, zero)));
        acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_unpackhi_epi8(va, zero), _mm_unpackhi_epi8(vb, zero)));
      } else {
        __m128i p = _mm_setzero_si128();
        for (int s = 0; s < 8; s += B) {
          const __m128i pa = _mm_and_si128(_mm_srli_epi16(va, s), mask);
          const __m128i pb = _mm_and_si128(_mm_srli_epi16(vb, s), mask);
          p = _mm_add_epi16(p, _mm_maddubs_epi16(pa, pb));
        }
        acc = _mm_add_epi32(acc, _mm_madd_epi16(p, ones));
      }
    }
    alignas(16) std::int32_t lanes[4];
    _mm_store_si128(reinterpret_cast<__m128i*>(lanes), acc);
    for (std::int32_t v : lanes) total += static_cast<std::uint32_t>(v);
  }
  return total + dot_bytes_scalar<B>(a + 16 * blocks, b + 16 * blocks, bytes - 16 * blocks);
}

template <int B>
[[gnu::always_inline]] inline std::uint64_t sum_sse(const std::uint8_t* a, std::size_t bytes) {
  const std::size_t blocks = bytes / 16;
  const __m128i mask = _mm_set1_epi8(static_cast<char>((1u << B) - 1u));
  const __m128i zero = _mm_setzero_si128();
  __m128i acc = _mm_setzero_si128();
  for (std::size_t k = 0; k < blocks; ++k) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + 16 * k));
    for (int s = 0; s < 8; s += B) acc = _mm_add_epi64(acc, _mm_sad_epu8(_mm_and_si128(_mm_srli_epi16(v, s), mask), zero));
  }
  alignas(16) std::uint64_t lanes[2];
  _mm_store_si128(reinterpret_cast<__m128i*>(lanes), acc);
  return lanes[0] + lanes[1] + sum_bytes_scalar<B>(a + 16 * blocks, bytes - 16 * blocks);
}

// 256-bit versions, for the AVX2 and AVX-512 variants (target attributes on the callers).
template <int B>
[[gnu::always_inline]] FEDSIM_TARGET_AVX2 inline std::uint64_t dot_256(const std::uint8_t* a, const std::uint8_t* b, std::size_t bytes) {
  const std::size_t blocks = bytes / 32;
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i mask = _mm256_set1_epi8(static_cast<char>((1u << B) - 1u));
  std::uint64_t total = 0;
  for (std::size_t k = 0; k < blocks;) {
    const std::size_t end = std::min(blocks, k + kFlushBlocks);
    __m256i acc = _mm256_setzero_si256();
    for (; k < end; ++k) {
      const __m256i va = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 32 * k));
      const __m256i vb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32 * k));
      if constexpr (B == 8) {
        const __m256i zero = _mm256_setzero_si256();
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_unpacklo_epi8(va, zero), _mm256_unpacklo_epi8(vb, zero)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_unpackhi_epi8(va, zero), _mm256_unpackhi_epi8(vb, zero)));
      } else {
        __m256i p = _mm256_setzero_si256();
        for (int s = 0; s < 8; s += B) {
          const __m256i pa = _mm256_and_si256(_mm256_srli_epi16(va, s), mask);
          const __m256i pb = _mm256_and_si256(_mm256_srli_epi16(vb, s), mask);
          p = _mm256_add_epi16(p, _mm256_maddubs_epi16(pa, pb));
        }
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
      }
    }
    alignas(32) std::int32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
    for (std::int32_t v : lanes) total += static_cast<std::uint32_t>(v);
  }
  return total + dot_sse<B>(a + 32 * blocks, b + 32 * blocks, bytes - 32 * blocks);
}

template <int B>
[[gnu::always_inline]] FEDSIM_TARGET_AVX2 inline std::uint64_t sum_256(const std::uint8_t* a, std::size_t bytes) {
  const std::size_t blocks = bytes / 32;
  const __m256i mask = _mm256_set1_epi8(static_cast<char>((1u << B) - 1u));
  const __m256i zero = _mm256_setzero_si256();
  __m256i acc = _mm256_setzero_si256();
  for (std::size_t k = 0; k < blocks; ++k) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 32 * k));
    for (int s = 0; s < 8; s += B)
      acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_and_si256(_mm256_srli_epi16(v, s), mask), zero));
  }
  alignas(32) std::uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3] + sum_sse<B>(a + 32 * blocks, bytes - 32 * blocks);
}

// Integer dot products on dpbusd (VNNI: for each 32-bit lane, acc += the sum
// of the 4 products unsigned byte x signed byte of that lane; no saturation).
// One algorithm over an ops policy (the vector width, loads, masks and the
// dpbusd primitive), instantiated with the real AVX-512 VNNI instruction
// (512-bit), the real AVX-VNNI one (256-bit, VEX) and an exact AVX2 emulation
// of it (256-bit, and 512-bit as two halves), so that the algorithm the VNNI
// paths run is tested on any AVX2 CPU.
//
// The algorithm, per block of Ops::kBytes bytes of a and b:
//  - 2- and 4-bit codes: each bit plane (mask after a 16-bit shift) of a as the
//    unsigned operand and of b as the signed one (codes < 16 are valid signed
//    bytes), one dpbusd per plane;
//  - 8-bit codes: b >= 128 is no signed byte, so b is biased: b ^ 0x80 read as
//    a signed byte is b - 128, and sum a b = sum a (b - 128) + 128 sum a; one
//    dpbusd per block, sum a with psadbw in 64-bit lanes.
// Four accumulators (planes and consecutive blocks interleaved) hide the
// dpbusd latency. A partial last block is copied into a zero-padded one
// (zero codes add nothing). Each accumulator receives at most one dpbusd per
// block, |4 products| <= 4 * 255 * 128 = 130560 (8-bit, biased), 4 * 15^2 =
// 900 (4-bit), 4 * 3^2 = 36 (2-bit), and is flushed into 64 bits every
// kDpbusdFlushBlocks blocks: 4096 * 130560 < 2^31 (static_assert below).
constexpr std::size_t kDpbusdFlushBlocks = 4096;
template <int B>
constexpr std::int64_t kDpbusdTermBound = B == 8 ? 4 * 255 * 128 : 4 * ((1 << B) - 1) * ((1 << B) - 1);
static_assert(kDpbusdFlushBlocks * kDpbusdTermBound<8> < (std::int64_t{1} << 31));
static_assert(kDpbusdFlushBlocks * kDpbusdTermBound<4> < (std::int64_t{1} << 31));
static_assert(kDpbusdFlushBlocks * kDpbusdTermBound<2> < (std::int64_t{1} << 31));

#define FEDSIM_TARGET_AVX_VNNI __attribute__((target("avx2,avxvnni")))
#define FEDSIM_TARGET_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))

// The ops policies: V, kBytes, zero, load, set1, and_, xor_, srli16, dpbusd,
// sad (byte sums in 64-bit lanes), add64, sum_i32 and sum_u64 (of the lanes).
struct DpbusdOps256_avx2 {  // everything but dpbusd, for the two 256-bit policies
  using V = __m256i;
  static constexpr std::size_t kBytes = 32;
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline V zero() { return _mm256_setzero_si256(); }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline V load(const std::uint8_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline V set1(std::uint8_t x) {
    return _mm256_set1_epi8(static_cast<char>(x));
  }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline V and_(V x, V y) { return _mm256_and_si256(x, y); }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline V xor_(V x, V y) { return _mm256_xor_si256(x, y); }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline V srli16(V x, int s) { return _mm256_srli_epi16(x, s); }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline V sad(V x) {
    return _mm256_sad_epu8(x, _mm256_setzero_si256());
  }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline V add64(V x, V y) { return _mm256_add_epi64(x, y); }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline std::int64_t sum_i32(V x) {
    alignas(32) std::int32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), x);
    std::int64_t total = 0;
    for (std::int32_t v : lanes) total += v;
    return total;
  }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline std::uint64_t sum_u64(V x) {
    alignas(32) std::uint64_t lanes[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), x);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
  }
};

// vpdpbusd's semantics in AVX2, exactly (wrapping 32-bit adds included): the
// bytes widened to 16 bits (a's even and odd bytes zero-extended, b's
// sign-extended), pmaddwd (products <= 255 * 128 in magnitude: no
// saturation) giving the even and the odd pair of each lane, added.
struct DpbusdEmulated256_avx2 : DpbusdOps256_avx2 {
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline V dpbusd(V acc, V u8, V s8) {
    const __m256i u_even = _mm256_and_si256(u8, _mm256_set1_epi16(0x00ff));
    const __m256i u_odd = _mm256_srli_epi16(u8, 8);
    const __m256i s_even = _mm256_srai_epi16(_mm256_slli_epi16(s8, 8), 8);
    const __m256i s_odd = _mm256_srai_epi16(s8, 8);
    return _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_madd_epi16(u_even, s_even), _mm256_madd_epi16(u_odd, s_odd)));
  }
};

// The 512-bit kernel's blocks (64 bytes, 16 lanes) on AVX2: two emulated halves.
struct DpbusdEmulated512_avx2 {
  using H = DpbusdEmulated256_avx2;
  struct V {
    __m256i lo, hi;
  };
  static constexpr std::size_t kBytes = 64;
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline V zero() { return {H::zero(), H::zero()}; }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline V load(const std::uint8_t* p) {
    return {H::load(p), H::load(p + 32)};
  }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline V set1(std::uint8_t x) { return {H::set1(x), H::set1(x)}; }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline V and_(V x, V y) {
    return {H::and_(x.lo, y.lo), H::and_(x.hi, y.hi)};
  }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline V xor_(V x, V y) {
    return {H::xor_(x.lo, y.lo), H::xor_(x.hi, y.hi)};
  }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline V srli16(V x, int s) {
    return {H::srli16(x.lo, s), H::srli16(x.hi, s)};
  }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline V sad(V x) { return {H::sad(x.lo), H::sad(x.hi)}; }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline V add64(V x, V y) {
    return {H::add64(x.lo, y.lo), H::add64(x.hi, y.hi)};
  }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline V dpbusd(V acc, V u8, V s8) {
    return {H::dpbusd(acc.lo, u8.lo, s8.lo), H::dpbusd(acc.hi, u8.hi, s8.hi)};
  }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline std::int64_t sum_i32(V x) {
    return H::sum_i32(x.lo) + H::sum_i32(x.hi);
  }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX2 static inline std::uint64_t sum_u64(V x) {
    return H::sum_u64(x.lo) + H::sum_u64(x.hi);
  }
};

// AVX-VNNI: vpdpbusd ymm, VEX-encoded (the _avx_ intrinsic).
struct DpbusdAvxVnni_avx2 : DpbusdOps256_avx2 {
  [[gnu::always_inline]] FEDSIM_TARGET_AVX_VNNI static inline V dpbusd(V acc, V u8, V s8) {
    return _mm256_dpbusd_avx_epi32(acc, u8, s8);
  }
};

// AVX-512 VNNI: vpdpbusd zmm (shifts and psadbw on zmm need AVX-512 BW).
struct DpbusdVnni512_avx512 {
  using V = __m512i;
  static constexpr std::size_t kBytes = 64;
  [[gnu::always_inline]] FEDSIM_TARGET_AVX512_VNNI static inline V zero() { return _mm512_setzero_si512(); }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX512_VNNI static inline V load(const std::uint8_t* p) {
    return _mm512_loadu_si512(p);
  }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX512_VNNI static inline V set1(std::uint8_t x) {
    return _mm512_set1_epi8(static_cast<char>(x));
  }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX512_VNNI static inline V and_(V x, V y) { return _mm512_and_si512(x, y); }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX512_VNNI static inline V xor_(V x, V y) { return _mm512_xor_si512(x, y); }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX512_VNNI static inline V srli16(V x, int s) {
    return _mm512_srli_epi16(x, static_cast<unsigned>(s));
  }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX512_VNNI static inline V sad(V x) {
    return _mm512_sad_epu8(x, _mm512_setzero_si512());
  }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX512_VNNI static inline V add64(V x, V y) { return _mm512_add_epi64(x, y); }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX512_VNNI static inline V dpbusd(V acc, V u8, V s8) {
    return _mm512_dpbusd_epi32(acc, u8, s8);
  }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX512_VNNI static inline std::int64_t sum_i32(V x) {
    alignas(64) std::int32_t lanes[16];
    _mm512_store_si512(lanes, x);
    std::int64_t total = 0;
    for (std::int32_t v : lanes) total += v;
    return total;
  }
  [[gnu::always_inline]] FEDSIM_TARGET_AVX512_VNNI static inline std::uint64_t sum_u64(V x) {
    alignas(64) std::uint64_t lanes[8];
    _mm512_store_si512(lanes, x);
    std::uint64_t total = 0;
    for (std::uint64_t v : lanes) total += v;
    return total;
  }
};

// The algorithm, written once. A function's target attribute cannot depend
// on a template parameter, and GCC and clang refuse to inline a
// target-specific always_inline function (an ops method) into one compiled
// without that target, so the definition is a macro expanded once per target
// (the ops policy's); NAME must contain _avx2 or _avx512 (tools/check_isa.sh).
// NAME##_block: one block of a and b into the accumulators acc[first ..]
// (one per bit plane) and, for 8-bit codes, sum a into `sums`.
#define FEDSIM_DEFINE_DOT_DPBUSD(NAME, TARGET)                                                                   \
  template <class Ops, int B>                                                                                  \
  [[gnu::always_inline]] TARGET inline void NAME##_block(const std::uint8_t* a, const std::uint8_t* b,          \
                                                         typename Ops::V* acc, typename Ops::V& sums) {         \
    const typename Ops::V va = Ops::load(a), vb = Ops::load(b);                                                \
    if constexpr (B == 8) {                                                                                    \
      acc[0] = Ops::dpbusd(acc[0], va, Ops::xor_(vb, Ops::set1(0x80)));                                        \
      sums = Ops::add64(sums, Ops::sad(va));                                                                   \
    } else {                                                                                                   \
      const typename Ops::V mask = Ops::set1(static_cast<std::uint8_t>((1u << B) - 1u));                        \
      for (int p = 0; p < 8 / B; ++p)                                                                          \
        acc[p] = Ops::dpbusd(acc[p], Ops::and_(Ops::srli16(va, p * B), mask),                                  \
                             Ops::and_(Ops::srli16(vb, p * B), mask));                                         \
    }                                                                                                          \
  }                                                                                                            \
  template <class Ops, int B>                                                                                  \
  [[gnu::always_inline]] TARGET inline std::uint64_t NAME(const std::uint8_t* a, const std::uint8_t* b,         \
                                                          std::size_t bytes) {                                 \
    using V = typename Ops::V;                                                                                 \
    constexpr std::size_t kW = Ops::kBytes;                                                                    \
    constexpr int kPlanes = B == 8 ? 1 : 8 / B;                                                                \
    constexpr std::size_t kGroup = 4 / kPlanes; /* blocks per step: 4 accumulators */                           \
    const std::size_t full = bytes / kW, rest = bytes % kW;                                                    \
    alignas(64) std::uint8_t last_a[kW] = {}, last_b[kW] = {};                                                 \
    if (rest != 0) {                                                                                           \
      std::memcpy(last_a, a + kW * full, rest);                                                                \
      std::memcpy(last_b, b + kW * full, rest);                                                                \
    }                                                                                                          \
    const std::size_t blocks = full + (rest != 0);                                                             \
    std::int64_t total = 0;                                                                                    \
    std::uint64_t sum_a = 0;                                                                                   \
    for (std::size_t k = 0; k < blocks;) {                                                                     \
      const std::size_t end = std::min(blocks, k + kDpbusdFlushBlocks);                                        \
      V acc[4] = {Ops::zero(), Ops::zero(), Ops::zero(), Ops::zero()};                                         \
      V sums = Ops::zero();                                                                                    \
      for (; k + kGroup <= end && k + kGroup <= full; k += kGroup)                                             \
        for (std::size_t j = 0; j < kGroup; ++j)                                                               \
          NAME##_block<Ops, B>(a + kW * (k + j), b + kW * (k + j), acc + kPlanes * j, sums);                   \
      for (; k < end; ++k) {                                                                                   \
        const bool whole = k < full;                                                                           \
        NAME##_block<Ops, B>(whole ? a + kW * k : last_a, whole ? b + kW * k : last_b, acc, sums);             \
      }                                                                                                        \
      for (const V& v : acc) total += Ops::sum_i32(v);                                                         \
      sum_a += Ops::sum_u64(sums);                                                                             \
    }                                                                                                          \
    /* 8-bit: sum a (b - 128) + 128 sum a; otherwise sum_a is 0. */                                            \
    return static_cast<std::uint64_t>(total) + 128 * sum_a;                                                    \
  }

FEDSIM_DEFINE_DOT_DPBUSD(dot_dpbusd_avx2, FEDSIM_TARGET_AVX2)
FEDSIM_DEFINE_DOT_DPBUSD(dot_dpbusd_avxvnni_avx2, FEDSIM_TARGET_AVX_VNNI)
FEDSIM_DEFINE_DOT_DPBUSD(dot_dpbusd_avx512, FEDSIM_TARGET_AVX512_VNNI)
#undef FEDSIM_DEFINE_DOT_DPBUSD

// Codes 8c .. 8c + 7 as the low 8 bytes of a vector, in order.
template <int B>
[[gnu::always_inline]] inline __m128i eight_codes(const std::uint8_t* codes, std::size_t c) {
  if constexpr (B == 8) {
    return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + 8 * c));
  } else if constexpr (B == 4) {
    std::int32_t word;
    std::memcpy(&word, codes + 4 * c, 4);
    const __m128i v = _mm_cvtsi32_si128(word);
    const __m128i mask = _mm_set1_epi8(0x0f);
    return _mm_unpacklo_epi8(_mm_and_si128(v, mask), _mm_and_si128(_mm_srli_epi16(v, 4), mask));
  } else {
    std::int16_t half;
    std::memcpy(&half, codes + 2 * c, 2);
    const __m128i v = _mm_cvtsi32_si128(static_cast<std::uint16_t>(half));
    const __m128i mask = _mm_set1_epi8(3);
    const __m128i p0 = _mm_and_si128(v, mask), p1 = _mm_and_si128(_mm_srli_epi16(v, 2), mask);
    const __m128i p2 = _mm_and_si128(_mm_srli_epi16(v, 4), mask), p3 = _mm_and_si128(_mm_srli_epi16(v, 6), mask);
    return _mm_unpacklo_epi16(_mm_unpacklo_epi8(p0, p1), _mm_unpacklo_epi8(p2, p3));
  }
}

// y += alpha + beta * code, 4 lanes at a time; t = k * beta, t = t + alpha, y = y + t.
template <int B>
[[gnu::always_inline]] inline void axpy_sse(float alpha, float beta, const std::uint8_t* codes, std::size_t n,
                                            float* y) {
  const __m128 va = _mm_set1_ps(alpha), vb = _mm_set1_ps(beta);
  const std::size_t groups = n / 8;
  for (std::size_t c = 0; c < groups; ++c) {
    const __m128i k8 = eight_codes<B>(codes, c);
    for (int h = 0; h < 2; ++h) {
      const __m128 k = _mm_cvtepi32_ps(_mm_cvtepu8_epi32(h == 0 ? k8 : _mm_srli_si128(k8, 4)));
      float* p = y + 8 * c + 4 * h;
      const __m128 t = _mm_add_ps(_mm_mul_ps(k, vb), va);
      _mm_storeu_ps(p, _mm_add_ps(_mm_loadu_ps(p), t));
    }
  }
  axpy_scalar<B>(alpha, beta, codes, 8 * groups, n, y);
}

template <int B>
[[gnu::always_inline]] FEDSIM_TARGET_AVX2 inline void axpy_256(float alpha, float beta, const std::uint8_t* codes, std::size_t n,
                                            float* y) {
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  const std::size_t groups = n / 8;
  for (std::size_t c = 0; c < groups; ++c) {
    const __m256 k = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(eight_codes<B>(codes, c)));
    const __m256 t = _mm256_add_ps(_mm256_mul_ps(k, vb), va);
    _mm256_storeu_ps(y + 8 * c, _mm256_add_ps(_mm256_loadu_ps(y + 8 * c), t));
  }
  axpy_scalar<B>(alpha, beta, codes, 8 * groups, n, y);
}

// y += alpha_j + beta_j * code_j for j = 0 .. count - 1, 8 coordinates at a
// time held in registers across the samples: per coordinate the operations
// of count successive axpy calls, in their order.
template <int B>
[[gnu::always_inline]] inline void axpy_batch_sse(const float* alpha, const float* beta,
                                                  const std::uint8_t* const* codes, std::size_t count, std::size_t n,
                                                  float* y) {
  const std::size_t groups = n / 8;
  // Two groups of 8 (four registers) at a time: independent addition chains.
  std::size_t c = 0;
  for (; c < groups; c += 2) {
    const std::size_t width = c + 2 <= groups ? 2 : 1;
    __m128 acc[4];
    for (std::size_t v = 0; v < 2 * width; ++v) acc[v] = _mm_loadu_ps(y + 8 * c + 4 * v);
    for (std::size_t j = 0; j < count; ++j) {
      const __m128 va = _mm_set1_ps(alpha[j]), vb = _mm_set1_ps(beta[j]);
      for (std::size_t g = 0; g < width; ++g) {
        const __m128i k8 = eight_codes<B>(codes[j], c + g);
        const __m128 k0 = _mm_cvtepi32_ps(_mm_cvtepu8_epi32(k8));
        const __m128 k1 = _mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_srli_si128(k8, 4)));
        acc[2 * g] = _mm_add_ps(acc[2 * g], _mm_add_ps(_mm_mul_ps(k0, vb), va));
        acc[2 * g + 1] = _mm_add_ps(acc[2 * g + 1], _mm_add_ps(_mm_mul_ps(k1, vb), va));
      }
    }
    for (std::size_t v = 0; v < 2 * width; ++v) _mm_storeu_ps(y + 8 * c + 4 * v, acc[v]);
  }
  for (std::size_t j = 0; j < count; ++j) axpy_scalar<B>(alpha[j], beta[j], codes[j], 8 * groups, n, y);
}

template <int B>
[[gnu::always_inline]] FEDSIM_TARGET_AVX2 inline void axpy_batch_256(const float* alpha, const float* beta,
                                                                     const std::uint8_t* const* codes,
                                                                     std::size_t count, std::size_t n, float* y) {
  const std::size_t groups = n / 8;
  // Four groups of 8 at a time: four independent addition chains hide the
  // latency of the (ordered) accumulation.
  constexpr std::size_t kGroups = 4;
  std::size_t c = 0;
  for (; c + kGroups <= groups; c += kGroups) {
    __m256 acc[kGroups];
    for (std::size_t g = 0; g < kGroups; ++g) acc[g] = _mm256_loadu_ps(y + 8 * (c + g));
    for (std::size_t j = 0; j < count; ++j) {
      const __m256 va = _mm256_set1_ps(alpha[j]), vb = _mm256_set1_ps(beta[j]);
      for (std::size_t g = 0; g < kGroups; ++g) {
        const __m256 k = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(eight_codes<B>(codes[j], c + g)));
        acc[g] = _mm256_add_ps(acc[g], _mm256_add_ps(_mm256_mul_ps(k, vb), va));
      }
    }
    for (std::size_t g = 0; g < kGroups; ++g) _mm256_storeu_ps(y + 8 * (c + g), acc[g]);
  }
  for (; c < groups; ++c) {
    __m256 acc = _mm256_loadu_ps(y + 8 * c);
    for (std::size_t j = 0; j < count; ++j) {
      const __m256 k = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(eight_codes<B>(codes[j], c)));
      acc = _mm256_add_ps(acc, _mm256_add_ps(_mm256_mul_ps(k, _mm256_set1_ps(beta[j])), _mm256_set1_ps(alpha[j])));
    }
    _mm256_storeu_ps(y + 8 * c, acc);
  }
  for (std::size_t j = 0; j < count; ++j) axpy_scalar<B>(alpha[j], beta[j], codes[j], 8 * groups, n, y);
}
#endif

// fp32 dot product: 16 lane accumulators (lane j takes elements 16 c + j in
// order; SSE holds them in four registers, the wider paths in two 256-bit
// ones), then the 16 lanes summed in order, then the tail: the same float
// operations on every path. The products are rounded before the additions
// (no fused multiply-add, see the top of the file).
[[gnu::always_inline]] inline float dot_f32_finish(const float* lanes, const float* a, const float* b,
                                                   std::size_t first, std::size_t n) {
  float sum = 0.0f;
  for (int j = 0; j < 16; ++j) sum += lanes[j];
  for (std::size_t i = first; i < n; ++i) {
    const float p = a[i] * b[i];
    sum = sum + p;
  }
  return sum;
}

[[gnu::always_inline]] inline float dot_f32_narrow(const float* a, const float* b, std::size_t n) {
  const std::size_t full = n / kCodesPerChunk;
  alignas(16) float lanes[16] = {};
#if FEDSIM_SIMD_X86
  __m128 acc[4] = {_mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps()};
  for (std::size_t c = 0; c < full; ++c)
    for (int v = 0; v < 4; ++v)
      acc[v] = _mm_add_ps(acc[v], _mm_mul_ps(_mm_loadu_ps(a + 16 * c + 4 * v), _mm_loadu_ps(b + 16 * c + 4 * v)));
  for (int v = 0; v < 4; ++v) _mm_store_ps(lanes + 4 * v, acc[v]);
#else
  for (std::size_t c = 0; c < full; ++c)
    for (int j = 0; j < 16; ++j) {
      const float p = a[16 * c + j] * b[16 * c + j];
      lanes[j] = lanes[j] + p;
    }
#endif
  return dot_f32_finish(lanes, a, b, full * kCodesPerChunk, n);
}

[[gnu::always_inline]] inline void axpy_f32_narrow(float alpha, const float* x, std::size_t n, float* y) {
  std::size_t i = 0;
#if FEDSIM_SIMD_X86
  const __m128 va = _mm_set1_ps(alpha);
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(y + i, _mm_add_ps(_mm_loadu_ps(y + i), _mm_mul_ps(_mm_loadu_ps(x + i), va)));
#endif
  for (; i < n; ++i) {
    const float p = x[i] * alpha;
    y[i] = y[i] + p;
  }
}

#if FEDSIM_SIMD_X86
[[gnu::always_inline]] FEDSIM_TARGET_AVX2 inline float dot_f32_wide(const float* a, const float* b, std::size_t n) {
  const std::size_t full = n / kCodesPerChunk;
  alignas(32) float lanes[16];
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (std::size_t c = 0; c < full; ++c)
    for (int v = 0; v < 2; ++v)
      acc[v] = _mm256_add_ps(acc[v],
                             _mm256_mul_ps(_mm256_loadu_ps(a + 16 * c + 8 * v), _mm256_loadu_ps(b + 16 * c + 8 * v)));
  for (int v = 0; v < 2; ++v) _mm256_store_ps(lanes + 8 * v, acc[v]);
  return dot_f32_finish(lanes, a, b, full * kCodesPerChunk, n);
}
[[gnu::always_inline]] FEDSIM_TARGET_AVX2 inline void axpy_f32_wide(float alpha, const float* x, std::size_t n,
                                                                    float* y) {
  std::size_t i = 0;
  const __m256 va = _mm256_set1_ps(alpha);
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(_mm256_loadu_ps(x + i), va)));
  for (; i < n; ++i) {
    const float p = x[i] * alpha;
    y[i] = y[i] + p;
  }
}
#else
#define dot_f32_wide dot_f32_narrow
#define axpy_f32_wide axpy_f32_narrow
#endif

// The baseline (SSE4.1, x86-64-v2) kernels by width; scalar on a non-x86 build.
[[gnu::always_inline]] inline std::uint64_t dot_narrow(const std::uint8_t* a, const std::uint8_t* b, std::size_t n,
                                                       int bits) {
  const std::size_t bytes = packed_bytes(n, bits);
#if FEDSIM_SIMD_X86
  switch (bits) {
    case 2: return dot_sse<2>(a, b, bytes);
    case 4: return dot_sse<4>(a, b, bytes);
    default: return dot_sse<8>(a, b, bytes);
  }
#else
  switch (bits) {
    case 2: return dot_bytes_scalar<2>(a, b, bytes);
    case 4: return dot_bytes_scalar<4>(a, b, bytes);
    default: return dot_bytes_scalar<8>(a, b, bytes);
  }
#endif
}
[[gnu::always_inline]] inline std::uint64_t sum_narrow(const std::uint8_t* a, std::size_t n, int bits) {
  const std::size_t bytes = packed_bytes(n, bits);
#if FEDSIM_SIMD_X86
  switch (bits) {
    case 2: return sum_sse<2>(a, bytes);
    case 4: return sum_sse<4>(a, bytes);
    default: return sum_sse<8>(a, bytes);
  }
#else
  switch (bits) {
    case 2: return sum_bytes_scalar<2>(a, bytes);
    case 4: return sum_bytes_scalar<4>(a, bytes);
    default: return sum_bytes_scalar<8>(a, bytes);
  }
#endif
}
[[gnu::always_inline]] inline void axpy_narrow(float alpha, float beta, const std::uint8_t* codes, std::size_t n,
                                               int bits, float* y) {
#if FEDSIM_SIMD_X86
  switch (bits) {
    case 2: axpy_sse<2>(alpha, beta, codes, n, y); break;
    case 4: axpy_sse<4>(alpha, beta, codes, n, y); break;
    default: axpy_sse<8>(alpha, beta, codes, n, y); break;
  }
#else
  switch (bits) {
    case 2: axpy_scalar<2>(alpha, beta, codes, 0, n, y); break;
    case 4: axpy_scalar<4>(alpha, beta, codes, 0, n, y); break;
    default: axpy_scalar<8>(alpha, beta, codes, 0, n, y); break;
  }
#endif
}

[[gnu::always_inline]] inline void axpy_batch_narrow(const float* alpha, const float* beta,
                                                     const std::uint8_t* const* codes, std::size_t count,
                                                     std::size_t n, int bits, float* y) {
#if FEDSIM_SIMD_X86
  switch (bits) {
    case 2: axpy_batch_sse<2>(alpha, beta, codes, count, n, y); break;
    case 4: axpy_batch_sse<4>(alpha, beta, codes, count, n, y); break;
    default: axpy_batch_sse<8>(alpha, beta, codes, count, n, y); break;
  }
#else
  for (std::size_t j = 0; j < count; ++j) axpy_narrow(alpha[j], beta[j], codes[j], n, bits, y);
#endif
}

#if FEDSIM_SIMD_X86
// The 256-bit kernels by width, for the AVX2 and AVX-512 variants.
[[gnu::always_inline]] FEDSIM_TARGET_AVX2 inline std::uint64_t dot_wide(const std::uint8_t* a, const std::uint8_t* b,
                                                                        std::size_t n, int bits) {
  const std::size_t bytes = packed_bytes(n, bits);
  switch (bits) {
    case 2: return dot_256<2>(a, b, bytes);
    case 4: return dot_256<4>(a, b, bytes);
    default: return dot_256<8>(a, b, bytes);
  }
}
[[gnu::always_inline]] FEDSIM_TARGET_AVX2 inline std::uint64_t sum_wide(const std::uint8_t* a, std::size_t n, int bits) {
  const std::size_t bytes = packed_bytes(n, bits);
  switch (bits) {
    case 2: return sum_256<2>(a, bytes);
    case 4: return sum_256<4>(a, bytes);
    default: return sum_256<8>(a, bytes);
  }
}
[[gnu::always_inline]] FEDSIM_TARGET_AVX2 inline void axpy_wide(float alpha, float beta, const std::uint8_t* codes,
                                                                std::size_t n, int bits, float* y) {
  switch (bits) {
    case 2: axpy_256<2>(alpha, beta, codes, n, y); break;
    case 4: axpy_256<4>(alpha, beta, codes, n, y); break;
    default: axpy_256<8>(alpha, beta, codes, n, y); break;
  }
}
[[gnu::always_inline]] FEDSIM_TARGET_AVX2 inline void axpy_batch_wide(const float* alpha, const float* beta,
                                                                      const std::uint8_t* const* codes,
                                                                      std::size_t count, std::size_t n, int bits,
                                                                      float* y) {
  switch (bits) {
    case 2: axpy_batch_256<2>(alpha, beta, codes, count, n, y); break;
    case 4: axpy_batch_256<4>(alpha, beta, codes, count, n, y); break;
    default: axpy_batch_256<8>(alpha, beta, codes, count, n, y); break;
  }
}
#else
#define dot_wide dot_narrow
#define sum_wide sum_narrow
#define axpy_wide axpy_narrow
#define axpy_batch_wide axpy_batch_narrow
#endif

using DotKernel = std::uint64_t (*)(const std::uint8_t*, const std::uint8_t*, std::size_t, int);
using SumKernel = std::uint64_t (*)(const std::uint8_t*, std::size_t, int);
using AxpyKernel = void (*)(float, float, const std::uint8_t*, std::size_t, int, float*);

FEDSIM_TARGET_AVX512 std::uint64_t dot_avx512(const std::uint8_t* a, const std::uint8_t* b, std::size_t n, int bits) {
  return dot_wide(a, b, n, bits);
}
FEDSIM_TARGET_AVX2 std::uint64_t dot_avx2(const std::uint8_t* a, const std::uint8_t* b, std::size_t n, int bits) {
  return dot_wide(a, b, n, bits);
}
std::uint64_t dot_baseline(const std::uint8_t* a, const std::uint8_t* b, std::size_t n, int bits) {
  return dot_narrow(a, b, n, bits);
}

#if FEDSIM_SIMD_X86
// The dpbusd kernels (above) by width.
#define FEDSIM_DOT_DPBUSD_BY_BITS(kernel, Ops)                  \
  switch (bits) {                                               \
    case 2: return kernel<Ops, 2>(a, b, packed_bytes(n, bits)); \
    case 4: return kernel<Ops, 4>(a, b, packed_bytes(n, bits)); \
    default: return kernel<Ops, 8>(a, b, packed_bytes(n, bits)); \
  }
FEDSIM_TARGET_AVX512_VNNI std::uint64_t dot_vnni_avx512(const std::uint8_t* a, const std::uint8_t* b, std::size_t n,
                                                        int bits) {
  FEDSIM_DOT_DPBUSD_BY_BITS(dot_dpbusd_avx512, DpbusdVnni512_avx512)
}
FEDSIM_TARGET_AVX_VNNI std::uint64_t dot_vnni_avx2(const std::uint8_t* a, const std::uint8_t* b, std::size_t n,
                                                   int bits) {
  FEDSIM_DOT_DPBUSD_BY_BITS(dot_dpbusd_avxvnni_avx2, DpbusdAvxVnni_avx2)
}
FEDSIM_TARGET_AVX2 std::uint64_t dot_vnni_emulated256_avx2(const std::uint8_t* a, const std::uint8_t* b,
                                                           std::size_t n, int bits) {
  FEDSIM_DOT_DPBUSD_BY_BITS(dot_dpbusd_avx2, DpbusdEmulated256_avx2)
}
FEDSIM_TARGET_AVX2 std::uint64_t dot_vnni_emulated512_avx2(const std::uint8_t* a, const std::uint8_t* b,
                                                           std::size_t n, int bits) {
  FEDSIM_DOT_DPBUSD_BY_BITS(dot_dpbusd_avx2, DpbusdEmulated512_avx2)
}
#undef FEDSIM_DOT_DPBUSD_BY_BITS

// AVX-512 VNNI with AVX-512 BW (the kernel's shifts and psadbw); AVX-VNNI.
// __builtin_cpu_supports checks that the OS saves the registers too.
bool cpu_has_avx512_vnni() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
  }();
  return has;
}
bool cpu_has_avx_vnni() {
  static const bool has = [] {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2")) return false;
#if defined(__clang__)
    // clang 14 does not know "avxvnni" here: CPUID.(EAX=7, ECX=1):EAX bit 4
    // (AVX2 above says the OS saves the ymm registers).
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) != 0 && ((eax >> 4) & 1u) != 0;
#else
    return __builtin_cpu_supports("avxvnni") != 0;
#endif
  }();
  return has;
}
#endif

// The dot product kernel for `isa` (simd::pick): on the AVX-512 path the
// AVX-512 VNNI kernel where the CPU has it, on the AVX2 path the AVX-VNNI
// one; all give the same integers.
DotKernel dot_kernel(simd::Isa isa) {
#if FEDSIM_SIMD_X86
  return simd::pick<DotKernel>(isa, cpu_has_avx512_vnni() ? dot_vnni_avx512 : dot_avx512,
                               cpu_has_avx_vnni() ? dot_vnni_avx2 : dot_avx2, dot_baseline);
#else
  return simd::pick<DotKernel>(isa, dot_avx512, dot_avx2, dot_baseline);
#endif
}
FEDSIM_TARGET_AVX512 std::uint64_t sum_avx512(const std::uint8_t* a, std::size_t n, int bits) {
  return sum_wide(a, n, bits);
}
FEDSIM_TARGET_AVX2 std::uint64_t sum_avx2(const std::uint8_t* a, std::size_t n, int bits) {
  return sum_wide(a, n, bits);
}
std::uint64_t sum_baseline(const std::uint8_t* a, std::size_t n, int bits) { return sum_narrow(a, n, bits); }
FEDSIM_TARGET_AVX512 void axpy_avx512(float alpha, float beta, const std::uint8_t* codes, std::size_t n, int bits,
                                      float* y) {
  axpy_wide(alpha, beta, codes, n, bits, y);
}
FEDSIM_TARGET_AVX2 void axpy_avx2(float alpha, float beta, const std::uint8_t* codes, std::size_t n, int bits,
                                  float* y) {
  axpy_wide(alpha, beta, codes, n, bits, y);
}
void axpy_baseline(float alpha, float beta, const std::uint8_t* codes, std::size_t n, int bits, float* y) {
  axpy_narrow(alpha, beta, codes, n, bits, y);
}

using AxpyBatchKernel = void (*)(const float*, const float*, const std::uint8_t* const*, std::size_t, std::size_t, int,
                                 float*);
FEDSIM_TARGET_AVX512 void axpy_batch_avx512(const float* alpha, const float* beta, const std::uint8_t* const* codes,
                                            std::size_t count, std::size_t n, int bits, float* y) {
  axpy_batch_wide(alpha, beta, codes, count, n, bits, y);
}
FEDSIM_TARGET_AVX2 void axpy_batch_avx2(const float* alpha, const float* beta, const std::uint8_t* const* codes,
                                        std::size_t count, std::size_t n, int bits, float* y) {
  axpy_batch_wide(alpha, beta, codes, count, n, bits, y);
}
void axpy_batch_baseline(const float* alpha, const float* beta, const std::uint8_t* const* codes, std::size_t count,
                         std::size_t n, int bits, float* y) {
  axpy_batch_narrow(alpha, beta, codes, count, n, bits, y);
}

using DotF32Kernel = float (*)(const float*, const float*, std::size_t);
using AxpyF32Kernel = void (*)(float, const float*, std::size_t, float*);
FEDSIM_TARGET_AVX512 float dot_f32_avx512(const float* a, const float* b, std::size_t n) {
  return dot_f32_wide(a, b, n);
}
FEDSIM_TARGET_AVX2 float dot_f32_avx2(const float* a, const float* b, std::size_t n) {
  return dot_f32_wide(a, b, n);
}
float dot_f32_baseline(const float* a, const float* b, std::size_t n) { return dot_f32_narrow(a, b, n); }
FEDSIM_TARGET_AVX512 void axpy_f32_avx512(float alpha, const float* x, std::size_t n, float* y) {
  axpy_f32_wide(alpha, x, n, y);
}
FEDSIM_TARGET_AVX2 void axpy_f32_avx2(float alpha, const float* x, std::size_t n, float* y) {
  axpy_f32_wide(alpha, x, n, y);
}
void axpy_f32_baseline(float alpha, const float* x, std::size_t n, float* y) {
  axpy_f32_narrow(alpha, x, n, y);
}

}  // namespace

float dot_f32(const float* a, const float* b, std::size_t n, simd::Isa isa) {
  return simd::pick<DotF32Kernel>(isa, dot_f32_avx512, dot_f32_avx2, dot_f32_baseline)(a, b, n);
}
void axpy_f32(float alpha, const float* x, std::size_t n, float* y, simd::Isa isa) {
  simd::pick<AxpyF32Kernel>(isa, axpy_f32_avx512, axpy_f32_avx2, axpy_f32_baseline)(alpha, x, n, y);
}

bool supported_bits(int bits) { return bits == 2 || bits == 4 || bits == 8; }

namespace {
// Whole bytes first (8 / B codes each, a fixed trip count the compiler
// unrolls), then the last partial byte; the padding stays zero.
// On x86, 16 codes at a time with SSSE3 pmaddubsw (pairs c0 + 2^B c1, at most
// 255) and, for B = 2, pmaddwd (the pairs of pairs), then packed to bytes:
// baseline (x86-64-v2) instructions, the same bytes as the scalar loop.
template <int B>
void pack_bytes(std::span<const std::uint8_t> codes, std::uint8_t* out) {
  constexpr std::size_t kPerByte = 8 / B;
  std::size_t k = 0;
#if FEDSIM_SIMD_X86
  if constexpr (B == 8) {
    if (!codes.empty()) std::memcpy(out, codes.data(), codes.size());  // (n = 0: both may be null)
    return;
  } else {
    for (; k * kPerByte + 16 <= codes.size(); k += 16 / kPerByte) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes.data() + k * kPerByte));
      if constexpr (B == 4) {
        const __m128i pairs = _mm_maddubs_epi16(v, _mm_set1_epi16(0x1001));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(out + k), _mm_packus_epi16(pairs, pairs));
      } else {
        const __m128i pairs = _mm_maddubs_epi16(v, _mm_set1_epi16(0x0401));
        const __m128i quads = _mm_madd_epi16(pairs, _mm_set1_epi32(0x00100001));
        const __m128i words = _mm_packs_epi32(quads, quads);
        const std::int32_t bytes = _mm_cvtsi128_si32(_mm_packus_epi16(words, words));
        std::memcpy(out + k, &bytes, 4);
      }
    }
  }
#endif
  const std::size_t full = codes.size() / kPerByte;
  for (; k < full; ++k) {
    unsigned byte = 0;
    for (std::size_t s = 0; s < kPerByte; ++s) byte |= static_cast<unsigned>(codes[k * kPerByte + s]) << (s * B);
    out[k] = static_cast<std::uint8_t>(byte);
  }
  unsigned byte = 0;
  for (std::size_t i = full * kPerByte; i < codes.size(); ++i)
    byte |= static_cast<unsigned>(codes[i]) << ((i - full * kPerByte) * B);
  if (full * kPerByte < codes.size()) out[full] = static_cast<std::uint8_t>(byte);
}
}  // namespace

void pack(std::span<const std::uint8_t> codes, int bits, std::vector<std::uint8_t>& out) {
  assert(supported_bits(bits));
#ifndef NDEBUG
  unsigned any = 0;
  for (std::uint8_t c : codes) any |= c;
  assert(any < (1u << bits));
#endif
  out.assign(packed_bytes(codes.size(), bits), 0);
  switch (bits) {
    case 2: pack_bytes<2>(codes, out.data()); break;
    case 4: pack_bytes<4>(codes, out.data()); break;
    default: pack_bytes<8>(codes, out.data()); break;
  }
}

void unpack(const std::uint8_t* packed, std::size_t n, int bits, std::uint8_t* codes) {
  assert(supported_bits(bits));
  const unsigned mask = (1u << bits) - 1u;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t bit = i * static_cast<std::size_t>(bits);
    codes[i] = static_cast<std::uint8_t>((packed[bit >> 3] >> (bit & 7)) & mask);
  }
}

std::uint64_t dot_codes(const std::uint8_t* a, const std::uint8_t* b, std::size_t n, int bits, simd::Isa isa) {
  assert(supported_bits(bits));
  return dot_kernel(isa)(a, b, n, bits);
}

const char* dot_kernel_name(simd::Isa isa) {
  const DotKernel kernel = dot_kernel(isa);
#if FEDSIM_SIMD_X86
  if (kernel == dot_vnni_avx512) return "avx512-vnni";
  if (kernel == dot_vnni_avx2) return "avx-vnni";
#endif
  if (kernel == dot_avx512) return "avx512";
  if (kernel == dot_avx2) return "avx2";
  return "baseline";
}

bool dpbusd_supported(DpbusdKernel kernel) {
#if FEDSIM_SIMD_X86
  switch (kernel) {
    case DpbusdKernel::kEmulated256:
    case DpbusdKernel::kEmulated512: return simd::cpu_isa() >= simd::Isa::kAvx2;
    case DpbusdKernel::kAvxVnni: return cpu_has_avx_vnni();
    case DpbusdKernel::kAvx512Vnni: return cpu_has_avx512_vnni();
  }
#endif
  (void)kernel;
  return false;
}

std::uint64_t dot_codes_dpbusd(const std::uint8_t* a, const std::uint8_t* b, std::size_t n, int bits,
                               DpbusdKernel kernel) {
  assert(supported_bits(bits));
  assert(dpbusd_supported(kernel));
#if FEDSIM_SIMD_X86
  if (dpbusd_supported(kernel)) {
    switch (kernel) {
      case DpbusdKernel::kEmulated256: return dot_vnni_emulated256_avx2(a, b, n, bits);
      case DpbusdKernel::kEmulated512: return dot_vnni_emulated512_avx2(a, b, n, bits);
      case DpbusdKernel::kAvxVnni: return dot_vnni_avx2(a, b, n, bits);
      case DpbusdKernel::kAvx512Vnni: return dot_vnni_avx512(a, b, n, bits);
    }
  }
#endif
  return dot_baseline(a, b, n, bits);
}
std::uint64_t sum_codes(const std::uint8_t* a, std::size_t n, int bits, simd::Isa isa) {
  assert(supported_bits(bits));
  return simd::pick<SumKernel>(isa, sum_avx512, sum_avx2, sum_baseline)(a, n, bits);
}
void axpy_codes(float alpha, float beta, const std::uint8_t* codes, std::size_t n, int bits, float* y,
                simd::Isa isa) {
  assert(supported_bits(bits));
  simd::pick<AxpyKernel>(isa, axpy_avx512, axpy_avx2, axpy_baseline)(alpha, beta, codes, n, bits, y);
}

void axpy_codes_batch(const float* alpha, const float* beta, const std::uint8_t* const* codes, std::size_t count,
                      std::size_t n, int bits, float* y, simd::Isa isa) {
  assert(supported_bits(bits));
  simd::pick<AxpyBatchKernel>(isa, axpy_batch_avx512, axpy_batch_avx2, axpy_batch_baseline)(alpha, beta, codes, count,
                                                                                             n, bits, y);
}
void axpy_codes_batch(const float* alpha, const float* beta, const std::uint8_t* const* codes, std::size_t count,
                      std::size_t n, int bits, float* y) {
  static const AxpyBatchKernel kernel =
      simd::pick<AxpyBatchKernel>(simd::best_isa(), axpy_batch_avx512, axpy_batch_avx2, axpy_batch_baseline);
  assert(supported_bits(bits));
  kernel(alpha, beta, codes, count, n, bits, y);
}

std::uint64_t dot_codes(const std::uint8_t* a, const std::uint8_t* b, std::size_t n, int bits) {
  static const DotKernel kernel = dot_kernel(simd::best_isa());
  assert(supported_bits(bits));
  return kernel(a, b, n, bits);
}
std::uint64_t sum_codes(const std::uint8_t* a, std::size_t n, int bits) {
  static const SumKernel kernel = simd::pick<SumKernel>(simd::best_isa(), sum_avx512, sum_avx2, sum_baseline);
  assert(supported_bits(bits));
  return kernel(a, n, bits);
}
void axpy_codes(float alpha, float beta, const std::uint8_t* codes, std::size_t n, int bits, float* y) {
  static const AxpyKernel kernel = simd::pick<AxpyKernel>(simd::best_isa(), axpy_avx512, axpy_avx2, axpy_baseline);
  assert(supported_bits(bits));
  kernel(alpha, beta, codes, n, bits, y);
}

namespace {
double combine(const PackedVector& a, const PackedVector& b, double d) {
  const double la = a.lo, lb = b.lo, sa = a.step, sb = b.step;
  return static_cast<double>(a.n) * la * lb + la * sb * static_cast<double>(b.code_sum) +
         sa * lb * static_cast<double>(a.code_sum) + sa * sb * d;
}
}  // namespace

double affine_dot(const PackedVector& a, const PackedVector& b) {
  assert(a.n == b.n && a.bits == b.bits);
  return combine(a, b, static_cast<double>(dot_codes(a.bytes.data(), b.bytes.data(), a.n, a.bits)));
}

double affine_dot(const PackedVector& a, const PackedVector& b, simd::Isa isa) {
  assert(a.n == b.n && a.bits == b.bits);
  return combine(a, b, static_cast<double>(dot_codes(a.bytes.data(), b.bytes.data(), a.n, a.bits, isa)));
}

float reference_dot(const PackedVector& a, const PackedVector& b) {
  assert(a.n == b.n && a.bits == b.bits);
  std::vector<std::uint8_t> ka(a.n), kb(b.n);
  unpack(a.bytes.data(), a.n, a.bits, ka.data());
  unpack(b.bytes.data(), b.n, b.bits, kb.data());
  float sum = 0.0f;
  for (std::size_t i = 0; i < a.n; ++i) {
    const float x = a.lo + static_cast<float>(ka[i]) * a.step;
    const float y = b.lo + static_cast<float>(kb[i]) * b.step;
    sum += x * y;
  }
  return sum;
}

}  // namespace fedsim::packed
