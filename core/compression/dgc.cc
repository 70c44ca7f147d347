#include "core/compression/dgc.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "core/coding/bit_io.h"
#include "core/compression/sparse_entries.h"

namespace fedsim {

Dgc::Dgc(std::size_t dim, Options options)
    : dim_(dim), options_(options), momentum_(dim, 0.0f), accumulation_(dim, 0.0f) {}

std::size_t Dgc::k_for(std::size_t n) const { return sparse_count(n, options_.k, options_.fraction); }

void Dgc::encode(std::span<const float> g, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  const std::size_t n = dim_;
  if (g.size() != n || reconstructed.size() != n)
    throw std::invalid_argument("dgc: vector of " + std::to_string(g.size()) + " values, built for " +
                                std::to_string(n));
  double sq = 0.0;
  for (float x : g) {
    if (!std::isfinite(x)) throw std::invalid_argument("dgc: input is not finite");
    sq += static_cast<double>(x) * x;
  }
  // Local gradient clipping, then momentum correction.
  const double norm = std::sqrt(sq);
  const float clip = options_.clip_norm > 0.0 && norm > options_.clip_norm
                         ? static_cast<float>(options_.clip_norm / norm)
                         : 1.0f;
  const auto m = static_cast<float>(options_.momentum);
  for (std::size_t i = 0; i < n; ++i) {
    momentum_[i] = m * momentum_[i] + clip * g[i];
    accumulation_[i] += momentum_[i];
    if (!std::isfinite(accumulation_[i])) throw std::invalid_argument("dgc: the accumulated velocity overflows float");
  }
  // Threshold from a sample.
  const std::size_t k = k_for(n);
  chosen_.clear();
  if (n > 0) {
    const auto s = std::max<std::size_t>(1, static_cast<std::size_t>(std::ceil(options_.sample * static_cast<double>(n))));
    sample_.resize(s);
    for (float& x : sample_) x = std::fabs(accumulation_[rng.below(n)]);
    const std::size_t rank = std::clamp<std::size_t>(
        static_cast<std::size_t>(std::ceil(static_cast<double>(s) * static_cast<double>(k) / static_cast<double>(n))), 1, s);
    std::nth_element(sample_.begin(), sample_.begin() + static_cast<long>(rank - 1), sample_.end(), std::greater<>());
    const float threshold = sample_[rank - 1];
    for (std::size_t i = 0; i < n; ++i)
      if (accumulation_[i] != 0.0f && std::fabs(accumulation_[i]) >= threshold) chosen_.push_back(i);
    if (chosen_.size() > k) {
      // Exact selection among the candidates: larger magnitude first, then lower index.
      auto before = [this](std::size_t a, std::size_t b) {
        const float ma = std::fabs(accumulation_[a]);
        const float mb = std::fabs(accumulation_[b]);
        return ma > mb || (ma == mb && a < b);
      };
      std::nth_element(chosen_.begin(), chosen_.begin() + static_cast<long>(k), chosen_.end(), before);
      chosen_.resize(k);
      std::sort(chosen_.begin(), chosen_.end());
    }
  }
  values_.resize(chosen_.size());
  std::fill(reconstructed.begin(), reconstructed.end(), 0.0f);
  for (std::size_t j = 0; j < chosen_.size(); ++j) {
    const std::size_t i = chosen_[j];
    values_[j] = accumulation_[i];
    reconstructed[i] = values_[j];
    // Momentum factor masking.
    accumulation_[i] = 0.0f;
    momentum_[i] = 0.0f;
  }
  put_u32(out, static_cast<std::uint32_t>(chosen_.size()));
  BitWriter writer(out);
  write_sparse_entries(writer, chosen_, values_);
}

void Dgc::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  ByteReader header(payload);
  const std::uint32_t count = header.u32();
  if (count > k_for(out.size()))
    throw DecodeError("dgc: " + std::to_string(count) + " entries, at most " + std::to_string(k_for(out.size())) +
                      " expected");
  read_sparse_entries(header.rest(), count, out, "dgc");
}

namespace {

FEDSIM_REGISTER_STAGE(
    "dgc", StageKind::kQuantizer,
    [](const Config& settings, StageContext& ctx) -> std::unique_ptr<Compressor> {
      Dgc::Options o;
      o.k = read_sparse_count_settings(settings, o.fraction);
      o.momentum = settings.get_double("momentum", 0.9, 0.0, 1.0);
      if (!(o.momentum < 1.0)) settings.fail("momentum", "a number in [0, 1)", std::to_string(o.momentum));
      o.clip_norm = settings.get_double("clip_norm", 0.0, 0.0, 1e30);
      o.sample = settings.get_double("sample", 0.01, 0.0, 1.0);
      if (!(o.sample > 0.0)) settings.fail("sample", "a number in (0, 1]", std::to_string(o.sample));
      return std::make_unique<Dgc>(ctx.dim, o);
    },
    "Deep Gradient Compression: top-k (k or fraction, default 1%) of the momentum-corrected accumulation, "
    "threshold from a sample, momentum factor masking, clip_norm; biased");

}  // namespace
}  // namespace fedsim
