#include "core/compression/wyner_ziv.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "core/coding/bit_io.h"

namespace fedsim {
namespace {

// |y / Delta + u| beyond this cannot be decoded in int64 arithmetic exactly.
constexpr double kMaxIndex = 0x1.0p50;

double side_point(double y, double step, double dither) { return y / step + dither; }

// double -> float without the undefined behaviour of an out-of-range cast:
// beyond the float range the result is +-infinity (which the callers reject).
float to_float(double x) {
  if (std::fabs(x) > static_cast<double>(std::numeric_limits<float>::max())) return x > 0 ? HUGE_VALF : -HUGE_VALF;
  return static_cast<float>(x);
}


}  // namespace

std::int64_t wz_quantize(double x, double step, double dither) {
  return static_cast<std::int64_t>(std::floor(x / step + dither + 0.5));
}

std::uint64_t wz_index(std::int64_t m, int modulus_bits) {
  return static_cast<std::uint64_t>(m) & BitWriter::mask(modulus_bits);
}

std::int64_t wz_decode_index(std::uint64_t k, int modulus_bits, double y, double step, double dither) {
  const double t = side_point(y, step, dither);
  const double modulus = std::ldexp(1.0, modulus_bits);
  const double c = std::floor((t - static_cast<double>(k)) / modulus + 0.5);
  return static_cast<std::int64_t>(k) + static_cast<std::int64_t>(c) * (std::int64_t{1} << modulus_bits);
}

float wz_value(std::int64_t m, double step, double dither) {
  return to_float(step * (static_cast<double>(m) - dither));
}

WynerZiv::WynerZiv(std::size_t dim, std::vector<Layer> layers, int bits, std::size_t block, bool use_side_information,
                   std::uint64_t shared_seed)
    : dim_(dim),
      layers_(std::move(layers)),
      bits_(bits),
      block_(block),
      use_side_(use_side_information),
      shared_seed_(shared_seed),
      side_(dim, 0.0f),
      dither_(dim),
      scratch_(dim),
      m_(dim) {
  if (bits < 2 || bits > 16) throw std::invalid_argument("wyner_ziv: bits must be in [2, 16]");
  if (block == 0) throw std::invalid_argument("wyner_ziv: block must be >= 1");
  if (layers_.empty()) layers_.push_back(Layer{"all", 0, dim});
  std::size_t next = 0;
  for (const Layer& l : layers_) {
    if (l.offset != next) throw std::invalid_argument("wyner_ziv: layers do not tile the vector");
    next += l.size;
  }
  if (next != dim) throw std::invalid_argument("wyner_ziv: layers do not tile the vector");
}

void WynerZiv::draw_dither(std::uint32_t nonce) {
  Rng rng = Rng::derive(shared_seed_, Stream::kShared, {kSeedTag, nonce});
  for (double& u : dither_) u = rng.uniform();
}

std::uint32_t WynerZiv::side_hash() const {
  std::uint64_t h = 0x9e3779b97f4a7c15ULL;
  for (float y : side_) h = mix64(h ^ std::bit_cast<std::uint32_t>(y));
  return static_cast<std::uint32_t>(h >> 32);
}

void WynerZiv::encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  if (v.size() != dim_ || reconstructed.size() != dim_)
    throw std::invalid_argument("wyner_ziv: vector of " + std::to_string(v.size()) + " values, built for " +
                                std::to_string(dim_));
  for (float x : v)
    if (!std::isfinite(x)) throw std::invalid_argument("wyner_ziv: input is not finite");
  const auto nonce = static_cast<std::uint32_t>(rng() >> 32);
  draw_dither(nonce);
  std::vector<float> steps(layers_.size(), 0.0f), alphas(layers_.size(), 0.0f);
  for (std::size_t li = 0; li < layers_.size(); ++li) {
    const Layer& l = layers_[li];
    double max_abs = 0.0, xy = 0.0, yy = 0.0;
    for (std::size_t i = l.offset; i < l.offset + l.size; ++i) {
      max_abs = std::max(max_abs, static_cast<double>(std::fabs(v[i])));
      xy += static_cast<double>(v[i]) * side_[i];
      yy += static_cast<double>(side_[i]) * side_[i];
    }
    const auto step = static_cast<float>(2.0 * max_abs / (std::ldexp(1.0, bits_) - 2.0));
    steps[li] = std::isfinite(step) ? step : 0.0f;
    const float alpha = to_float(yy > 0.0 ? xy / yy : 0.0);
    alphas[li] = use_side_ && std::isfinite(alpha) ? alpha : 0.0f;
  }
  const std::size_t start = out.size();
  put_u32(out, nonce);
  put_u32(out, side_hash());
  for (std::size_t li = 0; li < layers_.size(); ++li) {
    put_f32(out, steps[li]);
    put_f32(out, alphas[li]);
  }
  last_side_coordinates_ = 0;
  BitWriter w(out);
  for (std::size_t li = 0; li < layers_.size(); ++li) {
    const Layer& l = layers_[li];
    const double step = steps[li];
    const double alpha = alphas[li];
    if (step == 0.0) {
      std::fill(scratch_.begin() + static_cast<long>(l.offset), scratch_.begin() + static_cast<long>(l.offset + l.size),
                0.0f);
      continue;
    }
    for (std::size_t b0 = l.offset; b0 < l.offset + l.size; b0 += block_) {
      const std::size_t b1 = std::min(b0 + block_, l.offset + l.size);
      for (std::size_t i = b0; i < b1; ++i) m_[i] = wz_quantize(v[i], step, dither_[i]);
      // The smallest modulus 2^w with which the decoder recovers every m of
      // the block from side information y (alpha * last, or 0).
      auto width_for = [&](bool side) {
        double reach = 0.0;
        for (std::size_t i = b0; i < b1; ++i) {
          const double t = side_point(side ? alpha * static_cast<double>(side_[i]) : 0.0, step, dither_[i]);
          if (!(std::fabs(t) < kMaxIndex)) return kMaxWidth + 1;
          reach = std::max(reach, std::fabs(static_cast<double>(m_[i]) - t));
        }
        int width = std::max(1, static_cast<int>(std::floor(std::log2(2.0 * reach + 1.0))));
        for (; width <= kMaxWidth; ++width) {
          bool exact = true;
          for (std::size_t i = b0; i < b1 && exact; ++i)
            exact = wz_decode_index(wz_index(m_[i], width), width, side ? alpha * static_cast<double>(side_[i]) : 0.0,
                                    step, dither_[i]) == m_[i];
          if (exact) break;
        }
        return width;
      };
      const int plain = width_for(false);
      const int with_side = use_side_ && alpha != 0.0 ? width_for(true) : kMaxWidth + 1;
      const bool side = with_side < plain;
      const int width = side ? with_side : plain;
      if (width > kMaxWidth) {
        out.resize(start);
        throw std::invalid_argument("wyner_ziv: a block needs more than 24 bits per coordinate");
      }
      w.write_bit(side);
      w.write(static_cast<std::uint64_t>(width - 1), 5);
      for (std::size_t i = b0; i < b1; ++i) {
        w.write(wz_index(m_[i], width), width);
        scratch_[i] = wz_value(m_[i], step, dither_[i]);
      }
      if (side) last_side_coordinates_ += b1 - b0;
    }
  }
  w.flush();
  if (!std::all_of(scratch_.begin(), scratch_.end(), [](float x) { return std::isfinite(x); })) {
    out.resize(start);
    throw std::invalid_argument("wyner_ziv: the reconstruction overflows float");
  }
  std::copy(scratch_.begin(), scratch_.end(), side_.begin());
  std::copy(scratch_.begin(), scratch_.end(), reconstructed.begin());
}

