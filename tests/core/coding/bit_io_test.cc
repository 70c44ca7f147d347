#include "core/coding/bit_io.h"

#include <gtest/gtest.h>

#include "core/base/rng.h"

namespace fedsim {

TEST(BitIo, UniversalCodesRoundTrip) {
  std::vector<std::uint8_t> buf;
  const std::vector<std::uint64_t> values{1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 100, 1000, 65535, 1ULL << 40, (1ULL << 62) + 3};
  {
    BitWriter w(buf);
    for (auto v : values) {
      w.write_gamma(v);
      w.write_delta(v);
      w.write_omega(v);
      w.write(v & 0x1f, 5);
    }
  }
  BitReader r(buf);
  for (auto v : values) {
    EXPECT_EQ(r.read_gamma(), v);
    EXPECT_EQ(r.read_delta(), v);
    EXPECT_EQ(r.read_omega(), v);
    EXPECT_EQ(r.read(5), v & 0x1f);
  }
  r.expect_end();
}

TEST(BitIo, CodeLengthsMatchDefinitions) {
  auto length = [](auto write) {
    std::vector<std::uint8_t> buf;
    BitWriter w(buf);
    write(w);
    return w.bit_count();
  };
  EXPECT_EQ(length([](BitWriter& w) { w.write_gamma(1); }), 1u);
  EXPECT_EQ(length([](BitWriter& w) { w.write_gamma(5); }), 5u);   // 00101
  EXPECT_EQ(length([](BitWriter& w) { w.write_omega(1); }), 1u);   // 0
  EXPECT_EQ(length([](BitWriter& w) { w.write_omega(2); }), 3u);   // 10 0
  EXPECT_EQ(length([](BitWriter& w) { w.write_omega(16); }), 11u); // 10 100 10000 0
}

TEST(BitIo, TruncatedReadThrows) {
  std::vector<std::uint8_t> buf{0x00};
  BitReader r(buf);
  EXPECT_THROW(r.read_gamma(), DecodeError);
}

// Word-at-a-time writing (counts up to 64, appended streams at any offset)
// gives the same bytes as writing one bit at a time.
TEST(BitIo, WordWritesAndStreamsMatchBitByBit) {
  Rng rng(5);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<std::pair<std::uint64_t, int>> pieces;
    for (int k = 0; k < 40; ++k) pieces.push_back({rng(), static_cast<int>(rng.below(65))});
    std::vector<std::uint8_t> inner;
    std::uint64_t inner_bits = 0;
    {
      BitWriter w(inner);
      for (int k = 0; k < 20; ++k) w.write(pieces[k].first, pieces[k].second);
      inner_bits = w.bit_count();
    }
    std::vector<std::uint8_t> fast{0xAB}, slow{0xAB};  // bytes already there are kept
    {
      BitWriter w(fast);
      const int lead = static_cast<int>(rng.below(64));
      w.write(0x5555555555555555ULL, lead);
      w.write_stream(inner.data(), inner_bits);
      for (int k = 20; k < 40; ++k) w.write(pieces[k].first, pieces[k].second);
      BitWriter s(slow);
      for (int i = 0; i < lead; ++i) s.write_bit((0x5555555555555555ULL >> i) & 1);
      for (const auto& [bits, count] : pieces)
        for (int i = 0; i < count; ++i) s.write_bit((bits >> i) & 1);
      EXPECT_EQ(w.bit_count(), s.bit_count());
    }
    ASSERT_EQ(fast, slow) << "trial " << trial;
  }
}

TEST(BitIo, ReadCodesPeekAndSkip) {
  std::vector<std::uint8_t> buf;
  {
    BitWriter w(buf);
    for (std::uint32_t c = 0; c < 100; ++c) w.write(c % 32, 5);
    w.write_omega(3);
    w.write_omega(1000);
  }
  BitReader r(buf);
  std::vector<std::uint32_t> codes(100);
  r.read_codes(5, codes.size(), codes.data());
  for (std::uint32_t c = 0; c < 100; ++c) EXPECT_EQ(codes[c], c % 32);
  int available = 0;
  const std::uint64_t peeked = r.peek(3, available);
  EXPECT_EQ(available, 3);
  EXPECT_EQ(peeked, BitWriter::kOmegaTable[3].bits);  // "110" read LSB first
  r.skip(3);
  EXPECT_EQ(r.read_omega(), 1000u);
  r.peek(56, available);
  EXPECT_LT(available, 8);  // only the padding is left
  r.expect_end();
  BitReader short_reader(buf);
  EXPECT_THROW(short_reader.read_codes(5, 200, codes.data()), DecodeError);
}

// read_codes() reads what read() would, at every width and start offset,
// up to the last bit of the payload, and leaves the reader where read()
// would (the bits after the codes, the end check).
TEST(BitIo, ReadCodesIsReadForEveryWidthAndOffset) {
  Rng rng(31);
  for (int width = 1; width <= 32; ++width) {
    for (int start : {0, 1, 7, 8, 13, 64}) {
      for (std::size_t n : {0, 1, 7, 8, 9, 100, 1000}) {
        std::vector<std::uint32_t> codes(n);
        for (auto& c : codes) c = static_cast<std::uint32_t>(rng() & BitWriter::mask(width));
        std::vector<std::uint8_t> buf;
        {
          BitWriter w(buf);
          w.write(rng(), start);
          for (std::uint32_t c : codes) w.write(c, width);
          w.write(0x5, 3);
        }
        BitReader r(buf);
        r.read(start);
        std::vector<std::uint32_t> got(n + 1, 0xDEADBEEFu);
        r.read_codes(width, n, got.data());
        got.pop_back();
        EXPECT_EQ(got, codes) << "width " << width << " start " << start << " n " << n;
        EXPECT_EQ(r.read(3), 0x5u) << "width " << width << " start " << start << " n " << n;
        r.expect_end();
        BitReader twice(buf);
        twice.read(start);
        const std::size_t half = n / 2;
        twice.read_codes(width, half, got.data());
        twice.read_codes(width, n - half, got.data() + half);
        EXPECT_EQ(got, codes) << "in two calls: width " << width << " start " << start << " n " << n;
        EXPECT_EQ(twice.read(3), 0x5u);
        twice.expect_end();
      }
    }
  }
}

}  // namespace fedsim
