#include "core/coding/arithmetic_coder.h"

#include <bit>
#include <cmath>
#include <stdexcept>
#include <string>

#include "core/base/errors.h"

namespace fedsim {

namespace {
constexpr std::uint32_t kTop = ArithmeticEncoder::kTop;
static_assert(AdaptiveModel::kMaxTotal <= (1u << 16), "range / total must keep >= 8 bits");
static_assert(AdaptiveModel::kMaxSize * 2 <= AdaptiveModel::kMaxTotal, "halving must make room");
}  // namespace

AdaptiveModel::AdaptiveModel(std::uint32_t size) {
  if (size == 0 || size > kMaxSize)
    throw std::invalid_argument("AdaptiveModel: alphabet size " + std::to_string(size) + " outside [1, " +
                                std::to_string(kMaxSize) + "]");
  freq_.assign(size, 1);
  tree_.assign(size + 2, 0);
  top_bit_ = std::bit_floor(size);
  depth_ = static_cast<std::uint32_t>(std::bit_width(size));
  rebuild();
}

void AdaptiveModel::halve() {
  for (auto& f : freq_) f = (f + 1) / 2;
  rebuild();
}

void AdaptiveModel::rebuild() {
  total_ = 0;
  const std::size_t end = freq_.size() + 1;  // the spare entry is not part of the tree
  for (std::size_t i = 1; i < end; ++i) tree_[i] = freq_[i - 1];
  for (std::size_t i = 1; i < end; ++i) {
    total_ += freq_[i - 1];
    const std::size_t parent = i + (i & (~i + 1));
    if (parent < end) tree_[parent] += tree_[i];
  }
}

std::uint32_t AdaptiveModel::find(std::uint32_t target, std::uint32_t& cum_low) const {
  // Fenwick descent: the largest prefix whose sum is <= target.
  std::uint32_t pos = 0;
  std::uint32_t below = 0;
  const std::uint32_t n = size();
  for (std::uint32_t step = top_bit_; step > 0; step >>= 1) {
    const std::uint32_t next = pos + step;
    if (next <= n && below + tree_[next] <= target) {
      pos = next;
      below += tree_[next];
    }
  }
  cum_low = below;
  return pos;  // 0-based symbol: prefix of `pos` symbols sums to <= target
}

double AdaptiveModel::ideal_bits(std::span<const double> counts) {
  const double a = 1.0 / kIncrement;
  const double k = static_cast<double>(counts.size());
  double n = 0.0;
  double nats = 0.0;
  for (double c : counts) {
    if (c <= 0.0) continue;
    n += c;
    nats -= std::lgamma(a + c) - std::lgamma(a);
  }
  nats += std::lgamma(k * a + n) - std::lgamma(k * a);
  return nats / std::log(2.0);
}

// ---------------------------------------------------------------- encoder

void ArithmeticEncoder::shift_low() {
  if (low_ < 0xFF000000u || low_ > 0xFFFFFFFFu) {
    // The pending bytes are final now: add the carry and write them.
    const auto carry = static_cast<std::uint8_t>(low_ >> 32);
    std::uint8_t byte = cache_;
    do {
      if (skip_first_) {
        skip_first_ = false;  // the initial byte sits above the first interval: always 0
      } else {
        out_.push_back(static_cast<std::uint8_t>(byte + carry));
      }
      byte = 0xFF;
    } while (--pending_ != 0);
    cache_ = static_cast<std::uint8_t>(low_ >> 24);
  }
  ++pending_;
  low_ = (low_ & 0x00FFFFFFu) << 8;
}

void ArithmeticEncoder::encode_bits(std::uint32_t value, int count) {
  range_ >>= count;
  low_ += static_cast<std::uint64_t>(range_) * (value & ((1u << count) - 1));
  normalize();
}

void ArithmeticEncoder::finish() {
  // Writes all 32 bits of low, so the decoder's window ends at exactly 0.
  for (int i = 0; i < 5; ++i) shift_low();
}

// ---------------------------------------------------------------- decoder

ArithmeticDecoder::ArithmeticDecoder(std::span<const std::uint8_t> in) : in_(in) {
  if (in_.size() < 4)
    throw DecodeError("arithmetic-coded payload has " + std::to_string(in_.size()) + " bytes, at least 4 expected");
  for (int i = 0; i < 4; ++i) code_ = (code_ << 8) | next_byte();
  if (code_ >= range_) throw DecodeError("arithmetic-coded payload: corrupt first bytes");
}

std::uint8_t ArithmeticDecoder::next_byte() {
  if (pos_ >= in_.size()) throw DecodeError("arithmetic-coded payload truncated after " + std::to_string(pos_) + " bytes");
  return in_[pos_++];
}

void ArithmeticDecoder::normalize() {
  while (range_ < kTop) {
    code_ = (code_ << 8) | next_byte();
    range_ <<= 8;
  }
  if (code_ >= range_) throw DecodeError("arithmetic-coded payload: corrupt stream (code beyond range)");
}

std::uint32_t ArithmeticDecoder::decode(AdaptiveModel& model) {
  const std::uint32_t total = model.total();
  const std::uint32_t r = range_ / total;
  const std::uint32_t target = code_ / r;
  if (target >= total) throw DecodeError("arithmetic-coded payload: corrupt stream (target beyond total)");
  std::uint32_t cum_low = 0;
  const std::uint32_t symbol = model.find(target, cum_low);
  code_ -= r * cum_low;
  range_ = r * model.frequency(symbol);
  model.update(symbol);
  normalize();
  return symbol;
}

std::uint32_t ArithmeticDecoder::decode_bits(int count) {
  range_ >>= count;
  const std::uint32_t value = code_ / range_;
  if (value >> count) throw DecodeError("arithmetic-coded payload: corrupt stream (direct bits out of range)");
  code_ -= value * range_;
  normalize();
  return value;
}

void ArithmeticDecoder::finish() const {
  if (pos_ != in_.size())
    throw DecodeError("arithmetic-coded payload has " + std::to_string(in_.size() - pos_) + " unexpected trailing bytes");
  if (code_ != 0) throw DecodeError("arithmetic-coded payload: final state inconsistent (corrupt stream)");
}

}  // namespace fedsim
