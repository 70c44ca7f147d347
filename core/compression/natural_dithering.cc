#include "core/compression/natural_dithering.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>
#include <string>

#include <cstring>

#include "core/base/lane_rng.h"
#include "core/coding/bit_io.h"
#include "core/compression/lane_kernels.h"
#include "core/compression/vector_norms.h"

namespace fedsim {
namespace {

using simd::f32x8;
using simd::i32x8;
using simd::u32x8;

struct DitherParams {
  float pre, scale, top, norm;
  std::int32_t levels;
};

// Dithers m (a multiple of 8) coordinates of a bucket with norm > 0:
//   t = min(|x| pre scale, top); for t >= 1 the exponent of t gives the
//   level below and its mantissa the probability of rounding up; for t < 1
//   the same on t + 1. up = random23 < mantissa (random23 = the low 23 bits
//   of the coordinate's word). code = neg | index << 1 with neg = sign of x
//   when index > 0; rec = +-norm 2^(index - s), 0 for index 0.
[[gnu::always_inline]] inline void dither_impl(const DitherParams& p, const float* x, const std::uint32_t* random,
                                               std::size_t m, float* rec, std::uint32_t* codes) {
  const i32x8 top_bits = i32x8{} + std::bit_cast<std::int32_t>(p.top);
  const i32x8 one_bits = i32x8{} + std::bit_cast<std::int32_t>(1.0f);
  for (std::size_t i = 0; i < m; i += 8) {
    u32x8 xb, r;
    std::memcpy(&xb, x + i, sizeof xb);
    std::memcpy(&r, random + i, sizeof r);
    const i32x8 raw = (i32x8)(((f32x8)(xb & 0x7FFFFFFFu) * p.pre) * p.scale);
    const i32x8 below_top = FEDSIM_SIMD_MASK_LT(raw, top_bits);
    const i32x8 t = (raw & below_top) | (top_bits & ~below_top);
    const i32x8 small = FEDSIM_SIMD_MASK_LT(t, one_bits);
    const i32x8 t1 = (i32x8)((f32x8)t + 1.0f);
    const i32x8 bits = (t1 & small) | (t & ~small);
    const i32x8 up = FEDSIM_SIMD_MASK_LT((i32x8)(r & 0x7FFFFFu), bits & 0x7FFFFF);
    const i32x8 index = (bits >> 23) - 127 + 1 + small - up;
    const i32x8 nonzero = FEDSIM_SIMD_MASK_LT(i32x8{}, index);
    const i32x8 neg = (i32x8)(xb >> 31) & nonzero;
    const i32x8 code = neg | (index << 1);
    const f32x8 level = (f32x8)((index - p.levels + 127) << 23);
    const i32x8 value = nonzero & ((i32x8)(level * p.norm) | (neg << 31));
    std::memcpy(codes + i, &code, sizeof code);
    std::memcpy(rec + i, &value, sizeof value);
  }
}
FEDSIM_TARGET_AVX2 void dither_avx2(const DitherParams& p, const float* x, const std::uint32_t* random, std::size_t m,
                                    float* rec, std::uint32_t* codes) {
  dither_impl(p, x, random, m, rec, codes);
}
void dither_baseline(const DitherParams& p, const float* x, const std::uint32_t* random, std::size_t m, float* rec,
                     std::uint32_t* codes) {
  dither_impl(p, x, random, m, rec, codes);
}

// Any m: a partial group of 8 runs on a zero-padded copy.
void dither(const DitherParams& p, const float* x, const std::uint32_t* random, std::size_t m, float* rec,
            std::uint32_t* codes) {
  static const auto kernel = simd::pick(simd::best_isa(), dither_avx2, dither_avx2, dither_baseline);
  const std::size_t full = m - m % 8;
  kernel(p, x, random, full, rec, codes);
  if (full == m) return;
  float x_pad[8] = {}, rec_pad[8];
  std::uint32_t random_pad[8] = {}, codes_pad[8];
  std::memcpy(x_pad, x + full, (m - full) * sizeof(float));
  std::memcpy(random_pad, random + full, (m - full) * sizeof(std::uint32_t));
  kernel(p, x_pad, random_pad, 8, rec_pad, codes_pad);
  std::memcpy(rec + full, rec_pad, (m - full) * sizeof(float));
  std::memcpy(codes + full, codes_pad, (m - full) * sizeof(std::uint32_t));
}

// Codes -> values; returns false on an index above s or a negative zero.
[[gnu::always_inline]] inline bool undither_impl(const std::uint32_t* codes, std::size_t m, std::int32_t levels,
                                                 float norm, float* out) {
  i32x8 bad = {};
  std::size_t i = 0;
  for (; i + 8 <= m; i += 8) {
    i32x8 code;
    std::memcpy(&code, codes + i, sizeof code);
    const i32x8 neg = code & 1;
    const i32x8 index = code >> 1;
    const i32x8 nonzero = FEDSIM_SIMD_MASK_LT(i32x8{}, index);
    bad |= FEDSIM_SIMD_MASK_LT(i32x8{} + levels, index) | (neg & ~nonzero);
    const f32x8 level = (f32x8)((index - levels + 127) << 23);
    const i32x8 value = nonzero & ((i32x8)(level * norm) | (neg << 31));
    std::memcpy(out + i, &value, sizeof value);
  }
  bool ok = true;
  for (int j = 0; j < 8; ++j) ok = ok && bad[j] == 0;
  for (; i < m; ++i) {
    const std::uint32_t neg = codes[i] & 1u;
    const std::int32_t index = static_cast<std::int32_t>(codes[i] >> 1);
    ok = ok && index <= levels && (index != 0 || neg == 0);
    const float level = index == 0 ? 0.0f : std::ldexp(1.0f, index - levels);
    out[i] = std::bit_cast<float>(std::bit_cast<std::uint32_t>(norm * level) | (neg << 31));
  }
  return ok;
}
FEDSIM_TARGET_AVX2 bool undither_avx2(const std::uint32_t* codes, std::size_t m, std::int32_t levels, float norm,
                                      float* out) {
  return undither_impl(codes, m, levels, norm, out);
}
bool undither_baseline(const std::uint32_t* codes, std::size_t m, std::int32_t levels, float norm, float* out) {
  return undither_impl(codes, m, levels, norm, out);
}

}  // namespace

NaturalDithering::NaturalDithering(std::size_t dim, std::uint32_t levels, Norm norm, std::size_t bucket_size)
    : dim_(dim),
      levels_(levels),
      norm_(norm),
      bucket_size_(bucket_size == 0 || bucket_size > dim ? std::max<std::size_t>(dim, 1) : bucket_size),
      index_bits_(static_cast<int>(std::bit_width(levels))) {
  if (levels < 1 || levels > 64) throw std::invalid_argument("natural_dithering: levels out of range");
}

void NaturalDithering::encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  if (v.size() != dim_ || reconstructed.size() != dim_)
    throw std::invalid_argument("natural_dithering: vector size mismatch");
  const std::size_t n_buckets = dim_ == 0 ? 0 : (dim_ + bucket_size_ - 1) / bucket_size_;
  out.reserve(out.size() + n_buckets * 4 + (dim_ * static_cast<std::size_t>(code_bits()) + 7) / 8);
  const float top = std::ldexp(1.0f, static_cast<int>(levels_) - 1);  // t of level 1
  const int index_bits = index_bits_;
  codes_.resize(kLaneBlock);
  random_.resize(kLaneBlock / 2);
  LaneRng lanes(rng);
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
    const DitherParams params{pre, scale, top, norm, static_cast<std::int32_t>(levels_)};
    for (std::size_t c0 = 0; c0 < len; c0 += kLaneBlock) {
      const std::size_t m = std::min(kLaneBlock, len - c0);
      // 32 random bits per coordinate, two per word of the lanes.
      lanes.fill(random_.data(), (m + 2 * LaneRng::kLanes - 1) / (2 * LaneRng::kLanes));
      dither(params, x + c0, reinterpret_cast<const std::uint32_t*>(random_.data()), m, rec + c0, codes_.data());
      write_codes(w, codes_.data(), m, 1 + index_bits);
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
    static const auto kernel = simd::pick(simd::best_isa(), undither_avx2, undither_avx2, undither_baseline);
    codes_.resize(kLaneBlock);
    for (std::size_t c0 = 0; c0 < len; c0 += kLaneBlock) {
      const std::size_t m = std::min(kLaneBlock, len - c0);
      r.read_codes(code_bits, m, codes_.data());
      if (!kernel(codes_.data(), m, static_cast<std::int32_t>(levels_), norm, dst + c0)) {
        for (std::size_t k = 0; k < m; ++k) {
          const std::uint32_t index = codes_[k] >> 1;
          if (index > levels_)
            throw DecodeError("natural_dithering: level index " + std::to_string(index) + " above s");
          if (index == 0 && (codes_[k] & 1u) != 0) throw DecodeError("natural_dithering: negative zero level");
        }
      }
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
