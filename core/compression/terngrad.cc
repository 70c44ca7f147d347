#include "core/compression/terngrad.h"

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

// Quantizes m (a multiple of 8) coordinates of a layer with scaler s > 0:
//   p = min(|x|, s) * (1 / s), u = (random >> 8) * 2^-24, keep = u < p,
//   code = keep ? (x < 0 ? 2 : 1) : 0, rec = keep ? +-s : 0.
// u and p are non-negative floats, compared as integers (simd.h).
[[gnu::always_inline]] inline void ternarize_impl(float s, float inv, const float* x, const std::uint32_t* random,
                                                  std::size_t m, float* rec, std::uint32_t* codes) {
  const i32x8 s_bits = i32x8{} + std::bit_cast<std::int32_t>(s);
  for (std::size_t i = 0; i < m; i += 8) {
    u32x8 xb, r;
    std::memcpy(&xb, x + i, sizeof xb);
    std::memcpy(&r, random + i, sizeof r);
    const i32x8 a = (i32x8)(xb & 0x7FFFFFFFu);
    const i32x8 below = FEDSIM_SIMD_MASK_LT(a, s_bits);
    const f32x8 p = (f32x8)((a & below) | (s_bits & ~below)) * inv;
    const f32x8 u = __builtin_convertvector((i32x8)(r >> 8), f32x8) * 0x1.0p-24f;
    const i32x8 keep = FEDSIM_SIMD_MASK_LT((i32x8)u, (i32x8)p);
    const i32x8 neg = (i32x8)(xb >> 31);
    const i32x8 code = keep & (neg + 1);
    const i32x8 value = keep & (s_bits | (neg << 31));
    std::memcpy(codes + i, &code, sizeof code);
    std::memcpy(rec + i, &value, sizeof value);
  }
}
FEDSIM_TARGET_AVX2 void ternarize_avx2(float s, float inv, const float* x, const std::uint32_t* random, std::size_t m,
                                       float* rec, std::uint32_t* codes) {
  ternarize_impl(s, inv, x, random, m, rec, codes);
}
void ternarize_baseline(float s, float inv, const float* x, const std::uint32_t* random, std::size_t m, float* rec,
                        std::uint32_t* codes) {
  ternarize_impl(s, inv, x, random, m, rec, codes);
}

// Any m: a partial group of 8 runs on a zero-padded copy.
void ternarize(float s, float inv, const float* x, const std::uint32_t* random, std::size_t m, float* rec,
               std::uint32_t* codes) {
  static const auto kernel = simd::pick(simd::best_isa(), ternarize_avx2, ternarize_avx2, ternarize_baseline);
  const std::size_t full = m - m % 8;
  kernel(s, inv, x, random, full, rec, codes);
  if (full == m) return;
  float x_pad[8] = {}, rec_pad[8];
  std::uint32_t random_pad[8] = {}, codes_pad[8];
  std::memcpy(x_pad, x + full, (m - full) * sizeof(float));
  std::memcpy(random_pad, random + full, (m - full) * sizeof(std::uint32_t));
  kernel(s, inv, x_pad, random_pad, 8, rec_pad, codes_pad);
  std::memcpy(rec + full, rec_pad, (m - full) * sizeof(float));
  std::memcpy(codes + full, codes_pad, (m - full) * sizeof(std::uint32_t));
}

// Codes -> values; returns false when a code is 3.
[[gnu::always_inline]] inline bool unternarize_impl(const std::uint32_t* codes, std::size_t m, float s, float* out) {
  const i32x8 s_bits = i32x8{} + std::bit_cast<std::int32_t>(s);
  i32x8 bad = {};
  std::size_t i = 0;
  for (; i + 8 <= m; i += 8) {
    i32x8 code;
    std::memcpy(&code, codes + i, sizeof code);
    bad |= FEDSIM_SIMD_MASK_LT(i32x8{} + 2, code);
    const i32x8 nonzero = FEDSIM_SIMD_MASK_LT(i32x8{}, code);
    const i32x8 value = nonzero & (s_bits | ((code >> 1) << 31));
    std::memcpy(out + i, &value, sizeof value);
  }
  bool ok = true;
  for (int j = 0; j < 8; ++j) ok = ok && bad[j] == 0;
  for (; i < m; ++i) {
    ok = ok && codes[i] != 3;
    out[i] = codes[i] == 0 ? 0.0f : (codes[i] == 1 ? s : -s);
  }
  return ok;
}
FEDSIM_TARGET_AVX2 bool unternarize_avx2(const std::uint32_t* codes, std::size_t m, float s, float* out) {
  return unternarize_impl(codes, m, s, out);
}
bool unternarize_baseline(const std::uint32_t* codes, std::size_t m, float s, float* out) {
  return unternarize_impl(codes, m, s, out);
}

// Population standard deviation of the layer (two-pass, in double).
double std_dev(const float* v, std::size_t n) {
  if (n == 0) return 0.0;
  double mean = 0.0;
  for (std::size_t i = 0; i < n; ++i) mean += v[i];
  mean /= static_cast<double>(n);
  double ss = 0.0;
  for (std::size_t i = 0; i < n; ++i) ss += (v[i] - mean) * (v[i] - mean);
  return std::sqrt(ss / static_cast<double>(n));
}

}  // namespace

