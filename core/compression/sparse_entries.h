// The sparse entry list: the wire format of the sparsifiers (top_k, rand_k)
// and the `k` / `fraction` settings they share.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "core/base/config.h"
#include "core/coding/bit_io.h"

namespace fedsim {

// The sparse entry list shared by top_k and rand_k: for each entry, in
// increasing position order, Elias gamma of the gap between 1-based positions
// (the first gap is the first position itself), then the value as float32;
// one bit stream, zero padded to a byte at the end. Decoding checks every
// position against n, rejects non-finite values, writes zeros elsewhere and
// requires the stream to end there (DecodeError otherwise).
void write_sparse_entries(BitWriter& writer, std::span<const std::size_t> sorted_indices,
                          std::span<const float> values_at_indices);
void read_sparse_entries(std::span<const std::uint8_t> payload, std::size_t count, std::span<float> out,
                         const char* scheme);

// k for a vector of n coordinates from either setting (k_setting 0 = use fraction).
std::size_t sparse_count(std::size_t n, std::size_t k_setting, double fraction);
// Reads the settings `k` / `fraction` (see above); returns k (0 when fraction
// is used) and sets `fraction`.
std::size_t read_sparse_count_settings(const Config& settings, double& fraction);

}  // namespace fedsim
