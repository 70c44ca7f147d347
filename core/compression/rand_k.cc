#include "core/compression/rand_k.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/compression/sparse_entries.h"

namespace fedsim {

std::size_t RandK::k_for(std::size_t n) const { return sparse_count(n, k_setting_, fraction_); }

void RandK::encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  const std::size_t n = v.size();
  const std::size_t k = k_for(n);
  // Floyd's algorithm: a uniform k-subset with k draws.
  marked_.resize(n, 0);
  chosen_.clear();
  for (std::size_t j = n - k; j < n; ++j) {
    std::size_t t = static_cast<std::size_t>(rng.below(j + 1));
    if (marked_[t]) t = j;
    marked_[t] = 1;
    chosen_.push_back(t);
  }
  for (std::size_t t : chosen_) marked_[t] = 0;
  std::sort(chosen_.begin(), chosen_.end());
  const float scale = k == 0 ? 0.0f : static_cast<float>(static_cast<double>(n) / static_cast<double>(k));
  values_.resize(k);
  std::fill(reconstructed.begin(), reconstructed.end(), 0.0f);
  for (std::size_t j = 0; j < k; ++j) {
    const float value = v[chosen_[j]] * scale;
    if (!std::isfinite(value)) throw std::invalid_argument("rand_k: input is not finite or overflows when scaled by n/k");
    values_[j] = value;
    reconstructed[chosen_[j]] = value;
  }
  BitWriter writer(out);
  write_sparse_entries(writer, chosen_, values_);
}

void RandK::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  read_sparse_entries(payload, k_for(out.size()), out, "rand_k");
}

namespace {

FEDSIM_REGISTER_STAGE(
    "rand_k", StageKind::kQuantizer,
    [](const Config& settings, StageContext&) -> std::unique_ptr<Compressor> {
      double fraction = 0.0;
      const std::size_t k = read_sparse_count_settings(settings, fraction);
      return std::make_unique<RandK>(k, fraction);
    },
    "k uniformly random coordinates scaled by n/k (k or fraction, default 1%); unbiased");

}  // namespace
}  // namespace fedsim
