#include "core/compression/powersgd.h"

#include <algorithm>
#include <cmath>
#include <cstring>
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

// out (rows x cols, column-major, float) = P Q^T with P rows x r and Q cols x r
// (column-major float), accumulated in double: the one reconstruction both
// ends compute.
void low_rank_product(const float* p, const float* q, std::size_t rows, std::size_t cols, std::size_t r, float* out) {
  for (std::size_t j = 0; j < cols; ++j) {
    for (std::size_t i = 0; i < rows; ++i) {
      double s = 0.0;
      for (std::size_t k = 0; k < r; ++k) s += static_cast<double>(p[i + k * rows]) * static_cast<double>(q[j + k * cols]);
      out[i + j * rows] = to_float(s);
    }
  }
}

bool all_finite(const float* x, std::size_t n) {
  return std::all_of(x, x + n, [](float v) { return std::isfinite(v); });
}

}  // namespace

PowerSgd::PowerSgd(std::size_t dim, std::vector<Layer> layers, std::size_t rank, std::uint64_t shared_seed)
    : dim_(dim), layers_(std::move(layers)), residual_(dim, 0.0f), corrected_(dim, 0.0f) {
  if (rank == 0) throw std::invalid_argument("powersgd: rank must be >= 1");
  if (layers_.empty()) layers_.push_back(Layer{"all", 0, dim});
  std::size_t next = 0;
  for (std::size_t li = 0; li < layers_.size(); ++li) {
    const Layer& l = layers_[li];
    if (l.offset != next) throw std::invalid_argument("powersgd: layers do not tile the vector");
    next += l.size;
    const bool matrix = l.rows > 0 && l.cols > 0 && l.rows * l.cols == l.size;
    const std::size_t r = matrix ? std::min({rank, l.rows, l.cols}) : 0;
    ranks_.push_back(r);
    q_.emplace_back(r * l.cols);
    if (matrix) {
      Rng rng = Rng::derive(shared_seed, Stream::kShared, {kSeedTag, li});
      for (double& x : q_.back()) x = rng.normal();
      payload_floats_ += r * (l.rows + l.cols);
    } else {
      payload_floats_ += l.size;
    }
  }
  if (next != dim) throw std::invalid_argument("powersgd: layers do not tile the vector");
}

