// CHB's censoring rule: skip iff ||v - last sent||^2 < threshold * ||x_t - x_{t-1}||^2.
#include <gtest/gtest.h>

#include <cmath>

#include "core/base/errors.h"
#include "core/compression/chb_censoring.h"
#include "core/compression/pipeline.h"

namespace fedsim {
namespace {

struct Ends {
  std::unique_ptr<Compressor> tx, rx;
};

Ends make_ends(const std::string& yaml, std::size_t dim) {
  const Config root = Config::parse_string("uplink: " + yaml, "chb.yaml");
  const PipelineSpec spec = PipelineSpec::parse(root, "uplink");
  const std::vector<Layer> layers{Layer{"all", 0, dim}};
  return {spec.make(dim, layers, 3), spec.make(dim, layers, 3)};
}

// Sends v with the given movement (NaN: none) and returns (skipped, decoded).
std::pair<bool, std::vector<float>> send(Ends& e, const std::vector<float>& v, double movement) {
  Rng rng(1);
  Bytes out;
  std::vector<float> rec(v.size()), dec(v.size());
  if (!std::isnan(movement)) e.tx->set_model_movement(movement);
  e.tx->encode(v, rng, out, rec);
  e.rx->decode(out, dec);
  EXPECT_EQ(rec, dec);
  EXPECT_EQ(e.tx->last_skipped(), e.rx->last_skipped());
  if (e.tx->last_skipped()) {
    EXPECT_EQ(out.size(), 1u);
  }
  return {e.tx->last_skipped(), dec};
}

TEST(ChbCensoring, SkipsExactlyWhenTheChangeIsBelowThresholdTimesMovement) {
  Ends e = make_ends("[{chb_censoring: {threshold: 2}}]", 2);
  EXPECT_FALSE(send(e, {1.0f, 0.0f}, NAN).first);  // no movement known: sent
  // change ||(1.5,0)-(1,0)||^2 = 0.25; 2 * 0.2 = 0.4 > 0.25: skipped, the last one reused.
  const auto [skipped, value] = send(e, {1.5f, 0.0f}, 0.2);
  EXPECT_TRUE(skipped);
  EXPECT_EQ(value, (std::vector<float>{1.0f, 0.0f}));
  // 2 * 0.125 = 0.25 is not above the change 0.25: sent (the paper sends when >= tau).
  EXPECT_FALSE(send(e, {1.5f, 0.0f}, 0.125).first);
  // Movement is told per message: without it the next one is sent.
  EXPECT_FALSE(send(e, {1.5f, 0.1f}, NAN).first);
}

TEST(ChbCensoring, ZeroThresholdNeverSkips) {
  Ends e = make_ends("[{chb_censoring: {threshold: 0}}]", 3);
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(send(e, {1.0f, 2.0f, 3.0f}, 10.0).first);
}

TEST(ChbCensoring, DecoderRejectsMalformedPayloads) {
  Ends e = make_ends("[{chb_censoring: {threshold: 1}}]", 2);
  std::vector<float> out(2);
  const std::vector<std::uint8_t> empty, extra{0, 1}, marker{7}, truncated{1, 0, 0};
  EXPECT_THROW(e.rx->decode(empty, out), DecodeError);
  EXPECT_THROW(e.rx->decode(extra, out), DecodeError);
  EXPECT_THROW(e.rx->decode(marker, out), DecodeError);
  EXPECT_THROW(e.rx->decode(truncated, out), DecodeError);
}

TEST(ChbCensoring, NegativeThresholdIsAnInputError) {
  EXPECT_THROW(make_ends("[{chb_censoring: {threshold: -1}}]", 2), InputError);
}

}  // namespace
}  // namespace fedsim
