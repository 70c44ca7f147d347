#include "core/compression/hadamard_rotation.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

namespace fedsim {
namespace {

using simd::f32x8;
using simd::u32x8;

// The orthonormal transform's 1/sqrt(size).
float scale_of(std::size_t size) { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(size))); }

// In-place Walsh-Hadamard butterflies on a power-of-two block (without the
// scale).
[[gnu::always_inline]] inline void fwht_scalar(float* x, std::size_t size) {
  for (std::size_t half = 1; half < size; half <<= 1) {
    for (std::size_t start = 0; start < size; start += 2 * half) {
      for (std::size_t i = start; i < start + half; ++i) {
        const float a = x[i];
        const float b = x[i + half];
        x[i] = a + b;
        x[i + half] = a - b;
      }
    }
  }
}

// (Vectors by reference: passing them by value is an ABI matter on the baseline.)
[[gnu::always_inline]] inline void load8(f32x8& v, const float* p) { std::memcpy(&v, p, sizeof v); }
[[gnu::always_inline]] inline void store8(float* p, const f32x8& v) { std::memcpy(p, &v, sizeof v); }

// The first three levels (half = 1, 2, 4) inside one vector, by shuffles.
[[gnu::always_inline]] inline void butterflies_in_vector(f32x8& v) {
  f32x8 a = __builtin_shufflevector(v, v, 0, 0, 2, 2, 4, 4, 6, 6);
  f32x8 b = __builtin_shufflevector(v, v, 1, 1, 3, 3, 5, 5, 7, 7);
  v = __builtin_shufflevector(a + b, a - b, 0, 8, 2, 10, 4, 12, 6, 14);
  a = __builtin_shufflevector(v, v, 0, 1, 0, 1, 4, 5, 4, 5);
  b = __builtin_shufflevector(v, v, 2, 3, 2, 3, 6, 7, 6, 7);
  v = __builtin_shufflevector(a + b, a - b, 0, 1, 8, 9, 4, 5, 12, 13);
  a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 0, 1, 2, 3);
  b = __builtin_shufflevector(v, v, 4, 5, 6, 7, 4, 5, 6, 7);
  v = __builtin_shufflevector(a + b, a - b, 0, 1, 2, 3, 8, 9, 10, 11);
}

// log2(R) levels between R vectors held in registers: v[t] and v[t + h]
// for h = 1, 2, ..., R / 2, lowest level first.
template <int R>
[[gnu::always_inline]] inline void butterflies_across(f32x8 (&v)[R]) {
#pragma GCC unroll 16
  for (int h = 1; h < R; h <<= 1) {
#pragma GCC unroll 16
    for (int t = 0; t < R; ++t) {
      if (t & h) continue;
      const f32x8 a = v[t];
      const f32x8 b = v[t + h];
      v[t] = a + b;
      v[t + h] = a - b;
    }
  }
}

// How a pass ends: kInner stores the butterflies; kScale multiplies by the
// scale; kScaleSigns then by the signs as well (unrotate: D H x).
enum class Finish { kInner, kScale, kScaleSigns };

// D's entries for 8 coordinates from the byte of their sign bits: +1.0f or
// -1.0f, multiplied as the definition does (so that even a NaN comes out as
// it would).
[[gnu::always_inline]] inline void sign_vector(f32x8& s, std::uint8_t bits) {
  const u32x8 shift = {31, 30, 29, 28, 27, 26, 25, 24};
  s = (f32x8)((((u32x8{} + bits) << shift) & 0x80000000u) | 0x3F800000u);
}
[[gnu::always_inline]] inline float sign_of(const std::uint8_t* sign_bits, std::size_t i) {
  return ((sign_bits[i / 8] >> (i % 8)) & 1) ? -1.0f : 1.0f;
}

struct Finisher {
  f32x8 scale;
  const std::uint8_t* sign_bits;  // of the block (8 coordinates a byte), for kScaleSigns
  u32x8 nonfinite;     // bit 31 set once an output has an all-ones exponent
};

template <Finish kFinish>
[[gnu::always_inline]] inline void finish_store(float* x, std::size_t i, f32x8& v, Finisher& f) {
  if constexpr (kFinish != Finish::kInner) v = v * f.scale;
  if constexpr (kFinish == Finish::kScaleSigns) {
    f32x8 sign;
    sign_vector(sign, f.sign_bits[i / 8]);
    v = v * sign;
    f.nonfinite |= ((u32x8)v & 0x7F800000u) + 0x00800000u;
  }
  store8(x + i, v);
}