void WynerZiv::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  if (out.size() != dim_)
    throw std::invalid_argument("wyner_ziv: vector of " + std::to_string(out.size()) + " values, built for " +
                                std::to_string(dim_));
  ByteReader header(payload);
  const std::uint32_t nonce = header.u32();
  const std::uint32_t hash = header.u32();
  if (hash != side_hash())
    throw DecodeError("wyner_ziv: the message was coded against other side information (hash mismatch)");
  std::vector<float> steps(layers_.size()), alphas(layers_.size());
  for (std::size_t li = 0; li < layers_.size(); ++li) {
    steps[li] = header.f32();
    alphas[li] = header.f32();
    if (!std::isfinite(steps[li]) || std::signbit(steps[li]))
      throw DecodeError("wyner_ziv: step " + std::to_string(steps[li]) + " is not a finite non-negative number");
    if (!std::isfinite(alphas[li])) throw DecodeError("wyner_ziv: side-information scale is not finite");
  }
  draw_dither(nonce);
  std::size_t side_coordinates = 0;
  BitReader r(header.rest());
  for (std::size_t li = 0; li < layers_.size(); ++li) {
    const Layer& l = layers_[li];
    const double step = steps[li];
    const double alpha = alphas[li];
    if (step == 0.0) {
      std::fill(scratch_.begin() + static_cast<long>(l.offset), scratch_.begin() + static_cast<long>(l.offset + l.size),
                0.0f);
      continue;
    }
    for (std::size_t b0 = l.offset; b0 < l.offset + l.size; b0 += block_) {
      const std::size_t b1 = std::min(b0 + block_, l.offset + l.size);
      const bool side = r.read_bit();
      const int width = static_cast<int>(r.read(5)) + 1;
      if (width > kMaxWidth) throw DecodeError("wyner_ziv: modulus of 2^" + std::to_string(width) + " out of range");
      for (std::size_t i = b0; i < b1; ++i) {
        const std::uint64_t k = r.read(width);
        const double y = side ? alpha * static_cast<double>(side_[i]) : 0.0;
        if (!(std::fabs(side_point(y, step, dither_[i])) < kMaxIndex))
          throw DecodeError("wyner_ziv: side information out of range for the step");
        scratch_[i] = wz_value(wz_decode_index(k, width, y, step, dither_[i]), step, dither_[i]);
        if (!std::isfinite(scratch_[i])) throw DecodeError("wyner_ziv: decoded value overflows float");
      }
      if (side) side_coordinates += b1 - b0;
    }
  }
  r.expect_end();
  last_side_coordinates_ = side_coordinates;
  std::copy(scratch_.begin(), scratch_.end(), side_.begin());
  std::copy(scratch_.begin(), scratch_.end(), out.begin());
}

namespace {

FEDSIM_REGISTER_STAGE(
    "wyner_ziv", StageKind::kQuantizer,
    [](const Config& settings, StageContext& ctx) -> std::unique_ptr<Compressor> {
      const auto bits = settings.get_int("bits", 4, 2, 16);
      const auto block = settings.get_int("block", 256, 1, std::int64_t{1} << 30);
      const std::string side = settings.get_choice("side_information", "last", {"last", "none"});
      return std::make_unique<WynerZiv>(ctx.dim, ctx.layers, static_cast<int>(bits), static_cast<std::size_t>(block),
                                        side == "last", ctx.shared_seed);
    },
    "Wyner-Ziv nested dithered quantization: sends m mod 2^w per block, the decoder resolves it with its last "
    "decoded update (side_information last|none) as side information; bits (default 4), block 256; unbiased");

}  // namespace
}  // namespace fedsim
