// The codec link: both ends of a client's uplink, the frame around the
// payload, and the rejection of anything that does not come from the
// client's own encoder.
#include <gtest/gtest.h>

#include <string>

#include "core/base/config.h"
#include "core/base/errors.h"
#include "core/wire/codec_link.h"
#include "wire.pb.h"  // generated from core/wire/wire.proto

namespace fedsim {
namespace {

PipelineSpec pipeline(const std::string& yaml) {
  const Config root = Config::parse_string(yaml, "link.yaml");
  return PipelineSpec::parse(root, "uplink");
}

CodecSpec spec_of(const std::string& uplink_yaml, std::size_t dim = 64) {
  CodecSpec spec;
  spec.uplink = pipeline(uplink_yaml);
  spec.dim = dim;
  spec.layers = {Layer{"all", 0, dim}};
  spec.seed = 42;
  return spec;
}

arma::fvec ramp(std::size_t n, float scale) {
  arma::fvec v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = scale * (static_cast<float>(i % 7) - 3.0f);
  return v;
}

UpdateHeader header_for(std::uint32_t client) {
  UpdateHeader h;
  h.client = client;
  h.round = 3;
  h.base_version = 2;
  h.num_samples = 17;
  h.train_loss = 0.625f;
  return h;
}

TEST(CodecLink, SharedSeedsKeepTheirFormulas) {
  // Changing these moves every number of a scenario with a seeded stage.
  EXPECT_EQ(uplink_shared_seed(1, 0), mix64(1));
  EXPECT_EQ(uplink_shared_seed(7, 5), mix64(7 ^ (5ULL << 20)));
  EXPECT_EQ(downlink_shared_seed(7), mix64(7 ^ 0xd0d0d0d0ULL));
}

TEST(CodecLink, ServerReadsEveryFieldFromTheBytes) {
  const CodecSpec spec = spec_of("uplink: [hadamard_rotation, {qsgd: {levels: 8, bucket: 16}}, zstd]\n");
  CodecLink link(spec, 5);
  const arma::fvec v = ramp(spec.dim, 0.1f);
  Rng rng(9);
  const std::string bytes = link.send_update(header_for(5), {v.memptr(), v.n_elem}, rng);
  const ReceivedUpdate r = link.receive_update(bytes);
  EXPECT_EQ(r.header.client, 5u);
  EXPECT_EQ(r.header.round, 3u);
  EXPECT_EQ(r.header.base_version, 2u);
  EXPECT_EQ(r.header.num_samples, 17u);
  EXPECT_EQ(r.header.train_loss, 0.625f);
  EXPECT_FALSE(r.header.skipped);
  EXPECT_EQ(r.wire_bytes, bytes.size());
  ASSERT_EQ(r.vector.n_elem, spec.dim);
  // The quantizer is unbiased but not exact; the decoded vector is close.
  EXPECT_LT(arma::norm(r.vector - v), arma::norm(v));
}

TEST(CodecLink, RejectsBytesThatAreNotAnUpdateOfThisClient) {
  const CodecSpec spec = spec_of("uplink: [{qsgd: {levels: 4}}]\n");
  CodecLink mine(spec, 1), other(spec, 2);
  const arma::fvec v = ramp(spec.dim, 1.0f);
  Rng rng(3);
  const std::string from_other = other.send_update(header_for(2), {v.memptr(), v.n_elem}, rng);
  EXPECT_THROW(mine.receive_update(from_other), DecodeError);
  EXPECT_THROW(mine.receive_update(std::string("\xff\xff\xff", 3)), DecodeError);
  // A well-formed frame whose payload is cut short.
  const std::string good = mine.send_update(header_for(1), {v.memptr(), v.n_elem}, rng);
  wire::UpdateUp up;
  ASSERT_TRUE(up.ParseFromString(good));
  up.set_payload(up.payload().substr(0, up.payload().size() / 2));
  EXPECT_THROW(mine.receive_update(up.SerializeAsString()), DecodeError);
}

TEST(CodecLink, CensoredMessageCarriesTheSkipFlagAndATamperedFlagIsRejected) {
  const CodecSpec spec = spec_of("uplink: [{censoring: {threshold: 0.5}}, float32]\n");
  CodecLink link(spec, 0);
  const arma::fvec v = ramp(spec.dim, 1.0f);
  Rng rng(1);
  const ReceivedUpdate first = link.receive_update(link.send_update(header_for(0), {v.memptr(), v.n_elem}, rng));
  EXPECT_FALSE(first.header.skipped);
  const arma::fvec close = v * 1.01f;
  const std::string skipped = link.send_update(header_for(0), {close.memptr(), close.n_elem}, rng);
  wire::UpdateUp up;
  ASSERT_TRUE(up.ParseFromString(skipped));
  EXPECT_TRUE(up.skipped());
  EXPECT_EQ(up.payload().size(), 1u);
  // The same skip with the flag cleared does not match what the stages did.
  up.set_skipped(false);
  EXPECT_THROW(link.receive_update(up.SerializeAsString()), DecodeError);
  // The genuine message decodes to the last sent vector.
  const ReceivedUpdate again = link.receive_update(skipped);
  EXPECT_TRUE(again.header.skipped);
  EXPECT_TRUE(arma::approx_equal(again.vector, first.vector, "absdiff", 0.0f));
}

}  // namespace
}  // namespace fedsim
