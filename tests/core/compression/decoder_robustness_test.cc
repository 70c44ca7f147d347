// Every registered compression stage, alone and composed, against the
// Compressor contract (core/compression/compressor.h):
// - decode(encode(v)) reproduces `reconstructed` bit for bit, round after
//   round (stateful stages stay in step);
// - every truncated payload and every payload with bytes appended is a
//   DecodeError, and a rejected payload leaves a stateful decoder in step;
// - payloads with random bit flips, and random bytes, are a DecodeError or
//   decode to finite values (where the format cannot tell);
// - nothing else is ever thrown, and nothing crashes (run under
//   -DFEDSIM_SANITIZE=ON for memory errors).
// The pipelines (tests/core/compression/stage_pipelines.h) are generated from
// StageRegistry, so a new stage is covered as soon as it registers.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <typeinfo>
#include <vector>

#include "core/coding/arithmetic_coder.h"
#include "core/coding/bit_io.h"
#include "core/compression/compressor.h"
#include "core/base/config.h"
#include "core/base/errors.h"
#include "core/compression/pipeline.h"
#include "tests/core/compression/stage_pipelines.h"

namespace fedsim {
namespace {

std::vector<std::string> pipelines() { return testing_pipelines::all(); }

std::string test_name(const testing::TestParamInfo<std::string>& info) {
  std::string s;
  for (char c : info.param) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      s += c;
    } else if (!s.empty() && s.back() != '_') {
      s += '_';
    }
  }
  while (!s.empty() && s.back() == '_') s.pop_back();
  return std::to_string(info.index) + "_" + s;
}

// Two layers from n = 4 on; the first is a 3 x (n / 9) matrix from n = 18 on
// (powersgd factorizes it).
std::vector<Layer> layers_for(std::size_t n) {
  if (n < 4) return {Layer{"all", 0, n}};
  if (n >= 18) return {Layer{"a", 0, 3 * (n / 9), 3, n / 9}, Layer{"b", 3 * (n / 9), n - 3 * (n / 9)}};
  return {Layer{"a", 0, n / 3}, Layer{"b", n / 3, n - n / 3}};
}

// The vectors sent in successive rounds: awkward values, a repeat (censoring
// skips it, predictors see a constant), a fresh vector, all zeros.
std::vector<std::vector<float>> round_vectors(std::size_t n) {
  Rng rng(n);
  std::vector<float> a(n), b(n);
  for (auto& x : a) x = static_cast<float>(rng.normal());
  for (auto& x : b) x = static_cast<float>(0.5 * rng.normal());
  const float specials[] = {0.0f, -0.0f, 1e-40f, -3e-30f, 1e4f, -1.0f, 0.5f};
  for (std::size_t i = 0; i < std::size(specials) && 2 * i + 1 < n; ++i) a[2 * i + 1] = specials[i];
  return {a, a, b, std::vector<float>(n, 0.0f)};
}

bool same_bits(std::span<const float> x, std::span<const float> y) {
  return std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

class DecoderRobustness : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    Config cfg = Config::parse_string("uplink: [" + GetParam() + "]\n");
    spec_ = PipelineSpec::parse(cfg, "uplink");
  }

  std::unique_ptr<Compressor> make(std::size_t n) const { return spec_.make(n, layers_for(n), kSharedSeed); }

  // Outcome of one decode: rejected (DecodeError) or accepted; anything else
  // is a test failure.
  enum class Outcome { kRejected, kAccepted, kOtherError };
  static Outcome try_decode(Compressor& c, std::span<const std::uint8_t> bytes, std::span<float> out,
                            std::string& message) {
    try {
      c.decode(bytes, out);
      return Outcome::kAccepted;
    } catch (const DecodeError&) {
      return Outcome::kRejected;
    } catch (const std::exception& e) {
      message = std::string(typeid(e).name()) + ": " + e.what();
      return Outcome::kOtherError;
    } catch (...) {
      message = "a non-std exception";
      return Outcome::kOtherError;
    }
  }

  // A decoder in the state the receiver has after `history`.
  std::unique_ptr<Compressor> decoder_after(std::size_t n, const std::vector<Bytes>& history) const {
    auto d = make(n);
    std::vector<float> out(n);
    for (const Bytes& p : history) d->decode(p, out);
    return d;
  }

  void run(std::size_t n);

  static constexpr std::uint64_t kSharedSeed = 0x5eed;
  PipelineSpec spec_ = PipelineSpec::float32();
};

