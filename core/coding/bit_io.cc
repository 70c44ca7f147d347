#include "core/coding/bit_io.h"

#include <algorithm>
#include <string>

namespace fedsim {

namespace {

int bit_length(std::uint64_t n) { return 64 - std::countl_zero(n); }

// The low `count` bits of v in reverse order (1 <= count <= 64).
std::uint64_t reverse_low_bits(std::uint64_t v, int count) {
  v = ((v >> 1) & 0x5555555555555555ULL) | ((v & 0x5555555555555555ULL) << 1);
  v = ((v >> 2) & 0x3333333333333333ULL) | ((v & 0x3333333333333333ULL) << 2);
  v = ((v >> 4) & 0x0F0F0F0F0F0F0F0FULL) | ((v & 0x0F0F0F0F0F0F0F0FULL) << 4);
  return __builtin_bswap64(v) >> (64 - count);
}

// Omega groups are produced last-to-first: n, then len(n) - 1, ... down to 1.
int omega_groups(std::uint64_t n, std::uint64_t (&groups)[8], int (&lengths)[8]) {
  int count = 0;
  while (n > 1) {
    const int len = bit_length(n);
    groups[count] = n;
    lengths[count] = len;
    ++count;
    n = static_cast<std::uint64_t>(len - 1);
  }
  return count;
}

constexpr std::array<BitWriter::OmegaCode, BitWriter::kOmegaTableSize> make_omega_table() {
  std::array<BitWriter::OmegaCode, BitWriter::kOmegaTableSize> table{};
  for (std::uint64_t n = 1; n < BitWriter::kOmegaTableSize; ++n) {
    std::uint64_t groups[8] = {};
    int lengths[8] = {};
    int count = 0;
    for (std::uint64_t m = n; m > 1;) {
      const int len = 64 - std::countl_zero(m);
      groups[count] = m;
      lengths[count] = len;
      ++count;
      m = static_cast<std::uint64_t>(len - 1);
    }
    std::uint32_t bits = 0;
    int pos = 0;
    for (int g = count - 1; g >= 0; --g)
      for (int i = lengths[g] - 1; i >= 0; --i) bits |= static_cast<std::uint32_t>((groups[g] >> i) & 1) << pos++;
    ++pos;  // the terminating 0
    table[n] = {static_cast<std::uint16_t>(bits), static_cast<std::uint8_t>(pos)};
  }
  return table;
}

constexpr int kOmegaPeekBits = BitReader::kOmegaPeekBits;
constexpr std::array<std::uint16_t, 1u << kOmegaPeekBits> make_omega_decode_table() {
  const auto codes = make_omega_table();
  std::array<std::uint16_t, 1u << kOmegaPeekBits> table{};
  for (std::uint32_t n = 1; n < BitWriter::kOmegaTableSize; ++n) {
    const int len = codes[n].length;
    if (len > kOmegaPeekBits) continue;
    for (std::uint32_t rest = 0; rest < (1u << (kOmegaPeekBits - len)); ++rest)
      table[codes[n].bits | (rest << len)] = static_cast<std::uint16_t>(n | (static_cast<std::uint32_t>(len) << 8));
  }
  return table;
}
}  // namespace

constinit const std::array<BitWriter::OmegaCode, BitWriter::kOmegaTableSize> BitWriter::kOmegaTable =
    make_omega_table();
constinit const std::array<std::uint16_t, 1u << BitReader::kOmegaPeekBits> BitReader::kOmegaDecodeTable =
    make_omega_decode_table();

void BitWriter::grow() {
  // Use capacity the caller reserved before reallocating; otherwise grow by
  // half of what this writer has written, so that zero-filling stays O(n).
  const std::size_t need = pos_ + 8;
  std::size_t want = need + std::max<std::size_t>(248, (pos_ - start_) / 2);
  if (out_.capacity() >= need) want = std::min(want, out_.capacity());
  out_.resize(want);
}

void BitWriter::flush() {
  const std::size_t tail = static_cast<std::size_t>(filled_ + 7) / 8;
  if (tail > 0) {
    if (pos_ + tail > out_.size()) out_.resize(pos_ + tail);
    std::memcpy(out_.data() + pos_, &acc_, tail);
    pos_ += tail;
  }
  acc_ = 0;
  filled_ = 0;
  out_.resize(pos_);
}

void BitWriter::write_stream(const std::uint8_t* bits, std::uint64_t bit_count) {
  const std::size_t words = static_cast<std::size_t>(bit_count / 64);
  std::size_t i = 0;
  if (filled_ == 0 && words > 0) {
    // Word-aligned: a plain copy.
    if (pos_ + words * 8 > out_.size()) out_.resize(pos_ + words * 8);
    std::memcpy(out_.data() + pos_, bits, words * 8);
    pos_ += words * 8;
    i = words;
  }
  for (; i < words; ++i) {
    std::uint64_t word;
    std::memcpy(&word, bits + 8 * i, 8);
    write(word, 64);
  }
  const int rest = static_cast<int>(bit_count % 64);
  if (rest > 0) {
    std::uint64_t word = 0;
    std::memcpy(&word, bits + 8 * words, static_cast<std::size_t>(rest + 7) / 8);
    write(word, rest);
  }
}

void BitWriter::write_msb_first(std::uint64_t value, int count) {
  // MSB first, so that codes read naturally bit by bit.
  if (count > 0) write(reverse_low_bits(value, count), count);
}

void BitWriter::write_gamma(std::uint64_t n) {
  const int len = bit_length(n);
  write(0, len - 1);
  write_msb_first(n, len);
}

void BitWriter::write_delta(std::uint64_t n) {
  const int len = bit_length(n);
  write_gamma(static_cast<std::uint64_t>(len));
  write_msb_first(n, len - 1);  // without the leading 1
}

void BitWriter::write_omega_long(std::uint64_t n) {
  std::uint64_t groups[8];
  int lengths[8];
  const int count = omega_groups(n, groups, lengths);
  for (int i = count - 1; i >= 0; --i) write_msb_first(groups[i], lengths[i]);
  write_bit(false);
}

void BitReader::refill(int count) {
  if (in_.size() - pos_ >= 8) {
    // Load a word; keep the whole bytes that fit (filled_ ends in [56, 63]).
    std::uint64_t word;
    std::memcpy(&word, in_.data() + pos_, 8);
    acc_ |= word << filled_;
    const int bytes = (63 - filled_) >> 3;
    pos_ += static_cast<std::size_t>(bytes);
    filled_ += 8 * bytes;
    if (filled_ >= count) return;
  }
  if (static_cast<std::uint64_t>(count) > bits_left_total())
    throw DecodeError("payload truncated: needed " + std::to_string(count) + " more bits");
  while (filled_ < count) {
    acc_ |= static_cast<std::uint64_t>(in_[pos_++]) << filled_;
    filled_ += 8;
  }
}

void BitReader::top_up(int count) {
  if (in_.size() - pos_ >= 8) {
    refill(count);
    return;
  }
  while (filled_ < count && pos_ < in_.size()) {
    acc_ |= static_cast<std::uint64_t>(in_[pos_++]) << filled_;
    filled_ += 8;
  }
}

void BitReader::read_codes(int width, std::size_t count, std::uint32_t* out) {
  if (count > bits_left_total() / static_cast<std::uint64_t>(width))
    throw DecodeError("payload truncated: needed " + std::to_string(count) + " codes of " + std::to_string(width) +
                      " bits");
  const std::uint64_t code_mask = BitWriter::mask(width);
  std::size_t k = 0;
  // Each code from its own unaligned word load while 8 bytes can be loaded at
  // its first byte (a code and its offset in that byte take at most 39 bits):
  // no refill branch.
  std::uint64_t bit = static_cast<std::uint64_t>(pos_) * 8 - static_cast<std::uint64_t>(filled_);
  const std::uint64_t limit = in_.size() >= 8 ? (static_cast<std::uint64_t>(in_.size()) - 7) * 8 : 0;
  if (bit < limit && count > 0) {
    const std::uint64_t w = static_cast<std::uint64_t>(width);
    const std::size_t fast = static_cast<std::size_t>(std::min<std::uint64_t>(count, (limit - bit + w - 1) / w));
    const std::uint8_t* data = in_.data();
    for (; k < fast; ++k) {
      std::uint64_t word;
      std::memcpy(&word, data + bit / 8, 8);
      out[k] = static_cast<std::uint32_t>((word >> (bit % 8)) & code_mask);
      bit += w;
    }
    // The reader's state at `bit`: the rest of its byte in acc_.
    pos_ = static_cast<std::size_t>(bit / 8);
    acc_ = 0;
    filled_ = 0;
    if (bit % 8 != 0) {
      acc_ = static_cast<std::uint64_t>(in_[pos_++]) >> (bit % 8);
      filled_ = 8 - static_cast<int>(bit % 8);
    }
  }
  for (; k < count; ++k) {
    if (filled_ < width) refill(width);
    out[k] = static_cast<std::uint32_t>(acc_ & code_mask);
    acc_ >>= width;
    filled_ -= width;
  }
}

std::uint64_t BitReader::read_gamma() {
  int zeros = 0;
  while (!read_bit()) {
    if (++zeros > 63) throw DecodeError("Elias gamma code longer than 64 bits");
  }
  std::uint64_t n = 1;
  for (int i = 0; i < zeros; ++i) n = (n << 1) | static_cast<std::uint64_t>(read_bit());
  return n;
}

std::uint64_t BitReader::read_delta() {
  const std::uint64_t len = read_gamma();
  if (len > 64) throw DecodeError("Elias delta length " + std::to_string(len) + " exceeds 64 bits");
  std::uint64_t n = 1;
  for (std::uint64_t i = 1; i < len; ++i) n = (n << 1) | static_cast<std::uint64_t>(read_bit());
  return n;
}

std::uint64_t BitReader::read_omega() {
  if (filled_ < kOmegaPeekBits && bits_left_total() >= kOmegaPeekBits) refill(kOmegaPeekBits);
  if (filled_ >= kOmegaPeekBits) {
    const std::uint32_t entry = kOmegaDecodeTable[acc_ & ((1u << kOmegaPeekBits) - 1)];
    const int len = static_cast<int>(entry >> 8);
    if (len > 0) {
      acc_ >>= len;
      filled_ -= len;
      return entry & 0xFFu;
    }
  }
  return read_omega_slow();
}

std::uint64_t BitReader::read_omega_slow() {
  std::uint64_t n = 1;
  while (read_bit()) {
    // The group starts with the 1 just read and has n + 1 bits.
    if (n >= 64) throw DecodeError("Elias omega group longer than 64 bits");
    std::uint64_t group = 1;
    for (std::uint64_t i = 0; i < n; ++i) group = (group << 1) | static_cast<std::uint64_t>(read_bit());
    n = group;
  }
  return n;
}

}  // namespace fedsim
