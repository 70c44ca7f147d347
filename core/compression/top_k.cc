#include "core/compression/top_k.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <numeric>
#include <stdexcept>
#include <string>

namespace fedsim {

// The exact top-k by a radix select on the magnitudes' bit patterns (for
// non-negative floats the integer order is the numeric order): a histogram
// of the top 15 bits finds the bin holding the k-th largest magnitude, a
// selection among that bin's few members finds it exactly (T), and a last
// pass in index order keeps every |v_i| > T and the first (lowest-index)
// |v_i| == T until there are k: the same set nth_element with the order
// "larger magnitude first, then lower index" gives, already sorted.
void TopK::encode(std::span<const float> v, Rng&, Bytes& out, std::span<float> reconstructed) {
  encode_selection(v, nullptr, out, reconstructed);
}

void TopK::encode_with_memory(std::span<const float> v, std::span<float> memory, Rng&, Bytes& out,
                              std::span<float> reconstructed) {
  if (memory.size() != v.size() || reconstructed.size() != v.size())
    throw std::invalid_argument("top_k: vector, memory and reconstruction sizes differ");
  encode_selection(v, memory.data(), out, reconstructed);
}

// With error feedback (memory not null) the first pass reads v + memory
// without storing it, so that a non-finite u throws with the memory
// untouched; the second stores u over the memory, and the later passes and
// the selection read it there.
void TopK::encode_selection(std::span<const float> v, float* memory, Bytes& out, std::span<float> reconstructed) {
  const std::size_t n = v.size();
  const auto key_of = [](float x) { return std::bit_cast<std::uint32_t>(x) & 0x7FFFFFFFu; };
  constexpr int kShift = 16;
  constexpr std::uint32_t kInf = 0x7F800000u;
  histogram_.assign(std::size_t{1} << (31 - kShift), 0);
  std::uint32_t widest = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t key = key_of(memory != nullptr ? v[i] + memory[i] : v[i]);
    widest = std::max(widest, key);
    ++histogram_[key >> kShift];
  }
  if (widest >= kInf) throw std::invalid_argument("top_k: input is not finite");
  const std::size_t k = k_for(n);
  order_.clear();
  values_.clear();
  const float* u = memory != nullptr ? memory : v.data();
  if (k == 0 && memory != nullptr)
    for (std::size_t i = 0; i < n; ++i) memory[i] = v[i] + memory[i];
  const std::uint32_t* bits = reinterpret_cast<const std::uint32_t*>(u);
  if (k > 0) {
    // The bin of the k-th largest key: `above` keys lie in higher bins.
    std::size_t bin = histogram_.size() - 1, above = 0;
    while (above + histogram_[bin] < k) above += histogram_[bin--];
    candidates_.clear();
    for (std::size_t i = 0; i < n; ++i) {
      if (memory != nullptr) memory[i] = v[i] + memory[i];
      const std::uint32_t key = bits[i] & 0x7FFFFFFFu;
      if ((key >> kShift) == bin) candidates_.push_back(key);
    }
    // T = the (k - above)-th largest key of the bin.
    const std::size_t rank = k - above - 1;
    std::nth_element(candidates_.begin(), candidates_.begin() + static_cast<long>(rank), candidates_.end(),
                     std::greater<std::uint32_t>());
    const std::uint32_t threshold = candidates_[rank];
    const std::size_t greater = above + static_cast<std::size_t>(std::count_if(
                                            candidates_.begin(), candidates_.end(),
                                            [threshold](std::uint32_t key) { return key > threshold; }));
    std::size_t ties = k - greater;  // |v_i| == T taken, lowest indices first
    order_.reserve(k);
    values_.reserve(k);
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t key = bits[i] & 0x7FFFFFFFu;
      if (key < threshold) continue;
      if (key == threshold) {
        if (ties == 0) continue;
        --ties;
      }
      order_.push_back(i);
      values_.push_back(u[i]);
    }
  }
  std::fill(reconstructed.begin(), reconstructed.end(), 0.0f);
  for (std::size_t j = 0; j < k; ++j) reconstructed[order_[j]] = values_[j];
  // memory = u - C(u): u where nothing was sent (u - 0 = u, -0 included), 0 where it was.
  if (memory != nullptr)
    for (std::size_t j = 0; j < k; ++j) memory[order_[j]] = values_[j] - values_[j];
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
