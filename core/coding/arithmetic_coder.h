// Adaptive arithmetic coding over a small alphabet, with exact integer
// arithmetic: a byte-oriented range coder (32-bit range, carry propagation as
// in LZMA's coder) driven by an adaptive frequency model.
//
// Code length: a stream of n symbols costs the model's ideal code length
// sum_t -log2(f(s_t)/total_t), plus at most ~0.002 bits per symbol for the
// integer division by the total, plus the 32-bit flush. For a long i.i.d.
// stream the adaptive model's learning cost is O(alphabet * log n) bits, so
// the total approaches n * H(empirical) (tests check within 1% + a constant).
//
// Untrusted input: the decoder bounds-checks every byte it reads, rejects any
// state a valid stream cannot reach (code >= range, a target beyond the
// model's total, a direct-bits value that does not fit), and finish() rejects
// unread bytes or a final state different from the encoder's. It never
// allocates; how many symbols to decode is the caller's (trusted) knowledge.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace fedsim {

// Adaptive frequency model over the symbols {0, ..., size-1}. Every symbol
// starts with frequency 1; coding a symbol adds kIncrement to it; when the
// total would exceed kMaxTotal all frequencies are halved (rounded up, so none
// reaches 0). Cumulative frequencies are kept in a Fenwick tree: O(log size)
// per symbol for both ends. Both ends must update identical models.
class AdaptiveModel {
 public:
  static constexpr std::uint32_t kMaxSize = 1u << 13;
  static constexpr std::uint32_t kIncrement = 32;
  static constexpr std::uint32_t kMaxTotal = 1u << 16;

  // 1 <= size <= kMaxSize (std::invalid_argument otherwise: a programmer error;
  // decoders derive sizes from validated header fields).
  explicit AdaptiveModel(std::uint32_t size);

  std::uint32_t size() const { return static_cast<std::uint32_t>(freq_.size()); }
  std::uint32_t total() const { return total_; }
  std::uint32_t frequency(std::uint32_t symbol) const { return freq_[symbol]; }
  // Sum of the frequencies of the symbols below `symbol`.
  std::uint32_t cumulative(std::uint32_t symbol) const {
    // A fixed number of steps (tree_[0] is 0), so that the loop's branch does
    // not depend on the symbol: coded symbols are random, their bits too.
    std::uint32_t sum = 0;
    std::uint32_t i = symbol;
    for (std::uint32_t step = 0; step < depth_; ++step) {
      sum += tree_[i];
      i &= i - 1;
    }
    return sum;
  }
  // The symbol s with cumulative(s) <= target < cumulative(s) + frequency(s);
  // requires target < total(). Sets cum_low = cumulative(s).
  std::uint32_t find(std::uint32_t target, std::uint32_t& cum_low) const;
  void update(std::uint32_t symbol) {
    if (total_ + kIncrement > kMaxTotal) halve();
    freq_[symbol] += kIncrement;
    total_ += kIncrement;
    // A fixed number of steps as in cumulative(); steps beyond the tree add
    // to the spare last entry, which nothing reads.
    const std::uint32_t spare = size() + 1;
    std::uint32_t i = symbol + 1;
    for (std::uint32_t step = 0; step < depth_; ++step) {
      tree_[i < spare ? i : spare] += kIncrement;
      i += i & (~i + 1);
    }
  }

  // Ideal code length in bits of a stream with these symbol counts under this
  // model, in closed form (the product of the adaptive probabilities does not
  // depend on the order): with a = 1/kIncrement, K = counts.size(), n = sum,
  //   bits = [lnG(K a + n) - lnG(K a) - sum_s (lnG(a + c_s) - lnG(a))] / ln 2.
  // Counts may be fractional (expected counts). Ignores the halving, so it is
  // an estimate for streams longer than ~kMaxTotal / kIncrement symbols.
  static double ideal_bits(std::span<const double> counts);

 private:
  void halve();
  void rebuild();

  std::vector<std::uint32_t> freq_;
  std::vector<std::uint32_t> tree_;  // Fenwick tree, 1-based; tree_[0] = 0; a spare entry at the end
  std::uint32_t depth_ = 0;          // bit_width(size): bounds the steps of cumulative() and update()
  std::uint32_t total_ = 0;
  std::uint32_t top_bit_ = 0;  // highest power of two <= size
};

// Appends the coded stream to `out`. Call finish() exactly once at the end;
// the stream is then 4 bytes longer than the renormalisation output.
class ArithmeticEncoder {
 public:
  // Renormalise when fewer than 24 bits of range are left, so that
  // range / total >= 2^8 for totals up to 2^16.
  static constexpr std::uint32_t kTop = 1u << 24;

  explicit ArithmeticEncoder(std::vector<std::uint8_t>& out) : out_(out) {}

  // Inline: the per-symbol loops of the entropy-coded stages call it.
  void encode(std::uint32_t symbol, AdaptiveModel& model) {
    const std::uint32_t r = range_ / model.total();
    low_ += static_cast<std::uint64_t>(r) * model.cumulative(symbol);
    range_ = r * model.frequency(symbol);
    model.update(symbol);
    normalize();
  }
  // `count` (1..16) equiprobable bits: costs exactly `count` bits (up to the
  // truncation of the range).
  void encode_bits(std::uint32_t value, int count);
  void finish();

 private:
  void normalize() {
    while (range_ < kTop) {
      range_ <<= 8;
      shift_low();
    }
  }
  void shift_low();

  std::vector<std::uint8_t>& out_;
  std::uint64_t low_ = 0;  // 32 bits plus a carry bit
  std::uint32_t range_ = 0xFFFFFFFFu;
  std::uint8_t cache_ = 0;      // the last byte not yet written (a carry may still reach it)
  std::uint64_t pending_ = 1;   // cache_ plus this many - 1 bytes of 0xFF awaiting a carry
  bool skip_first_ = true;      // the very first byte is always 0: not written
};

class ArithmeticDecoder {
 public:
  // Throws DecodeError when `in` is shorter than the 4-byte minimum.
  explicit ArithmeticDecoder(std::span<const std::uint8_t> in);

  std::uint32_t decode(AdaptiveModel& model);
  std::uint32_t decode_bits(int count);
  // Throws DecodeError unless every byte was consumed and the final state is
  // the one a valid stream ends in.
  void finish() const;

 private:
  std::uint8_t next_byte();
  void normalize();

  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
  std::uint32_t code_ = 0;  // value - low, always < range_ in a valid stream
  std::uint32_t range_ = 0xFFFFFFFFu;
};

}  // namespace fedsim