void DecoderRobustness::run(std::size_t n) {
  const std::string where = GetParam() + ", n=" + std::to_string(n);
  auto encoder = make(n);
  auto synced = make(n);  // the receiver: sees only what the encoder sent (and rejected junk)
  Rng rng(n * 7919 + 1);
  Rng noise(n * 104729 + 3);
  std::vector<Bytes> history;
  std::vector<float> rec(n), out(n);
  const auto rounds = round_vectors(n);
  for (std::size_t round = 0; round < rounds.size(); ++round) {
    const std::string at = where + ", round " + std::to_string(round);
    Bytes payload;
    std::fill(rec.begin(), rec.end(), -7.0f);
    encoder->encode(rounds[round], rng, payload, rec);
    for (float x : rec) ASSERT_TRUE(std::isfinite(x)) << at;

    std::string message;
    // Truncated and oversized payloads: always a DecodeError, and the
    // receiver stays in step (checked by the real payload below).
    std::vector<std::size_t> lengths;
    if (payload.size() <= 64) {
      for (std::size_t len = 0; len < payload.size(); ++len) lengths.push_back(len);
    } else {
      lengths = {0, 1, payload.size() - 1, payload.size() / 2};
      for (int k = 0; k < 40; ++k) lengths.push_back(noise.below(payload.size()));
    }
    for (std::size_t len : lengths) {
      const Outcome o = try_decode(*synced, std::span(payload.data(), len), out, message);
      ASSERT_NE(o, Outcome::kOtherError) << at << ", prefix " << len << ": " << message;
      ASSERT_EQ(o, Outcome::kRejected) << at << ": a prefix of " << len << " of " << payload.size()
                                       << " bytes was accepted";
    }
    for (const Bytes& extra : {Bytes{0}, Bytes{1}, Bytes{0xFF}, Bytes{0, 0, 0, 0, 0, 0, 0, 0}}) {
      Bytes longer = payload;
      longer.insert(longer.end(), extra.begin(), extra.end());
      const Outcome o = try_decode(*synced, longer, out, message);
      ASSERT_NE(o, Outcome::kOtherError) << at << ": " << message;
      ASSERT_EQ(o, Outcome::kRejected) << at << ": " << extra.size() << " appended bytes were accepted";
    }

    // Bit flips and random bytes: DecodeError or finite values. Decoders that
    // accept change state, so each attempt gets a fresh receiver.
    int accepted = 0, rejected = 0;
    for (int trial = 0; trial < 200; ++trial) {
      Bytes bad;
      if (trial < 150) {
        bad = payload;
        if (bad.empty()) bad.push_back(static_cast<std::uint8_t>(noise()));
        const int flips = 1 + static_cast<int>(noise.below(3));
        for (int f = 0; f < flips; ++f) bad[noise.below(bad.size())] ^= static_cast<std::uint8_t>(1u << noise.below(8));
      } else {
        bad.resize(noise.below(2 * payload.size() + 8));
        for (auto& b : bad) b = static_cast<std::uint8_t>(noise());
        if (trial % 2 == 0 && !payload.empty() && !bad.empty()) bad[0] = payload[0];  // keep a marker / magic byte
      }
      auto fresh = decoder_after(n, history);
      std::fill(out.begin(), out.end(), 0.0f);
      const Outcome o = try_decode(*fresh, bad, out, message);
      ASSERT_NE(o, Outcome::kOtherError) << at << ", corrupted trial " << trial << ": " << message;
      if (o == Outcome::kAccepted) {
        ++accepted;
        for (std::size_t i = 0; i < n; ++i)
          ASSERT_TRUE(std::isfinite(out[i])) << at << ", corrupted trial " << trial << ": coordinate " << i << " = "
                                             << out[i];
      } else {
        ++rejected;
      }
    }
    EXPECT_GT(rejected, 0) << at;

    // The real payload, after all the rejected ones.
    std::fill(out.begin(), out.end(), -9.0f);
    const Outcome o = try_decode(*synced, payload, out, message);
    ASSERT_EQ(o, Outcome::kAccepted) << at << ": " << message;
    ASSERT_TRUE(same_bits(out, rec)) << at << ": decode(payload) differs from reconstructed";
    history.push_back(payload);
  }
}

