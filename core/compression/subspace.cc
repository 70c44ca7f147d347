#include "core/compression/subspace.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "core/coding/bit_io.h"

namespace fedsim {
namespace {

// double -> float without the undefined behaviour of an out-of-range cast:
// beyond the float range the result is +-infinity (which the callers reject).
float to_float(double x) {
  if (std::fabs(x) > static_cast<double>(std::numeric_limits<float>::max())) return x > 0 ? HUGE_VALF : -HUGE_VALF;
  return static_cast<float>(x);
}

}  // namespace

Subspace::Subspace(std::size_t dim, double bits_per_dim, std::size_t block, Rounding rounding,
                   std::uint64_t shared_seed)
    : dim_(dim), rounding_(rounding), shared_seed_(shared_seed), map_(dim, block), widths_(dim, 0) {
  if (!(bits_per_dim > 0.0 && bits_per_dim <= kMaxBitsPerDim))
    throw std::invalid_argument("subspace: bits_per_dim must be in (0, 8]");
  const double total = std::floor(bits_per_dim * static_cast<double>(dim));
  code_bits_ = static_cast<std::size_t>(total);
  base_bits_ = std::min<std::size_t>(static_cast<std::size_t>(std::floor(bits_per_dim)), 8);
  extra_ = code_bits_ - base_bits_ * dim;
  if (base_bits_ == 8) extra_ = 0, code_bits_ = 8 * dim;
  sparse_gain_ = rounding == Rounding::kStochastic && base_bits_ == 0 && extra_ > 0
                     ? static_cast<double>(dim) / static_cast<double>(extra_)
                     : 1.0;
  scales_.resize(map_.blocks().size());
  scratch_.resize(dim);
}

std::size_t Subspace::payload_bytes() const { return 4 + 4 * map_.blocks().size() + (code_bits_ + 7) / 8; }

const RandomizedHadamard& Subspace::embedding_for(std::uint32_t nonce) {
  Rng rng = Rng::derive(shared_seed_, Stream::kShared, {kSeedTag, nonce});
  map_.draw_signs(rng);
  // Floyd's algorithm: a uniform E-subset of the coefficients gets b + 1 bits.
  std::fill(widths_.begin(), widths_.end(), static_cast<std::uint8_t>(base_bits_));
  for (std::size_t j = dim_ - extra_; j < dim_; ++j) {
    std::size_t t = static_cast<std::size_t>(rng.below(j + 1));
    if (widths_[t] != base_bits_) t = j;
    widths_[t] = static_cast<std::uint8_t>(base_bits_ + 1);
  }
  return map_;
}

// The value of `code` with `width` bits in a block with this scale; the same
// arithmetic on both ends.
float Subspace::level(std::uint32_t code, int width, float scale) const {
  const double top = static_cast<double>((std::uint32_t{1} << width) - 1);
  if (rounding_ == Rounding::kNearest) {
    const double step = kGaussianStep[static_cast<std::size_t>(width)] * static_cast<double>(scale);
    return to_float((static_cast<double>(code) - 0.5 * top) * step);
  }
  return to_float(static_cast<double>(scale) * (2.0 * static_cast<double>(code) / top - 1.0) * sparse_gain_);
}

void Subspace::encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  if (v.size() != dim_ || reconstructed.size() != dim_)
    throw std::invalid_argument("subspace: vector of " + std::to_string(v.size()) + " values, built for " +
                                std::to_string(dim_));
  for (float x : v)
    if (!std::isfinite(x)) throw std::invalid_argument("subspace: input is not finite");
  const auto nonce = static_cast<std::uint32_t>(rng() >> 32);
  const RandomizedHadamard& map = embedding_for(nonce);
  std::copy(v.begin(), v.end(), scratch_.begin());
  map.rotate(scratch_);
  const auto& blocks = map.blocks();
  for (std::size_t bi = 0; bi < blocks.size(); ++bi) {
    const float* y = scratch_.data() + blocks[bi].offset;
    double s = 0.0;
    if (rounding_ == Rounding::kNearest) {
      for (std::size_t i = 0; i < blocks[bi].size; ++i) s += static_cast<double>(y[i]) * y[i];
      s = std::sqrt(s / static_cast<double>(blocks[bi].size));
    } else {
      for (std::size_t i = 0; i < blocks[bi].size; ++i) s = std::max(s, static_cast<double>(std::fabs(y[i])));
    }
    scales_[bi] = static_cast<float>(s);
    if (!std::isfinite(scales_[bi])) throw std::invalid_argument("subspace: the embedding overflows float");
  }
  const std::size_t start = out.size();
  out.reserve(start + payload_bytes());
  put_u32(out, nonce);
  for (float s : scales_) put_f32(out, s);
  {
    BitWriter w(out);
    for (std::size_t bi = 0; bi < blocks.size(); ++bi) {
      const float scale = scales_[bi];
      for (std::size_t i = blocks[bi].offset; i < blocks[bi].offset + blocks[bi].size; ++i) {
        const int width = widths_[i];
        if (width == 0) {
          scratch_[i] = 0.0f;
          continue;
        }
        const std::uint32_t top = (std::uint32_t{1} << width) - 1;
        std::uint32_t code = 0;
        if (scale > 0.0f) {
          const double y = scratch_[i];
          if (rounding_ == Rounding::kNearest) {
            const double step = kGaussianStep[static_cast<std::size_t>(width)] * static_cast<double>(scale);
            const double t = std::floor(y / step + 0.5 * static_cast<double>(top + 1));
            code = static_cast<std::uint32_t>(std::clamp(t, 0.0, static_cast<double>(top)));
          } else {
            const double t = (y / static_cast<double>(scale) + 1.0) * 0.5 * static_cast<double>(top);
            const double low = std::clamp(std::floor(t), 0.0, static_cast<double>(top));
            code = static_cast<std::uint32_t>(low);
            if (code < top && rng.uniform() < t - low) ++code;
          }
        }
        w.write(code, width);
        scratch_[i] = level(code, width, scale);
      }
    }
  }
  map.unrotate(scratch_);
  if (!std::all_of(scratch_.begin(), scratch_.end(), [](float x) { return std::isfinite(x); })) {
    out.resize(start);
    throw std::invalid_argument("subspace: the reconstruction overflows float when rotated back");
  }
  std::copy(scratch_.begin(), scratch_.end(), reconstructed.begin());
}

