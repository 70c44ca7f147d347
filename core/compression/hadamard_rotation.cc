#include "core/compression/hadamard_rotation.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/compression/vector_norms.h"

namespace fedsim {
namespace {

// In-place Walsh-Hadamard butterflies on a power-of-two block, then the
// 1/sqrt(size) that makes it orthonormal (and its own inverse).
void fwht_scalar(float* x, std::size_t size) {
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

// The same butterflies (each output the same single addition or
// subtraction, so the same floats) on 8 lanes: the first three levels
// inside each vector by shuffles, the others between vectors. size >= 8.
[[gnu::always_inline]] inline void fwht_lanes_impl(float* x, std::size_t size) {
  using simd::f32x8;
  for (std::size_t i = 0; i < size; i += 8) {
    f32x8 v;
    std::memcpy(&v, x + i, sizeof v);
    f32x8 a = __builtin_shufflevector(v, v, 0, 0, 2, 2, 4, 4, 6, 6);
    f32x8 b = __builtin_shufflevector(v, v, 1, 1, 3, 3, 5, 5, 7, 7);
    v = __builtin_shufflevector(a + b, a - b, 0, 8, 2, 10, 4, 12, 6, 14);
    a = __builtin_shufflevector(v, v, 0, 1, 0, 1, 4, 5, 4, 5);
    b = __builtin_shufflevector(v, v, 2, 3, 2, 3, 6, 7, 6, 7);
    v = __builtin_shufflevector(a + b, a - b, 0, 1, 8, 9, 4, 5, 12, 13);
    a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 0, 1, 2, 3);
    b = __builtin_shufflevector(v, v, 4, 5, 6, 7, 4, 5, 6, 7);
    v = __builtin_shufflevector(a + b, a - b, 0, 1, 2, 3, 8, 9, 10, 11);
    std::memcpy(x + i, &v, sizeof v);
  }
  for (std::size_t half = 8; half < size; half <<= 1) {
    for (std::size_t start = 0; start < size; start += 2 * half) {
      for (std::size_t i = start; i < start + half; i += 8) {
        f32x8 a, b;
        std::memcpy(&a, x + i, sizeof a);
        std::memcpy(&b, x + i + half, sizeof b);
        const f32x8 sum = a + b;
        const f32x8 diff = a - b;
        std::memcpy(x + i, &sum, sizeof sum);
        std::memcpy(x + i + half, &diff, sizeof diff);
      }
    }
  }
}
FEDSIM_TARGET_AVX2 void fwht_lanes_avx2(float* x, std::size_t size) { fwht_lanes_impl(x, size); }
void fwht_lanes_baseline(float* x, std::size_t size) { fwht_lanes_impl(x, size); }

void fwht(float* x, std::size_t size, simd::Isa isa) {
  if (size >= 8)
    simd::pick(isa, fwht_lanes_avx2, fwht_lanes_avx2, fwht_lanes_baseline)(x, size);
  else
    fwht_scalar(x, size);
  if (size > 1) {
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(size)));
    for (std::size_t i = 0; i < size; ++i) x[i] *= scale;
  }
}

// All finite iff the largest magnitude is (a NaN anywhere makes it NaN).
bool all_finite(std::span<const float> x) { return std::isfinite(max_abs(x.data(), x.size())); }

void check_size(std::size_t got, std::size_t expected) {
  if (got != expected)
    throw std::invalid_argument("hadamard_rotation: vector of " + std::to_string(got) + " values, built for " +
                                std::to_string(expected));
}

}  // namespace

RandomizedHadamard::RandomizedHadamard(std::size_t dim, std::size_t block) : signs_(dim, 1.0f) {
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
  std::uint64_t bits = 0;
  for (std::size_t i = 0; i < signs_.size(); ++i) {
    if (i % 64 == 0) bits = rng();
    signs_[i] = ((bits >> (i % 64)) & 1) ? -1.0f : 1.0f;
  }
}

void RandomizedHadamard::rotate(std::span<float> x) const {
  check_size(x.size(), signs_.size());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] *= signs_[i];
  for (const Block& b : blocks_) fwht(x.data() + b.offset, b.size, isa_);
}

void RandomizedHadamard::unrotate(std::span<float> x) const {
  check_size(x.size(), signs_.size());
  for (const Block& b : blocks_) fwht(x.data() + b.offset, b.size, isa_);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] *= signs_[i];
}

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
  std::copy(v.begin(), v.end(), rotated_.begin());
  rotate(rotated_);
  inner_->encode(rotated_, rng, out, reconstructed);
  unrotate(reconstructed);
  // decode() rejects what does not rotate back to finite values; so must encode().
  if (!all_finite(reconstructed)) {
    out.resize(start);
    throw std::invalid_argument("hadamard_rotation: the reconstruction overflows float when rotated back");
  }
}

void HadamardRotation::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  check_size(out.size(), map_.dim());
  inner_->decode(payload, out);
  unrotate(out);
  // Finite values near the float limit from a corrupted payload can overflow
  // in the butterflies.
  if (!all_finite(out)) throw DecodeError("hadamard_rotation: decoded values overflow float when rotated back");
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
