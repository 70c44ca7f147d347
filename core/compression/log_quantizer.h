// Logarithmic quantization of sparse key-value gradients, after FastSGD:
// values are mapped to small integers on a log scale and filtered by a
// threshold; keys (positions) are delta-coded with an adaptive bit width.
//
// With M = max|v_i| and codes c = 0 .. C, C = 2^bits - 1, the magnitudes
// are m_c = M * base^-c (base^-c rounded to float32 once, times M in float32;
// the same on both ends). A kept coordinate with m_c' < |v_i| <= m_(c'-1)
// is rounded stochastically to m_(c'-1) (up) or m_c' (lo): up iff
// u (hi - lo) < |v_i| - lo in float32, with u = (r >> 8) 2^-24 for the
// coordinate's 32-bit draw r, as TernGrad draws (so P(up) is the ratio that
// makes the expectation |v_i|, up to float32 rounding: unbiased within a few
// 2^-24 of hi - lo). The draws are one 32-bit word per coordinate, kept or
// not, in index order, from a LaneRng made from the encoder's Rng (one draw
// of it). Below the smallest magnitude m_C the neighbours are
// m_C and 0: no clipping bias, such entries are usually dropped (sent as 0).
// Above: none, M is the top. Hence unbiased for every coordinate not removed
// by the threshold; coordinates with |v_i| < threshold are sent as zero
// (bias -v_i). unbiased() is true only with threshold 0 (the default).
//
// Settings (stage "log_quant"): `base` in (1, 1000] (default 2), `bits` in
// [1, 8] (default 4), and at most one of `threshold` (absolute, >= 0) or
// `relative` (threshold = relative * M, in [0, 1); default 0).
//
// Wire format (one bit stream, LSB-first, zero padded to a byte at the end;
// the decoder knows n, base and bits): M as float32; Elias gamma of (number
// of entries + 1); the entries in blocks of 64 (the last may be shorter),
// each block: 6 bits w, then per entry (gap - 1) in w bits (gap between
// 1-based positions, the first from position 0), a sign bit (1 = negative),
// and c in `bits` bits. w is the bit width of the block's largest gap - 1.
// Decoding throws DecodeError on a non-finite or negative M, a count > n,
// w > 57, a position past n, an entry whose magnitude is 0 (never sent),
// truncation or trailing bits. encode() throws std::invalid_argument on a
// non-finite input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/compression/compressor.h"

namespace fedsim {

class LogQuantizer final : public Compressor {
 public:
  enum class Mode { kAbsolute, kRelative };
  static constexpr std::size_t kBlock = 64;
  static constexpr int kWidthBits = 6;

  LogQuantizer(double base, int bits, Mode mode, double threshold);

  void encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) override;
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) override;
  bool unbiased() const override { return threshold_ == 0.0; }

  // m_c / M for c = 0 .. 2^bits - 1.
  const std::vector<float>& ratios() const { return ratios_; }

 private:
  void fill_magnitudes(float max_abs);  // magnitudes_ = M * ratios_, then a 0
  void write_blocks(bool all);           // pending entries -> stream_, see encode()

  double base_;
  int bits_;
  Mode mode_;
  double threshold_;
  std::vector<float> ratios_;
  std::vector<float> magnitudes_;  // scratch, size 2^bits + 1
  std::vector<std::uint64_t> pairs_;  // scratch of encode(): neighbouring magnitudes (log_quantizer.cc)
  // Scratch of encode(): per pass of coordinates, their random words and
  // entry words (see log_quantizer.cc); the entries not yet written ((gap -
  // 1) | (sign | code << 1) << 40, n < 2^40); the entries' bit stream and its
  // writer's state.
  std::vector<std::uint64_t> random_;
  std::vector<std::uint32_t> words_;
  std::vector<std::uint64_t> pending_entries_;
  std::size_t pending_ = 0;
  std::size_t previous_ = 0;  // 1-based position of the last entry
  std::vector<std::uint8_t> stream_;
  std::size_t stream_byte_ = 0;
  std::uint64_t stream_acc_ = 0;
  int stream_filled_ = 0;
};

}  // namespace fedsim
