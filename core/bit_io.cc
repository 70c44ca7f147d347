#include "core/bit_io.h"

#include <string>

namespace fedsim {

namespace {
int bit_length(std::uint64_t n) { return 64 - std::countl_zero(n); }
}  // namespace

void BitWriter::write_msb_first(std::uint64_t value, int count) {
  // Emit MSB first so that codes read naturally bit by bit.
  for (int i = count - 1; i >= 0; --i) write_bit((value >> i) & 1);
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

void BitWriter::write_omega(std::uint64_t n) {
  // Groups are produced last-to-first; collect then emit.
  std::uint64_t groups[8];
  int lens[8];
  int count = 0;
  while (n > 1) {
    const int len = bit_length(n);
    groups[count] = n;
    lens[count] = len;
    ++count;
    n = static_cast<std::uint64_t>(len - 1);
  }
  for (int i = count - 1; i >= 0; --i) write_msb_first(groups[i], lens[i]);
  write_bit(false);
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
