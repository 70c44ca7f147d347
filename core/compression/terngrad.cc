#include "core/compression/terngrad.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>
#include <string>

#include "core/coding/bit_io.h"

namespace fedsim {
namespace {

float max_abs(const float* v, std::size_t n) {
  std::uint32_t m = 0;
  for (std::size_t i = 0; i < n; ++i) m = std::max(m, std::bit_cast<std::uint32_t>(v[i]) & 0x7FFFFFFFu);
  return std::bit_cast<float>(m);
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
    const float neg_s = -s_t;
    std::uint64_t r = 0;
    for (std::size_t k = 0; k < n; ++k) {
      if ((k & 1) == 0) r = rng();
      const float u = static_cast<float>(static_cast<std::uint32_t>(r >> ((k & 1) ? 8 : 40)) & 0xFFFFFFu) * 0x1.0p-24f;
      const float p = std::min(std::fabs(x[k]), s_t) * inv;  // clipping, when on, caps |g_i| at the scaler
      const bool keep = u < p;
      const bool neg = std::signbit(x[k]);
      const std::uint32_t code = keep ? (neg ? 2u : 1u) : 0u;
      w.write(code, 2);
      rec[k] = keep ? (neg ? neg_s : s_t) : 0.0f;
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
    for (std::size_t k = 0; k < n; ++k) {
      const auto code = static_cast<std::uint32_t>(r.read(2));
      if (code == 3) throw DecodeError("terngrad: invalid ternary code 3");
      dst[k] = code == 0 ? 0.0f : (code == 1 ? s_t : -s_t);
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
