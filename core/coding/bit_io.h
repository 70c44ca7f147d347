// Bit-level writing and bounds-checked reading, with the universal integer
// codes the quantizers use (Elias gamma, delta, omega).
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "core/base/errors.h"

namespace fedsim {

// Appends bits LSB-first into a byte vector, a 64-bit word at a time.
//
// While the writer is alive, `out` may hold up to a few words of scratch
// beyond the bits written so far (it grows ahead, into any capacity the
// caller reserved); flush() and the destructor trim it to the exact byte
// length, zero-padding the last byte. Do not look at `out` before then.
class BitWriter {
 public:
  explicit BitWriter(std::vector<std::uint8_t>& out) : out_(out), start_(out.size()), pos_(out.size()) {}
  ~BitWriter() { flush(); }
  BitWriter(const BitWriter&) = delete;
  BitWriter& operator=(const BitWriter&) = delete;

  // Writes the low `count` bits of `bits` (0 <= count <= 64).
  void write(std::uint64_t bits, int count) {
    bits &= mask(count);
    const int before = filled_;  // < 64
    acc_ |= bits << before;
    filled_ += count;
    if (filled_ >= 64) {
      spill();
      filled_ -= 64;
      // The bits that did not fit: bits >> (64 - before), without shifting by 64.
      acc_ = (bits >> 1) >> (63 - before);
    }
  }
  void write_bit(bool b) { write(b ? 1 : 0, 1); }
  void write_u32(std::uint32_t v) { write(v, 32); }
  void write_f32(float f) { write(std::bit_cast<std::uint32_t>(f), 32); }
  // Appends the first `bit_count` bits of an LSB-first bit stream (as a
  // BitWriter wrote it) at the current, not necessarily byte-aligned, position.
  void write_stream(const std::uint8_t* bits, std::uint64_t bit_count);
  // Elias gamma of n >= 1: floor(log2 n) zeros, then n's bits MSB first.
  void write_gamma(std::uint64_t n);
  // Elias delta of n >= 1.
  void write_delta(std::uint64_t n);
  // Elias omega (recursive) of n >= 1, as in QSGD's Elias(k).
  void write_omega(std::uint64_t n) {
    if (n < kOmegaTableSize) {
      const OmegaCode c = kOmegaTable[n];
      write(c.bits, c.length);
    } else {
      write_omega_long(n);
    }
  }
  // Pads to a byte boundary with zero bits and trims `out` to the bytes written.
  void flush();
  // Bits written so far (including the unflushed ones and whatever `out` held before).
  std::uint64_t bit_count() const { return pos_ * 8ULL + static_cast<std::uint64_t>(filled_); }

  static constexpr std::uint64_t mask(int count) { return count >= 64 ? ~0ULL : ((1ULL << count) - 1); }

  // Omega codes of small values, as they are written (first bit in bit 0).
  struct OmegaCode {
    std::uint16_t bits;
    std::uint8_t length;
  };
  static constexpr std::size_t kOmegaTableSize = 256;  // codes of n < 256 are at most 14 bits
  static const std::array<OmegaCode, kOmegaTableSize> kOmegaTable;

 private:
  void spill() {
    if (pos_ + 8 > out_.size()) grow();
    static_assert(std::endian::native == std::endian::little, "BitWriter stores words little-endian");
    std::memcpy(out_.data() + pos_, &acc_, 8);
    pos_ += 8;
  }
  void grow();
  void write_omega_long(std::uint64_t n);
  // MSB-first emission of the low `count` bits of value, for the Elias codes.
  void write_msb_first(std::uint64_t value, int count);

  std::vector<std::uint8_t>& out_;
  std::size_t start_;  // out_.size() when the writer was made
  std::size_t pos_;    // bytes of out_ holding finished output
  std::uint64_t acc_ = 0;
  int filled_ = 0;  // bits in acc_, < 64
};

// An LSB-first bit stream (BitWriter's order) written a word at a time into
// a caller's buffer, without branches or bounds checks (the hot loops of the
// entropy-coded quantizers): every put stores the whole accumulator and
// advances by the whole bytes filled. The caller keeps 8 bytes of room past
// the last byte a put may reach.
struct FastBitWriter {
  std::uint8_t* buffer;
  std::size_t byte = 0;
  std::uint64_t acc = 0;  // the bits of buffer[byte], then zeros
  int filled = 0;         // < 8

  // `bits` < 2^count, count <= 56.
  void put(std::uint64_t bits, int count) {
    acc |= bits << filled;
    filled += count;
    std::memcpy(buffer + byte, &acc, 8);
    byte += static_cast<std::size_t>(filled >> 3);
    acc >>= filled & 56;
    filled &= 7;
  }
  std::uint64_t bit_count() const { return byte * 8 + static_cast<std::uint64_t>(filled); }
};

// Reads what BitWriter wrote; every read is bounds-checked and throws
// DecodeError past the end.
class BitReader {
 public:
  explicit BitReader(std::span<const std::uint8_t> in) : in_(in) {}

  // Reads `count` <= 57 bits.
  std::uint64_t read(int count) {
    if (filled_ < count) refill(count);
    const std::uint64_t v = acc_ & BitWriter::mask(count);
    acc_ = count >= 64 ? 0 : acc_ >> count;
    filled_ -= count;
    return v;
  }
  bool read_bit() { return read(1) != 0; }
  // The next `count` <= 56 bits without consuming them, zero past the end of
  // the payload; `available` gets how many of them are in the payload.
  std::uint64_t peek(int count, int& available) {
    if (filled_ < count) top_up(count);
    available = filled_ < count ? filled_ : count;
    return acc_ & BitWriter::mask(available);
  }
  // Consumes `count` bits, at most the `available` of the last peek().
  void skip(int count) {
    acc_ >>= count;
    filled_ -= count;
  }
  std::uint32_t read_u32() { return static_cast<std::uint32_t>(read(32)); }
  float read_f32() { return std::bit_cast<float>(read_u32()); }
  // `count` codes of `width` <= 32 bits each into out[0, count): one bounds
  // check for all of them.
  void read_codes(int width, std::size_t count, std::uint32_t* out);
  std::uint64_t read_gamma();
  std::uint64_t read_delta();
  std::uint64_t read_omega();

  // Omega codes of at most kOmegaPeekBits bits, indexed by the next
  // kOmegaPeekBits bits of a stream: value | length << 8, or 0 when the code
  // there is longer. For decoders that peek() several codes at once.
  static constexpr int kOmegaPeekBits = 12;
  static const std::array<std::uint16_t, 1u << kOmegaPeekBits> kOmegaDecodeTable;

  std::uint64_t bits_left_total() const {
    return static_cast<std::uint64_t>(in_.size() - pos_) * 8ULL + static_cast<std::uint64_t>(filled_);
  }
  // Throws unless only zero padding (< 8 bits) is left: a payload with bytes
  // to spare is malformed.
  void expect_end() const {
    if (in_.size() - pos_ != 0 || filled_ >= 8 || (acc_ & BitWriter::mask(filled_)) != 0)
      throw DecodeError("payload has " + std::to_string(bits_left_total()) + " unexpected trailing bits");
  }

 private:
  // Makes at least `count` bits available, or throws.
  void refill(int count);
  // Makes up to `count` bits available, as many as the payload has left.
  void top_up(int count);
  std::uint64_t read_omega_slow();

  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;    // next byte of in_ not yet in acc_
  // The low filled_ bits are the next bits of the stream. Bits above them may
  // hold copies of the stream bits that follow (a word load runs ahead);
  // loading those bytes again ORs in the same values.
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
