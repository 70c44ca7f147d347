#include "core/compression/natural_dithering.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>
#include <string>

#include "core/coding/bit_io.h"
#include "core/compression/vector_norms.h"

namespace fedsim {

NaturalDithering::NaturalDithering(std::size_t dim, std::uint32_t levels, Norm norm, std::size_t bucket_size)
    : dim_(dim),
      levels_(levels),
      norm_(norm),
      bucket_size_(bucket_size == 0 || bucket_size > dim ? std::max<std::size_t>(dim, 1) : bucket_size),
      index_bits_(static_cast<int>(std::bit_width(levels))) {
  if (levels < 1 || levels > 64) throw std::invalid_argument("natural_dithering: levels out of range");
  level_value_.resize(levels + 1);
  level_value_[0] = 0.0f;
  for (std::uint32_t k = 1; k <= levels; ++k) level_value_[k] = std::ldexp(1.0f, static_cast<int>(k) - static_cast<int>(levels));
}

void NaturalDithering::encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  if (v.size() != dim_ || reconstructed.size() != dim_)
    throw std::invalid_argument("natural_dithering: vector size mismatch");
  const std::size_t n_buckets = dim_ == 0 ? 0 : (dim_ + bucket_size_ - 1) / bucket_size_;
  out.reserve(out.size() + n_buckets * 4 + (dim_ * static_cast<std::size_t>(code_bits()) + 7) / 8);
  const float top = std::ldexp(1.0f, static_cast<int>(levels_) - 1);  // t of level 1
  const int index_bits = index_bits_;
  BitWriter w(out);
  for (std::size_t b0 = 0; b0 < dim_; b0 += bucket_size_) {
    const std::size_t len = std::min(bucket_size_, dim_ - b0);
    const float* x = v.data() + b0;
    float* rec = reconstructed.data() + b0;
    const float norm = bucket_norm(norm_ == Norm::kL2, x, len, "natural_dithering");
    w.write_f32(norm);
    if (norm == 0.0f) {
      std::fill(rec, rec + len, 0.0f);
      continue;
    }
    // t = |v_i| * pre * scale, pre a power of two keeping scale finite.
    float pre = 1.0f;
    float scale = top / norm;
    if (!std::isfinite(scale)) {
      pre = 0x1.0p64f;
      scale = top / (norm * pre);
    }
    std::uint64_t r = 0;
    for (std::size_t k = 0; k < len; ++k) {
      if ((k & 1) == 0) r = rng();
      const std::uint32_t random23 = static_cast<std::uint32_t>(r >> ((k & 1) * 32)) & 0x7FFFFFu;
      const float t = std::min((std::fabs(x[k]) * pre) * scale, top);
      const bool small = t < 1.0f;
      const std::uint32_t bits = std::bit_cast<std::uint32_t>(small ? t + 1.0f : t);
      const std::uint32_t up = random23 < (bits & 0x7FFFFFu) ? 1u : 0u;
      // exponent 127 + j (t in [2^j, 2^(j+1))) -> index j + 1 (+ up); t < 1 -> index up.
      const std::uint32_t index = ((bits >> 23) - 127u) + (small ? 0u : 1u) + up;
      const std::uint32_t neg = (std::bit_cast<std::uint32_t>(x[k]) >> 31) & (index != 0 ? 1u : 0u);
      w.write(neg | (index << 1), 1 + index_bits);
      rec[k] = std::bit_cast<float>(std::bit_cast<std::uint32_t>(norm * level_value_[index]) | (neg << 31));
    }
  }
}

void NaturalDithering::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  if (out.size() != dim_) throw std::invalid_argument("natural_dithering: output size mismatch");
  BitReader r(payload);
  const int code_bits = 1 + index_bits_;
  for (std::size_t b0 = 0; b0 < dim_; b0 += bucket_size_) {
    const std::size_t len = std::min(bucket_size_, dim_ - b0);
    float* dst = out.data() + b0;
    const float norm = read_bucket_norm(r, "natural_dithering");
    if (norm == 0.0f) {
      std::fill(dst, dst + len, 0.0f);
      continue;
    }
    if (r.bits_left_total() < static_cast<std::uint64_t>(len) * static_cast<std::uint64_t>(code_bits))
      throw DecodeError("natural_dithering: payload truncated");
    for (std::size_t k = 0; k < len; ++k) {
      const auto code = static_cast<std::uint32_t>(r.read(code_bits));
      const std::uint32_t neg = code & 1u;
      const std::uint32_t index = code >> 1;
      if (index > levels_) throw DecodeError("natural_dithering: level index " + std::to_string(index) + " above s");
      if (index == 0 && neg) throw DecodeError("natural_dithering: negative zero level");
      dst[k] = std::bit_cast<float>(std::bit_cast<std::uint32_t>(norm * level_value_[index]) | (neg << 31));
    }
  }
  r.expect_end();
}

namespace {

std::unique_ptr<Compressor> make_natural_dithering(const Config& cfg, StageContext& ctx) {
  const auto levels = static_cast<std::uint32_t>(cfg.get_int("levels", 8, 1, 64));
  const std::string p = cfg.get_choice("norm_p", "2", {"2", "inf"});
  const auto bucket = static_cast<std::size_t>(cfg.get_int("bucket", 0, 0, std::int64_t{1} << 40));
  return std::make_unique<NaturalDithering>(ctx.dim, levels,
                                            p == "2" ? NaturalDithering::Norm::kL2 : NaturalDithering::Norm::kInf,
                                            bucket);
}

FEDSIM_REGISTER_STAGE("natural_dithering", StageKind::kQuantizer, make_natural_dithering,
                      "natural dithering D_nat^{p,s} (Horvath et al. 2019): power-of-two levels of |v_i|/||v||_p; unbiased");

}  // namespace
}  // namespace fedsim
