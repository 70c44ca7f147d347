#include "core/compression/sparse_entries.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/base/errors.h"

namespace fedsim {

void write_sparse_entries(BitWriter& writer, std::span<const std::size_t> sorted_indices,
                          std::span<const float> values_at_indices) {
  std::size_t previous = 0;  // 1-based position of the previous entry
  for (std::size_t j = 0; j < sorted_indices.size(); ++j) {
    const std::size_t position = sorted_indices[j] + 1;
    writer.write_gamma(position - previous);
    writer.write_f32(values_at_indices[j]);
    previous = position;
  }
}

void read_sparse_entries(std::span<const std::uint8_t> payload, std::size_t count, std::span<float> out,
                         const char* scheme) {
  const std::size_t n = out.size();
  // Each entry takes at least 33 bits: refuse impossible counts before reading.
  if (count > n || payload.size() * 8 < count * 33)
    throw DecodeError(std::string(scheme) + " payload of " + std::to_string(payload.size()) + " bytes cannot hold " +
                      std::to_string(count) + " entries");
  std::fill(out.begin(), out.end(), 0.0f);
  BitReader reader(payload);
  std::size_t previous = 0;
  for (std::size_t j = 0; j < count; ++j) {
    const std::uint64_t gap = reader.read_gamma();
    if (gap > n - previous)
      throw DecodeError(std::string(scheme) + " entry " + std::to_string(j) + " lies past the end of the vector");
    previous += gap;
    const float value = reader.read_f32();
    if (!std::isfinite(value))
      throw DecodeError(std::string(scheme) + " entry " + std::to_string(j) + " has a non-finite value");
    out[previous - 1] = value;
  }
  reader.expect_end();
}

std::size_t sparse_count(std::size_t n, std::size_t k_setting, double fraction) {
  if (n == 0) return 0;
  if (k_setting > 0) return std::min(k_setting, n);
  const double k = std::ceil(fraction * static_cast<double>(n));
  return std::clamp<std::size_t>(static_cast<std::size_t>(k), 1, n);
}

std::size_t read_sparse_count_settings(const Config& settings, double& fraction) {
  const bool has_k = settings.has("k");
  const bool has_fraction = settings.has("fraction");
  if (has_k && has_fraction) settings.fail("k", "either k or fraction", "both");
  const auto k = settings.get_int("k", 0, 0, std::int64_t{1} << 40);
  if (has_k && k == 0) settings.fail("k", "an integer >= 1", "'0'");
  fraction = settings.get_double("fraction", 0.01, 0.0, 1.0);
  if (!(fraction > 0.0)) settings.fail("fraction", "a number in (0, 1]", std::to_string(fraction));
  return static_cast<std::size_t>(k);
}

}  // namespace fedsim