void Subspace::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  if (out.size() != dim_)
    throw std::invalid_argument("subspace: vector of " + std::to_string(out.size()) + " values, built for " +
                                std::to_string(dim_));
  if (payload.size() != payload_bytes())
    throw DecodeError("subspace payload has " + std::to_string(payload.size()) + " bytes, expected " +
                      std::to_string(payload_bytes()));
  ByteReader header(payload);
  const std::uint32_t nonce = header.u32();
  for (float& s : scales_) {
    s = header.f32();
    if (!std::isfinite(s) || std::signbit(s))
      throw DecodeError("subspace: block scale " + std::to_string(s) + " is not a finite non-negative number");
  }
  const RandomizedHadamard& map = embedding_for(nonce);
  BitReader r(header.rest());
  const auto& blocks = map.blocks();
  for (std::size_t bi = 0; bi < blocks.size(); ++bi) {
    for (std::size_t i = blocks[bi].offset; i < blocks[bi].offset + blocks[bi].size; ++i) {
      const int width = widths_[i];
      scratch_[i] = width == 0 ? 0.0f : level(static_cast<std::uint32_t>(r.read(width)), width, scales_[bi]);
    }
  }
  r.expect_end();
  map.unrotate(scratch_);
  if (!std::all_of(scratch_.begin(), scratch_.end(), [](float x) { return std::isfinite(x); }))
    throw DecodeError("subspace: decoded values overflow float when rotated back");
  std::copy(scratch_.begin(), scratch_.end(), out.begin());
}

namespace {

FEDSIM_REGISTER_STAGE(
    "subspace", StageKind::kQuantizer,
    [](const Config& settings, StageContext& ctx) -> std::unique_ptr<Compressor> {
      const double r = settings.get_double("bits_per_dim", 1.0, 0.0, Subspace::kMaxBitsPerDim);
      if (!(r > 0.0)) settings.fail("bits_per_dim", "a number in (0, 8]", std::to_string(r));
      const auto block = settings.get_int("block", 1024, 1, std::int64_t{1} << 24);
      if (!std::has_single_bit(static_cast<std::uint64_t>(block)))
        settings.fail("block", "a power of two", std::to_string(block));
      const std::string rounding = settings.get_choice("rounding", "nearest", {"nearest", "stochastic"});
      return std::make_unique<Subspace>(ctx.dim, r, static_cast<std::size_t>(block),
                                        rounding == "nearest" ? Subspace::Rounding::kNearest
                                                              : Subspace::Rounding::kStochastic,
                                        ctx.shared_seed);
    },
    "random-subspace coding: randomized Hadamard embedding, floor(r n) bits for any bits_per_dim r in (0, 8] "
    "(r < 1: a seeded subset of coefficients); rounding nearest (use error_feedback) or stochastic (unbiased)");

}  // namespace
}  // namespace fedsim