TernGrad::TernGrad(std::size_t dim, std::vector<Layer> layers, double clip)
    : dim_(dim), layers_(std::move(layers)), clip_(clip) {
  if (layers_.empty()) layers_.push_back(Layer{"all", 0, dim});
  std::size_t next = 0;
  for (const Layer& l : layers_) {
    if (l.offset != next) throw std::invalid_argument("terngrad: layers do not tile the vector");
    next += l.size;
  }
  if (next != dim) throw std::invalid_argument("terngrad: layers do not tile the vector");
}

void TernGrad::encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  if (v.size() != dim_ || reconstructed.size() != dim_) throw std::invalid_argument("terngrad: vector size mismatch");
  // The scalers (the header) first; nothing is written for invalid input.
  std::vector<float> scalers(layers_.size());
  for (std::size_t li = 0; li < layers_.size(); ++li) {
    const float* x = v.data() + layers_[li].offset;
    const std::size_t n = layers_[li].size;
    const float m = max_abs(x, n);
    if (!std::isfinite(m)) throw std::invalid_argument("terngrad: non-finite input");
    scalers[li] = clip_ > 0.0 ? std::min(m, static_cast<float>(clip_ * std_dev(x, n))) : m;
  }
  for (float s_t : scalers) put_f32(out, s_t);
  out.reserve(out.size() + (2 * dim_ + 7) / 8);
  codes_.resize(kLaneBlock);
  random_.resize(kLaneBlock / 2);
  LaneRng lanes(rng);
  BitWriter w(out);
  for (std::size_t li = 0; li < layers_.size(); ++li) {
    const float* x = v.data() + layers_[li].offset;
    float* rec = reconstructed.data() + layers_[li].offset;
    const std::size_t n = layers_[li].size;
    const float s_t = scalers[li];
    if (s_t == 0.0f) {
      std::fill(rec, rec + n, 0.0f);
      continue;
    }
    const float inv = 1.0f / s_t;
    for (std::size_t c0 = 0; c0 < n; c0 += kLaneBlock) {
      const std::size_t m = std::min(kLaneBlock, n - c0);
      // 32 random bits per coordinate, two per word of the lanes.
      lanes.fill(random_.data(), (m + 2 * LaneRng::kLanes - 1) / (2 * LaneRng::kLanes));
      ternarize(s_t, inv, x + c0, reinterpret_cast<const std::uint32_t*>(random_.data()), m, rec + c0,
                codes_.data());
      write_codes(w, codes_.data(), m, 2);
    }
  }
}

void TernGrad::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  if (out.size() != dim_) throw std::invalid_argument("terngrad: output size mismatch");
  ByteReader header(payload);
  std::vector<float> scalers(layers_.size());
  std::uint64_t coded = 0;
  for (std::size_t li = 0; li < layers_.size(); ++li) {
    const float s_t = header.f32();
    if (!std::isfinite(s_t) || std::signbit(s_t))
      throw DecodeError("terngrad: layer scaler " + std::to_string(s_t) + " is not a finite non-negative number");
    scalers[li] = s_t;
    if (s_t != 0.0f) coded += layers_[li].size;
  }
  const std::uint64_t body = (2 * coded + 7) / 8;
  if (header.remaining() != body)
    throw DecodeError("terngrad: payload has " + std::to_string(header.remaining()) + " code bytes, expected " +
                      std::to_string(body));
  BitReader r(header.rest());
  for (std::size_t li = 0; li < layers_.size(); ++li) {
    float* dst = out.data() + layers_[li].offset;
    const std::size_t n = layers_[li].size;
    const float s_t = scalers[li];
    if (s_t == 0.0f) {
      std::fill(dst, dst + n, 0.0f);
      continue;
    }
    static const auto kernel = simd::pick(simd::best_isa(), unternarize_avx2, unternarize_avx2, unternarize_baseline);
    codes_.resize(kLaneBlock);
    for (std::size_t c0 = 0; c0 < n; c0 += kLaneBlock) {
      const std::size_t m = std::min(kLaneBlock, n - c0);
      r.read_codes(2, m, codes_.data());
      if (!kernel(codes_.data(), m, s_t, dst + c0)) throw DecodeError("terngrad: invalid ternary code 3");
    }
  }
  r.expect_end();
}

namespace {

std::unique_ptr<Compressor> make_terngrad(const Config& cfg, StageContext& ctx) {
  const double clip = cfg.get_double("clip", 0.0, 0.0, 1e6);
  return std::make_unique<TernGrad>(ctx.dim, ctx.layers, clip);
}

FEDSIM_REGISTER_STAGE("terngrad", StageKind::kQuantizer, make_terngrad,
                      "TernGrad (Wen et al. 2017): per-layer scaler, ternary {-1,0,1} at 2 bits; unbiased unless clip > 0");

}  // namespace
}  // namespace fedsim
