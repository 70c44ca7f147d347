#include "core/qsgd.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>
#include <string>

#include "core/bit_io.h"

namespace fedsim {
namespace {

constexpr std::size_t kBlock = 1024;  // coordinates quantized per pass (random draws buffered)
constexpr std::uint32_t kMaxLevels = 1u << 24;

// ||v||_2 accumulated in double (four independent sums keep the loop short).
double l2_norm(const float* v, std::size_t n) {
  double acc[4] = {0, 0, 0, 0};
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; ++k) acc[k] += static_cast<double>(v[i + k]) * static_cast<double>(v[i + k]);
  for (; i < n; ++i) acc[0] += static_cast<double>(v[i]) * static_cast<double>(v[i]);
  return std::sqrt((acc[0] + acc[1]) + (acc[2] + acc[3]));
}

// max|v_i| on the bit patterns: for non-negative floats the integer order is
// the numeric order, and a NaN anywhere yields a NaN (caught by the caller).
float max_abs(const float* v, std::size_t n) {
  std::uint32_t m = 0;
  for (std::size_t i = 0; i < n; ++i) m = std::max(m, std::bit_cast<std::uint32_t>(v[i]) & 0x7FFFFFFFu);
  return std::bit_cast<float>(m);
}

// Two 24-bit uniforms per 64-bit output, each distributed like
// Rng::uniform_float() (as integers in [0, 2^24)).
void draw_uniform24(Rng& rng, std::uint32_t* u, std::size_t n) {
  std::size_t i = 0;
  for (; i + 2 <= n; i += 2) {
    const std::uint64_t x = rng();
    u[i] = static_cast<std::uint32_t>(x >> 40);
    u[i + 1] = static_cast<std::uint32_t>(x >> 8) & 0xFFFFFFu;
  }
  if (i < n) u[i] = static_cast<std::uint32_t>(rng() >> 40);
}

int bit_width_of(std::uint32_t x) { return static_cast<int>(std::bit_width(x)); }

// Scale |v_i| -> a_i = |v_i| * s / norm without overflowing when the norm is
// tiny: both factors pre-multiplied by an exact power of two.
struct Scaling {
  float pre = 1.0f;
  float scale = 0.0f;
};
Scaling make_scaling(float norm, std::uint32_t levels) {
  Scaling sc;
  sc.scale = static_cast<float>(levels) / norm;
  if (!std::isfinite(sc.scale)) {
    sc.pre = 0x1.0p64f;
    sc.scale = static_cast<float>(levels) / (norm * sc.pre);
  }
  return sc;
}

}  // namespace

Qsgd::Qsgd(std::size_t dim, std::uint32_t levels, std::size_t bucket_size, Norm norm, Coding coding)
    : dim_(dim),
      levels_(levels),
      bucket_size_(bucket_size == 0 || bucket_size > dim ? std::max<std::size_t>(dim, 1) : bucket_size),
      norm_(norm),
      coding_(coding),
      fixed_width_(bit_width_of(2 * levels)) {
  if (levels < 1 || levels > kMaxLevels) throw std::invalid_argument("qsgd: levels out of range");
  level_scratch_.resize(2 * kBlock);
}

void Qsgd::encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  if (v.size() != dim_ || reconstructed.size() != dim_) throw std::invalid_argument("qsgd: vector size mismatch");
  const std::uint32_t s = levels_;
  const float s_f = static_cast<float>(s);
  const std::size_t n_buckets = dim_ == 0 ? 0 : (dim_ + bucket_size_ - 1) / bucket_size_;
  if (coding_ == Coding::kFixed)
    out.reserve(out.size() + n_buckets * 4 + (dim_ * static_cast<std::size_t>(fixed_width_) + 7) / 8);
  else
    out.reserve(out.size() + n_buckets * 8 + dim_ / 8 + 16);
  std::uint32_t* const rand = level_scratch_.data();
  std::uint32_t* const signed_level = level_scratch_.data() + kBlock;  // level | sign << 31

  BitWriter w(out);
  for (std::size_t b0 = 0; b0 < dim_; b0 += bucket_size_) {
    const std::size_t len = std::min(bucket_size_, dim_ - b0);
    const float* x = v.data() + b0;
    float* rec = reconstructed.data() + b0;
    const float norm = norm_ == Norm::kL2 ? static_cast<float>(l2_norm(x, len)) : max_abs(x, len);
    if (!std::isfinite(norm)) throw std::invalid_argument("qsgd: non-finite input or norm overflow");
    w.write_f32(norm);
    if (norm == 0.0f) {
      std::fill(rec, rec + len, 0.0f);
      continue;
    }
    const Scaling sc = make_scaling(norm, s);
    const float unit = norm / s_f;
    nonzeros_.clear();
    for (std::size_t c0 = 0; c0 < len; c0 += kBlock) {
      const std::size_t m = std::min(kBlock, len - c0);
      draw_uniform24(rng, rand, m);
      for (std::size_t k = 0; k < m; ++k) {
        const float xv = x[c0 + k];
        const float a = std::min((std::fabs(xv) * sc.pre) * sc.scale, s_f);
        const std::uint32_t l = static_cast<std::uint32_t>(a);
        const float frac = a - static_cast<float>(l);
        const std::uint32_t level = l + (static_cast<float>(rand[k]) * 0x1.0p-24f < frac ? 1u : 0u);
        const std::uint32_t neg = (std::bit_cast<std::uint32_t>(xv) >> 31) & (level != 0 ? 1u : 0u);
        signed_level[k] = level | (neg << 31);
        rec[c0 + k] = std::bit_cast<float>(std::bit_cast<std::uint32_t>(static_cast<float>(level) * unit) | (neg << 31));
      }
      if (coding_ == Coding::kFixed) {
        const int width = fixed_width_;
        for (std::size_t k = 0; k < m; ++k) {
          const std::uint32_t level = signed_level[k] & 0x7FFFFFFFu;
          w.write(signed_level[k] >> 31 ? s - level : s + level, width);
        }
      } else {
        // Elias coding needs the bucket's non-zero count first.
        for (std::size_t k = 0; k < m; ++k)
          if (signed_level[k] != 0) nonzeros_.push_back({c0 + k, signed_level[k]});
      }
    }
    if (coding_ == Coding::kFixed) continue;
    w.write_omega(nonzeros_.size() + 1);
    std::uint64_t last = 0;  // 1-based position of the previous non-zero
    for (const NonZero& nz : nonzeros_) {
      w.write_omega(nz.position + 1 - last);
      last = nz.position + 1;
      w.write_bit(nz.signed_level >> 31);
      w.write_omega(nz.signed_level & 0x7FFFFFFFu);
    }
  }
}