TEST_P(DecoderRobustness, SmallDims) {
  for (std::size_t n : {1, 2, 7, 33}) {
    run(n);
    if (HasFatalFailure()) return;
  }
}

TEST_P(DecoderRobustness, LargerDims) {
  for (std::size_t n : {130, 1000}) {
    run(n);
    if (HasFatalFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(AllStages, DecoderRobustness, testing::ValuesIn(pipelines()), test_name);

// Well-formed payloads whose values sit at the float limit: random bit flips
// rarely build these, so they are built by hand. Each must be a DecodeError
// or decode to finite values.
void expect_rejected_or_finite(const std::string& stages, std::size_t n, const Bytes& payload) {
  Config cfg = Config::parse_string("uplink: [" + stages + "]\n");
  auto c = PipelineSpec::parse(cfg, "uplink").make(n, {Layer{"all", 0, n}}, 0);
  std::vector<float> out(n);
  try {
    c->decode(payload, out);
  } catch (const DecodeError&) {
    return;
  }
  for (std::size_t i = 0; i < n; ++i)
    EXPECT_TRUE(std::isfinite(out[i])) << stages << ": coordinate " << i << " = " << out[i];
}

constexpr float kMax = std::numeric_limits<float>::max();

TEST(DecoderRobustnessCrafted, ThresholdGridAtFloatMax) {
  for (std::uint32_t levels : {2u, 3u, 4u, 9u, 1000u, 1u << 24}) {
    const int level_bits = std::bit_width(levels - 1);
    for (std::uint32_t j : {levels - 1, levels - 2, levels / 2}) {
      for (float low : {0.0f, 1.0f, kMax / 2}) {
        Bytes payload;
        {
          BitWriter w(payload);
          w.write_f32(low);
          w.write_f32(kMax);
          w.write_gamma(2);  // one entry
          w.write_gamma(1);  // at position 1
          w.write_bit(true);
          w.write(j, level_bits);
        }
        expect_rejected_or_finite("{threshold: {levels: " + std::to_string(levels) + "}}", 3, payload);
      }
    }
  }
}

TEST(DecoderRobustnessCrafted, PredictiveCodingStepAtFloatMax) {
  // Default options: 5 predictors (3 bits), bits {2, 3, 4, 6, 8} (3 bits).
  for (std::uint32_t qid : {0u, 4u}) {
    const std::uint32_t levels = qid == 0 ? 1 : 127;
    for (float step : {kMax, kMax / 64, 1e30f}) {
      Bytes payload;
      ArithmeticEncoder coder(payload);
      coder.encode_bits(0, 3);  // the zero predictor
      coder.encode_bits(qid, 3);
      const auto step_bits = std::bit_cast<std::uint32_t>(step);
      coder.encode_bits(step_bits >> 16, 16);
      coder.encode_bits(step_bits & 0xFFFFu, 16);
      AdaptiveModel model(2 * levels + 1);
      for (int i = 0; i < 4; ++i) coder.encode(i % 2 ? 2 * levels : 2 * levels - 1, model);  // q = -L, +L
      coder.finish();
      expect_rejected_or_finite("predictive_coding", 4, payload);
    }
  }
}

TEST(DecoderRobustnessCoverage, EveryRegisteredStageIsExercised) {
  const auto all = pipelines();
  std::set<std::string> kinds;
  for (const auto& [name, entry] : StageRegistry::instance().entries()) {
    const bool used =
        std::any_of(all.begin(), all.end(), [&](const std::string& p) { return p.find(name) != std::string::npos; });
    EXPECT_TRUE(used) << name;
    kinds.insert(name);
  }
  // The stages of fedsim at the time of writing; a new one is covered automatically.
  for (const char* name : {"float32", "qsgd", "terngrad", "natural", "natural_dithering", "rand_k", "top_k", "sign",
                           "threshold", "log_quant", "fedvote_binary", "fedvote_ternary", "predictive_coding",
                           "error_feedback", "hadamard_rotation", "censoring", "zstd", "subspace", "dgc",
                           "powersgd", "wyner_ziv"})
    EXPECT_TRUE(kinds.count(name)) << name;
}

}  // namespace
}  // namespace fedsim