// The first six levels on each run of 64 coordinates: three inside each of
// eight vectors, three between them. kPreSigns multiplies src by the signs
// first (rotate: H D x). dst may be src.
template <bool kPreSigns, Finish kFinish>
[[gnu::always_inline]] inline void first_pass(const float* src, const std::uint8_t* sign_bits, float* dst, std::size_t size,
                                              Finisher& f) {
  for (std::size_t i = 0; i < size; i += 64) {
    f32x8 v[8];
#pragma GCC unroll 8
    for (int t = 0; t < 8; ++t) {
      load8(v[t], src + i + 8 * t);
      if constexpr (kPreSigns) {
        f32x8 sign;
        sign_vector(sign, sign_bits[i / 8 + t]);
        v[t] = v[t] * sign;
      }
      butterflies_in_vector(v[t]);
    }
    butterflies_across(v);
#pragma GCC unroll 8
    for (int t = 0; t < 8; ++t) finish_store<kFinish>(dst, i + 8 * t, v[t], f);
  }
}

// log2(R) levels from half = `half` (a multiple of 8) up, in place.
template <int R, Finish kFinish>
[[gnu::always_inline]] inline void across_pass(float* x, std::size_t size, std::size_t half, Finisher& f) {
  for (std::size_t start = 0; start < size; start += R * half) {
    for (std::size_t i = start; i < start + half; i += 8) {
      f32x8 v[R];
#pragma GCC unroll 16
      for (int t = 0; t < R; ++t) load8(v[t], x + i + t * half);
      butterflies_across(v);
#pragma GCC unroll 16
      for (int t = 0; t < R; ++t) finish_store<kFinish>(x, i + t * half, v[t], f);
    }
  }
}

template <Finish kFinish>
[[gnu::always_inline]] inline void remaining_levels(float* x, std::size_t size, Finisher& f) {
  std::size_t half = 64;
  while (half < size) {
    const std::size_t left = size / half;  // 2^(levels left)
    if (left > 16) {
      across_pass<8, Finish::kInner>(x, size, half, f);
      half *= 8;
    } else if (left == 16) {
      across_pass<16, kFinish>(x, size, half, f);
      half *= 16;
    } else if (left == 8) {
      across_pass<8, kFinish>(x, size, half, f);
      half *= 8;
    } else if (left == 4) {
      across_pass<4, kFinish>(x, size, half, f);
      half *= 4;
    } else {
      across_pass<2, kFinish>(x, size, half, f);
      half *= 2;
    }
  }
}

// One block of `size` coordinates, src -> dst (dst may be src): forward
// (kForward) x -> H D x, else x -> D H x, with H the orthonormal transform.
// The same float operations in the same order as the definition (signs,
// butterflies level by level, scale, or butterflies, scale, signs) whatever
// the grouping of levels into passes, so the same floats on every path.
// Returns false when an output of the inverse is not finite.
template <bool kForward>
[[gnu::always_inline]] inline bool transform_block(const float* src, const std::uint8_t* sign_bits, float* dst,
                                                   std::size_t offset, std::size_t size) {
  constexpr Finish kLast = kForward ? Finish::kScale : Finish::kScaleSigns;
  src += offset;
  dst += offset;
  if (size >= 64) {
    // offset is a multiple of 64 (blocks come largest first).
    const std::uint8_t* block_bits = sign_bits + offset / 8;
    Finisher f{f32x8{} + scale_of(size), block_bits, u32x8{}};
    if (size == 64) {
      first_pass<kForward, kLast>(src, block_bits, dst, size, f);
    } else {
      first_pass<kForward, Finish::kInner>(src, block_bits, dst, size, f);
      remaining_levels<kLast>(dst, size, f);
    }
    if constexpr (kForward) return true;
    std::uint32_t any = 0;
    for (int j = 0; j < 8; ++j) any |= f.nonfinite[j];
    return (any >> 31) == 0;
  }
  // Blocks of fewer than 64 (a small `block`, or the tail of a dimension
  // that is not a multiple of it): level by level, then the scale and signs.
  for (std::size_t i = 0; i < size; ++i) dst[i] = kForward ? src[i] * sign_of(sign_bits, offset + i) : src[i];
  Finisher f{};
  if (size >= 8) {
    for (std::size_t i = 0; i < size; i += 8) {
      f32x8 v;
      load8(v, dst + i);
      butterflies_in_vector(v);
      store8(dst + i, v);
    }
    for (std::size_t half = 8; half < size; half <<= 1) across_pass<2, Finish::kInner>(dst, size, half, f);
  } else {
    fwht_scalar(dst, size);
  }
  if (size > 1) {
    const float scale = scale_of(size);
    for (std::size_t i = 0; i < size; ++i) dst[i] *= scale;
  }
  if constexpr (kForward) return true;
  bool finite = true;
  for (std::size_t i = 0; i < size; ++i) {
    dst[i] *= sign_of(sign_bits, offset + i);
    finite = finite && std::isfinite(dst[i]);
  }
  return finite;
}

