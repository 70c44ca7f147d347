#include "core/compression/top_k.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

namespace fedsim {

void TopK::encode(std::span<const float> v, Rng&, Bytes& out, std::span<float> reconstructed) {
  const std::size_t n = v.size();
  for (float x : v)
    if (!std::isfinite(x)) throw std::invalid_argument("top_k: input is not finite");
  const std::size_t k = k_for(n);
  order_.resize(n);
  std::iota(order_.begin(), order_.end(), std::size_t{0});
  // A strict total order: larger magnitude first, then lower index.
  auto before = [&v](std::size_t a, std::size_t b) {
    const float ma = std::fabs(v[a]);
    const float mb = std::fabs(v[b]);
    return ma > mb || (ma == mb && a < b);
  };
  if (k < n) std::nth_element(order_.begin(), order_.begin() + static_cast<long>(k), order_.end(), before);
  order_.resize(k);
  std::sort(order_.begin(), order_.end());
  values_.resize(k);
  std::fill(reconstructed.begin(), reconstructed.end(), 0.0f);
  for (std::size_t j = 0; j < k; ++j) {
    values_[j] = v[order_[j]];
    reconstructed[order_[j]] = values_[j];
  }
  BitWriter writer(out);
  write_sparse_entries(writer, order_, values_);
}

void TopK::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  read_sparse_entries(payload, k_for(out.size()), out, "top_k");
}

namespace {

FEDSIM_REGISTER_STAGE(
    "top_k", StageKind::kQuantizer,
    [](const Config& settings, StageContext&) -> std::unique_ptr<Compressor> {
      double fraction = 0.0;
      const std::size_t k = read_sparse_count_settings(settings, fraction);
      return std::make_unique<TopK>(k, fraction);
    },
    "keep the k largest |v_i| (k or fraction, default 1%); gamma-coded gaps + float32 values; biased");

}  // namespace
}  // namespace fedsim