void Qsgd::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  if (out.size() != dim_) throw std::invalid_argument("qsgd: output size mismatch");
  const std::uint32_t s = levels_;
  const float s_f = static_cast<float>(s);
  BitReader r(payload);
  for (std::size_t b0 = 0; b0 < dim_; b0 += bucket_size_) {
    const std::size_t len = std::min(bucket_size_, dim_ - b0);
    float* dst = out.data() + b0;
    const float norm = r.read_f32();
    if (!std::isfinite(norm) || std::signbit(norm))
      throw DecodeError("qsgd: bucket norm " + std::to_string(norm) + " is not a finite non-negative number");
    std::fill(dst, dst + len, 0.0f);
    if (norm == 0.0f) continue;
    const float unit = norm / s_f;
    if (coding_ == Coding::kFixed) {
      for (std::size_t k = 0; k < len; ++k) {
        const std::uint64_t code = r.read(fixed_width_);
        if (code > 2ULL * s) throw DecodeError("qsgd: level code " + std::to_string(code) + " out of range");
        const std::uint32_t neg = code < s ? 1u : 0u;
        const std::uint32_t level = static_cast<std::uint32_t>(neg ? s - code : code - s);
        dst[k] = std::bit_cast<float>(std::bit_cast<std::uint32_t>(static_cast<float>(level) * unit) | (neg << 31));
      }
      continue;
    }
    const std::uint64_t count_plus_one = r.read_omega();
    if (count_plus_one - 1 > len)
      throw DecodeError("qsgd: " + std::to_string(count_plus_one - 1) + " non-zeros in a bucket of " +
                        std::to_string(len));
    std::uint64_t pos = 0;
    for (std::uint64_t k = 0; k + 1 < count_plus_one; ++k) {
      const std::uint64_t gap = r.read_omega();
      if (gap > len - pos) throw DecodeError("qsgd: non-zero position beyond the bucket");
      pos += gap;
      const std::uint32_t neg = r.read_bit() ? 1u : 0u;
      const std::uint64_t level = r.read_omega();
      if (level > s) throw DecodeError("qsgd: level " + std::to_string(level) + " above s = " + std::to_string(s));
      dst[pos - 1] =
          std::bit_cast<float>(std::bit_cast<std::uint32_t>(static_cast<float>(level) * unit) | (neg << 31));
    }
  }
  r.expect_end();
}

namespace {

std::unique_ptr<Compressor> make_qsgd(const Config& cfg, StageContext& ctx) {
  const auto levels = static_cast<std::uint32_t>(cfg.get_int("levels", 15, 1, kMaxLevels));
  const auto bucket = static_cast<std::size_t>(cfg.get_int("bucket", 0, 0, std::int64_t{1} << 40));
  const std::string norm = cfg.get_choice("norm", "l2", {"l2", "max"});
  const std::string coding = cfg.get_choice("coding", "elias", {"elias", "fixed"});
  return std::make_unique<Qsgd>(ctx.dim, levels, bucket, norm == "l2" ? Qsgd::Norm::kL2 : Qsgd::Norm::kMax,
                                coding == "elias" ? Qsgd::Coding::kElias : Qsgd::Coding::kFixed);
}

FEDSIM_REGISTER_STAGE("qsgd", StageKind::kQuantizer, make_qsgd,
                      "QSGD (Alistarh et al. 2017): s levels, per-bucket norm, Elias or fixed-width coding; unbiased");

}  // namespace
}  // namespace fedsim