template <bool kForward>
[[gnu::always_inline]] inline bool transform_impl(const float* src, const std::uint8_t* sign_bits, float* dst,
                                                  const RandomizedHadamard::Block* blocks, std::size_t count) {
  bool finite = true;
  for (std::size_t k = 0; k < count; ++k)
    finite &= transform_block<kForward>(src, sign_bits, dst, blocks[k].offset, blocks[k].size);
  return finite;
}

using TransformKernel = bool (*)(const float*, const std::uint8_t*, float*, const RandomizedHadamard::Block*,
                                 std::size_t);

template <bool kForward>
FEDSIM_TARGET_AVX2 bool transform_avx2(const float* src, const std::uint8_t* sign_bits, float* dst,
                                       const RandomizedHadamard::Block* blocks, std::size_t count) {
  return transform_impl<kForward>(src, sign_bits, dst, blocks, count);
}
template <bool kForward>
bool transform_baseline(const float* src, const std::uint8_t* sign_bits, float* dst,
                        const RandomizedHadamard::Block* blocks, std::size_t count) {
  return transform_impl<kForward>(src, sign_bits, dst, blocks, count);
}

template <bool kForward>
TransformKernel transform_kernel(simd::Isa isa) {
  return simd::pick<TransformKernel>(isa, transform_avx2<kForward>, transform_avx2<kForward>,
                                     transform_baseline<kForward>);
}

void check_size(std::size_t got, std::size_t expected) {
  if (got != expected)
    throw std::invalid_argument("hadamard_rotation: vector of " + std::to_string(got) + " values, built for " +
                                std::to_string(expected));
}

}  // namespace

RandomizedHadamard::RandomizedHadamard(std::size_t dim, std::size_t block) : dim_(dim), sign_words_((dim + 63) / 64) {
  if (block == 0 || !std::has_single_bit(block)) throw std::invalid_argument("hadamard_rotation: block must be a power of two");
  std::size_t offset = 0;
  for (; offset + block <= dim; offset += block) blocks_.push_back({offset, block});
  for (std::size_t size = block >> 1; size > 0; size >>= 1) {
    if ((dim - offset) & size) {
      blocks_.push_back({offset, size});
      offset += size;
    }
  }
}

void RandomizedHadamard::draw_signs(Rng& rng) {
  for (std::uint64_t& word : sign_words_) word = rng();
  // Bits past dim stay unused.
}

void RandomizedHadamard::rotate(std::span<const float> x, std::span<float> out) const {
  check_size(x.size(), dim_);
  check_size(out.size(), dim_);
  transform_kernel<true>(isa_)(x.data(), sign_bits(), out.data(), blocks_.data(), blocks_.size());
}

void RandomizedHadamard::rotate(std::span<float> x) const { rotate(x, x); }

bool RandomizedHadamard::unrotate_finite(std::span<float> x) const {
  check_size(x.size(), dim_);
  return transform_kernel<false>(isa_)(x.data(), sign_bits(), x.data(), blocks_.data(), blocks_.size());
}

void RandomizedHadamard::unrotate(std::span<float> x) const { unrotate_finite(x); }

HadamardRotation::HadamardRotation(std::unique_ptr<Compressor> inner, std::size_t dim, std::size_t block,
                                   std::uint64_t shared_seed)
    : inner_(std::move(inner)), map_(dim, block), rotated_(dim) {
  Rng rng = Rng::derive(shared_seed, Stream::kShared, {kSeedTag});
  map_.draw_signs(rng);
}

void HadamardRotation::encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  check_size(v.size(), map_.dim());
  check_size(reconstructed.size(), map_.dim());
  const std::size_t start = out.size();
  map_.rotate(v, rotated_);
  inner_->encode(rotated_, rng, out, reconstructed);
  // decode() rejects what does not rotate back to finite values; so must encode().
  if (!map_.unrotate_finite(reconstructed)) {
    out.resize(start);
    throw std::invalid_argument("hadamard_rotation: the reconstruction overflows float when rotated back");
  }
}

void HadamardRotation::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  check_size(out.size(), map_.dim());
  inner_->decode(payload, out);
  // Finite values near the float limit from a corrupted payload can overflow
  // in the butterflies.
  if (!map_.unrotate_finite(out)) throw DecodeError("hadamard_rotation: decoded values overflow float when rotated back");
}

namespace {

FEDSIM_REGISTER_STAGE(
    "hadamard_rotation", StageKind::kTransform,
    [](const Config& settings, StageContext& ctx) -> std::unique_ptr<Compressor> {
      const auto block = settings.get_int("block", 1024, 1, std::int64_t{1} << 24);
      if (!std::has_single_bit(static_cast<std::uint64_t>(block)))
        settings.fail("block", "a power of two", std::to_string(block));
      return std::make_unique<HadamardRotation>(std::move(ctx.inner), ctx.dim, static_cast<std::size_t>(block),
                                                ctx.shared_seed);
    },
    "randomized Hadamard rotation H D in power-of-two blocks (block, default 1024); flattens v before quantizing");

}  // namespace
}  // namespace fedsim
