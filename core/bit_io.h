// Bit-level writing and bounds-checked reading, with the universal integer
// codes the quantizers use (Elias gamma, delta, omega).
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "core/errors.h"

namespace fedsim {

// Appends bits LSB-first into a byte vector.
class BitWriter {
 public:
  explicit BitWriter(std::vector<std::uint8_t>& out) : out_(out) {}
  ~BitWriter() { flush(); }

  // Writes the low `count` bits of `bits` (count <= 57).
  void write(std::uint64_t bits, int count) {
    acc_ |= (bits & mask(count)) << filled_;
    filled_ += count;
    while (filled_ >= 8) {
      out_.push_back(static_cast<std::uint8_t>(acc_));
      acc_ >>= 8;
      filled_ -= 8;
    }
  }
  void write_bit(bool b) { write(b ? 1 : 0, 1); }
  void write_u32(std::uint32_t v) { write(v, 32); }
  void write_f32(float f) { write(std::bit_cast<std::uint32_t>(f), 32); }
  // Elias gamma of n >= 1: floor(log2 n) zeros, then n's bits MSB first.
  void write_gamma(std::uint64_t n);
  // Elias delta of n >= 1.
  void write_delta(std::uint64_t n);
  // Elias omega (recursive) of n >= 1, as in QSGD's Elias(k).
  void write_omega(std::uint64_t n);
  // Pads to a byte boundary with zero bits.
  void flush() {
    if (filled_ > 0) {
      out_.push_back(static_cast<std::uint8_t>(acc_));
      acc_ = 0;
      filled_ = 0;
    }
  }
  // Bits written so far (including the unflushed ones).
  std::uint64_t bit_count() const { return out_.size() * 8ULL + static_cast<std::uint64_t>(filled_); }

  static constexpr std::uint64_t mask(int count) { return count >= 64 ? ~0ULL : ((1ULL << count) - 1); }

 private:
  // MSB-first emission of the top `count` bits of value, for the Elias codes.
  void write_msb_first(std::uint64_t value, int count);

  std::vector<std::uint8_t>& out_;
  std::uint64_t acc_ = 0;
  int filled_ = 0;
};

// Reads what BitWriter wrote; every read is bounds-checked and throws
// DecodeError past the end.
class BitReader {
 public:
  explicit BitReader(std::span<const std::uint8_t> in) : in_(in) {}

  std::uint64_t read(int count) {
    if (count > static_cast<int>(bits_left_total()))
      throw DecodeError("payload truncated: needed " + std::to_string(count) + " more bits");
    while (filled_ < count) {
      acc_ |= static_cast<std::uint64_t>(in_[pos_++]) << filled_;
      filled_ += 8;
    }
    const std::uint64_t v = acc_ & BitWriter::mask(count);
    acc_ = count >= 64 ? 0 : acc_ >> count;
    filled_ -= count;
    return v;
  }
  bool read_bit() { return read(1) != 0; }
  std::uint32_t read_u32() { return static_cast<std::uint32_t>(read(32)); }
  float read_f32() { return std::bit_cast<float>(read_u32()); }
  std::uint64_t read_gamma();
  std::uint64_t read_delta();
  std::uint64_t read_omega();

  std::uint64_t bits_left_total() const {
    return static_cast<std::uint64_t>(in_.size() - pos_) * 8ULL + static_cast<std::uint64_t>(filled_);
  }
  // Throws unless only zero padding (< 8 bits) is left: a payload with bytes
  // to spare is malformed.
  void expect_end() const {
    if (in_.size() - pos_ != 0 || (filled_ > 0 && acc_ != 0))
      throw DecodeError("payload has " + std::to_string(bits_left_total()) + " unexpected trailing bits");
  }

 private:
  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
  std::uint64_t acc_ = 0;
  int filled_ = 0;
};

// Little-endian byte-aligned helpers for headers.
inline void put_u32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
inline void put_f32(std::vector<std::uint8_t>& out, float f) { put_u32(out, std::bit_cast<std::uint32_t>(f)); }

// A byte cursor over a payload; every read is bounds-checked.
class ByteReader {
 public:
  explicit ByteReader(std::span<const std::uint8_t> in) : in_(in) {}
  std::uint32_t u32() {
    need(4);
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(in_[pos_ + i]) << (8 * i);
    pos_ += 4;
    return v;
  }
  float f32() { return std::bit_cast<float>(u32()); }
  std::uint8_t u8() {
    need(1);
    return in_[pos_++];
  }
  std::span<const std::uint8_t> take(std::size_t n) {
    need(n);
    auto s = in_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  std::span<const std::uint8_t> rest() { return take(in_.size() - pos_); }
  std::size_t remaining() const { return in_.size() - pos_; }
  void expect_end() const {
    if (pos_ != in_.size()) throw DecodeError("payload has " + std::to_string(in_.size() - pos_) + " unexpected trailing bytes");
  }

 private:
  void need(std::size_t n) const {
    if (in_.size() - pos_ < n) throw DecodeError("payload truncated: needed " + std::to_string(n) + " more bytes");
  }
  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
};

}  // namespace fedsim