void PowerSgd::encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  if (v.size() != dim_ || reconstructed.size() != dim_)
    throw std::invalid_argument("powersgd: vector of " + std::to_string(v.size()) + " values, built for " +
                                std::to_string(dim_));
  for (std::size_t i = 0; i < dim_; ++i) {
    if (!std::isfinite(v[i])) throw std::invalid_argument("powersgd: input is not finite");
    corrected_[i] = v[i] + residual_[i];
    if (!std::isfinite(corrected_[i])) throw std::invalid_argument("powersgd: input plus residual overflows float");
  }
  const std::size_t start = out.size();
  out.reserve(start + payload_bytes());
  for (std::size_t li = 0; li < layers_.size(); ++li) {
    const Layer& l = layers_[li];
    const float* m = corrected_.data() + l.offset;
    float* rec = reconstructed.data() + l.offset;
    const std::size_t r = ranks_[li];
    if (r == 0) {
      for (std::size_t i = 0; i < l.size; ++i) put_f32(out, m[i]);
      std::copy(m, m + l.size, rec);
      continue;
    }
    const std::size_t rows = l.rows, cols = l.cols;
    std::vector<double>& q = q_[li];
    for (std::size_t k = 0; k < r; ++k) {
      double* qk = q.data() + k * cols;
      if (std::all_of(qk, qk + cols, [](double x) { return x == 0.0; }))
        for (std::size_t j = 0; j < cols; ++j) qk[j] = rng.normal();
    }
    // P = M Q, then Gram-Schmidt (modified, in double).
    work_.assign(rows * r, 0.0);
    for (std::size_t k = 0; k < r; ++k) {
      double* pk = work_.data() + k * rows;
      const double* qk = q.data() + k * cols;
      for (std::size_t j = 0; j < cols; ++j) {
        const double w = qk[j];
        const float* mj = m + j * rows;
        for (std::size_t i = 0; i < rows; ++i) pk[i] += static_cast<double>(mj[i]) * w;
      }
    }
    for (std::size_t k = 0; k < r; ++k) {
      double* pk = work_.data() + k * rows;
      double before = 0.0;
      for (std::size_t i = 0; i < rows; ++i) before += pk[i] * pk[i];
      for (std::size_t c = 0; c < k; ++c) {
        const double* pc = work_.data() + c * rows;
        double dot = 0.0;
        for (std::size_t i = 0; i < rows; ++i) dot += pk[i] * pc[i];
        for (std::size_t i = 0; i < rows; ++i) pk[i] -= dot * pc[i];
      }
      double after = 0.0;
      for (std::size_t i = 0; i < rows; ++i) after += pk[i] * pk[i];
      if (!(after > 1e-60 * before) || after == 0.0) {
        std::fill(pk, pk + rows, 0.0);
      } else {
        const double inv = 1.0 / std::sqrt(after);
        for (std::size_t i = 0; i < rows; ++i) pk[i] *= inv;
      }
    }
    // The factors as sent: P in float, then Q = M^T P from that P.
    factors_.resize(r * (rows + cols));
    float* p_sent = factors_.data();
    float* q_sent = factors_.data() + r * rows;
    for (std::size_t i = 0; i < r * rows; ++i) p_sent[i] = static_cast<float>(work_[i]);
    for (std::size_t k = 0; k < r; ++k) {
      const float* pk = p_sent + k * rows;
      for (std::size_t j = 0; j < cols; ++j) {
        const float* mj = m + j * rows;
        double s = 0.0;
        for (std::size_t i = 0; i < rows; ++i) s += static_cast<double>(mj[i]) * static_cast<double>(pk[i]);
        q_sent[j + k * cols] = to_float(s);
        q[j + k * cols] = static_cast<double>(q_sent[j + k * cols]);
      }
    }
    low_rank_product(p_sent, q_sent, rows, cols, r, rec);
    if (!all_finite(q_sent, r * cols) || !all_finite(rec, l.size)) {
      out.resize(start);
      throw std::invalid_argument("powersgd: the low-rank factors overflow float");
    }
    for (float x : factors_) put_f32(out, x);
  }
  for (std::size_t i = 0; i < dim_; ++i) residual_[i] = corrected_[i] - reconstructed[i];
}

void PowerSgd::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  if (out.size() != dim_)
    throw std::invalid_argument("powersgd: vector of " + std::to_string(out.size()) + " values, built for " +
                                std::to_string(dim_));
  if (payload.size() != payload_bytes())
    throw DecodeError("powersgd payload has " + std::to_string(payload.size()) + " bytes, expected " +
                      std::to_string(payload_bytes()));
  std::size_t pos = 0;
  auto take = [&](float* dst, std::size_t count) {
    std::memcpy(dst, payload.data() + pos, 4 * count);
    pos += 4 * count;
    if (!all_finite(dst, count)) throw DecodeError("powersgd payload has a non-finite value");
  };
  for (std::size_t li = 0; li < layers_.size(); ++li) {
    const Layer& l = layers_[li];
    float* dst = out.data() + l.offset;
    const std::size_t r = ranks_[li];
    if (r == 0) {
      take(dst, l.size);
      continue;
    }
    factors_.resize(r * (l.rows + l.cols));
    take(factors_.data(), factors_.size());
    low_rank_product(factors_.data(), factors_.data() + r * l.rows, l.rows, l.cols, r, dst);
    if (!all_finite(dst, l.size)) throw DecodeError("powersgd: the low-rank product overflows float");
  }
}

namespace {

FEDSIM_REGISTER_STAGE(
    "powersgd", StageKind::kQuantizer,
    [](const Config& settings, StageContext& ctx) -> std::unique_ptr<Compressor> {
      const auto rank = settings.get_int("rank", 2, 1, 1 << 20);
      return std::make_unique<PowerSgd>(ctx.dim, ctx.layers, static_cast<std::size_t>(rank), ctx.shared_seed);
    },
    "PowerSGD: rank-r P Q^T of each weight matrix (rank, default 2) by warm-started power iteration, error "
    "feedback built in; vectors as float32; biased");

}  // namespace
}  // namespace fedsim
