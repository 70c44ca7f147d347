#include "core/bit_io.h"

#include <gtest/gtest.h>

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

}  // namespace fedsim
