#include "core/compression/qsgd.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/coding/bit_io.h"
#include "core/base/config.h"
#include "core/base/errors.h"
#include "core/compression/pipeline.h"

namespace fedsim {
namespace {

std::unique_ptr<Compressor> make_stage(const std::string& stage_yaml, std::size_t n) {
  Config cfg = Config::parse_string("uplink: [" + stage_yaml + "]\n");
  return PipelineSpec::parse(cfg, "uplink").make(n, {Layer{"all", 0, n}}, 0);
}

std::vector<float> gaussian(std::size_t n, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(rng.normal());
  return v;
}

double sq_norm(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  return s;
}

// Encodes, checks decode(payload) == reconstructed bit for bit, returns payload.
Bytes encode_checked(Compressor& c, const std::vector<float>& v, Rng& rng, std::vector<float>& rec) {
  Bytes out;
  rec.assign(v.size(), -1.0f);
  c.encode(v, rng, out, rec);
  std::vector<float> dec(v.size(), -2.0f);
  c.decode(out, dec);
  EXPECT_EQ(0, std::memcmp(dec.data(), rec.data(), v.size() * sizeof(float)));
  return out;
}

// Per coordinate: mean of many encodings is within 6 standard errors of v,
// the errors are calibrated (mean squared z-score near 1), and the same
// tolerance rejects deterministic rounding to the nearest level.
TEST(Qsgd, UnbiasedAndToleranceCatchesDeterministicRounding) {
  const std::size_t n = 64;
  const int draws = 20000;
  const std::uint32_t s = 2;
  std::vector<float> v = gaussian(n, 1);
  v[3] = 0.0f;
  auto c = make_stage("{qsgd: {levels: 2}}", n);
  Rng rng(7);
  std::vector<double> sum(n, 0.0);
  std::vector<float> rec;
  for (int d = 0; d < draws; ++d) {
    Bytes out;
    rec.assign(n, 0.0f);
    c->encode(v, rng, out, rec);
    for (std::size_t i = 0; i < n; ++i) sum[i] += rec[i];
  }
  const double norm = std::sqrt(sq_norm(v));
  const double unit = norm / s;
  double z2 = 0.0;
  int stochastic = 0, mutant_caught = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double mean = sum[i] / draws;
    const double a = std::fabs(v[i]) / unit;
    const double p = a - std::floor(a);
    const double se = unit * std::sqrt(p * (1 - p) / draws);
    const double tol = 6 * se + 1e-6 * std::fabs(v[i]);
    EXPECT_NEAR(mean, v[i], tol) << "coordinate " << i;
    if (p > 0.02 && p < 0.98) {
      ++stochastic;
      z2 += (mean - v[i]) * (mean - v[i]) / (se * se);
      // Deterministic rounding to the nearest level is off by unit*min(p, 1-p).
      if (unit * std::min(p, 1 - p) > tol) ++mutant_caught;
    }
  }
  ASSERT_GT(stochastic, n / 2);
  EXPECT_EQ(mutant_caught, stochastic);
  const double mean_z2 = z2 / stochastic;
  EXPECT_GT(mean_z2, 0.4);
  EXPECT_LT(mean_z2, 2.0);
}

// Lemma 3.1 and the exact variance sum_i unit^2 p_i (1 - p_i).
TEST(Qsgd, VarianceWithinPaperBound) {
  const std::size_t n = 1000;
  const std::vector<float> v = gaussian(n, 2);
  const double norm2 = sq_norm(v);
  for (std::uint32_t s : {1u, 4u, 15u, 64u}) {
    for (std::size_t d : {std::size_t{0}, std::size_t{100}}) {
      auto c = make_stage("{qsgd: {levels: " + std::to_string(s) + ", bucket: " + std::to_string(d) + "}}", n);
      Rng rng(11 + s);
      const int draws = 400;
      double err = 0.0;
      std::vector<float> rec(n);
      for (int k = 0; k < draws; ++k) {
        Bytes out;
        c->encode(v, rng, out, rec);
        for (std::size_t i = 0; i < n; ++i) err += (rec[i] - static_cast<double>(v[i])) * (rec[i] - v[i]);
      }
      err /= draws;
      const std::size_t dim = d == 0 ? n : d;
      const double bound = std::min(dim / double(s) / s, std::sqrt(double(dim)) / s) * norm2;
      EXPECT_LE(err, bound) << "s=" << s << " d=" << d;
      double exact = 0.0;
      for (std::size_t b0 = 0; b0 < n; b0 += dim) {
        double bn = 0;
        for (std::size_t i = b0; i < b0 + dim; ++i) bn += double(v[i]) * v[i];
        const double unit = std::sqrt(bn) / s;
        for (std::size_t i = b0; i < b0 + dim; ++i) {
          const double a = std::fabs(v[i]) / unit;
          const double p = a - std::floor(a);
          exact += unit * unit * p * (1 - p);
        }
      }
      // 400 draws of a sum of ~1000 independent terms: a few percent.
      EXPECT_NEAR(err, exact, 0.05 * exact) << "s=" << s << " d=" << d;
    }
  }
}

TEST(Qsgd, ExpectedNonZerosWithinPaperBound) {
  const std::size_t n = 10000;
  const std::vector<float> v = gaussian(n, 3);
  for (std::uint32_t s : {1u, 4u, 15u, 100u}) {
    auto c = make_stage("{qsgd: {levels: " + std::to_string(s) + "}}", n);
    Rng rng(5);
    double nnz = 0;
    std::vector<float> rec(n);
    for (int k = 0; k < 20; ++k) {
      Bytes out;
      c->encode(v, rng, out, rec);
      for (float x : rec) nnz += x != 0.0f;
    }
    nnz /= 20;
    EXPECT_LE(nnz, s * (s + std::sqrt(double(n)))) << "s=" << s;
    EXPECT_GT(nnz, 0.0);
  }
}

// Corollary: s = sqrt(n) costs at most 2.8n + 32 bits, counting everything we
// send (norm, non-zero count, padding).
TEST(Qsgd, SqrtNLevelsWithin2Point8BitsPerCoordinate) {
  for (std::size_t n : {std::size_t{10000}, std::size_t{1000000}}) {
    const std::vector<float> v = gaussian(n, 4);
    const auto s = static_cast<std::uint32_t>(std::lround(std::sqrt(double(n))));
    auto c = make_stage("{qsgd: {levels: " + std::to_string(s) + ", bucket: 0, coding: elias}}", n);
    Rng rng(6);
    std::vector<float> rec;
    const Bytes out = encode_checked(*c, v, rng, rec);
    const double bits = 8.0 * out.size();
    EXPECT_LE(bits, 2.8 * n + 32) << "n=" << n;
    RecordProperty("bits_per_coordinate_n" + std::to_string(n), std::to_string(bits / n));
    std::printf("n=%zu s=%u: %.4f bits per coordinate\n", n, s, bits / n);
  }
}

TEST(Qsgd, FixedCodingHasExactLength) {
  for (std::uint32_t s : {1u, 2u, 15u, 16u, 127u}) {
    for (std::size_t d : {std::size_t{0}, std::size_t{7}, std::size_t{64}}) {
      const std::size_t n = 301;
      auto c = make_stage("{qsgd: {levels: " + std::to_string(s) + ", bucket: " + std::to_string(d) +
                              ", coding: fixed}}",
                          n);
      const std::vector<float> v = gaussian(n, s);
      Rng rng(1);
      std::vector<float> rec;
      const Bytes out = encode_checked(*c, v, rng, rec);
      const std::size_t buckets = d == 0 ? 1 : (n + d - 1) / d;
      const int width = static_cast<int>(std::ceil(std::log2(2.0 * s + 1)));
      EXPECT_EQ(out.size(), (buckets * 32 + n * width + 7) / 8) << "s=" << s << " d=" << d;
    }
  }
}

TEST(Qsgd, ZeroBucketIsJustItsNorm) {
  const std::size_t n = 100;
  std::vector<float> v(n, 0.0f);
  for (const char* coding : {"elias", "fixed"}) {
    auto c = make_stage(std::string("{qsgd: {coding: ") + coding + "}}", n);
    Rng rng(1);
    std::vector<float> rec;
    EXPECT_EQ(encode_checked(*c, v, rng, rec).size(), 4u);
    for (float x : rec) EXPECT_EQ(std::bit_cast<std::uint32_t>(x), 0u);
  }
}

const std::vector<std::string>& settings() {
  static const std::vector<std::string> all = {
      "qsgd",
      "{qsgd: {levels: 1}}",
      "{qsgd: {levels: 2, bucket: 7, norm: max}}",
      "{qsgd: {levels: 255, bucket: 16, coding: fixed}}",
      "{qsgd: {levels: 15, norm: max, coding: fixed}}",
      "{qsgd: {levels: 1048576, bucket: 5}}",
      "{qsgd: {levels: 16777216, norm: max, coding: fixed}}",
  };
  return all;
}

std::vector<float> awkward_vector(std::size_t n, std::uint64_t seed) {
  std::vector<float> v = gaussian(n, seed);
  if (n > 10) {
    v[0] = 0.0f;
    v[1] = -0.0f;
    v[2] = 1e-40f;  // subnormal
    v[3] = -3e30f;
    v[4] = 1e-30f;
    for (std::size_t i = 20; i < std::min<std::size_t>(n, 28); ++i) v[i] = 0.0f;  // a zero bucket for d = 7
  }
  return v;
}

TEST(Qsgd, DecodeReproducesReconstructedBitExactly) {
  for (const std::string& st : settings()) {
    for (std::size_t n : {std::size_t{1}, std::size_t{33}, std::size_t{1000}}) {
      auto c = make_stage(st, n);
      Rng rng(99);
      for (int rep = 0; rep < 3; ++rep) {
        std::vector<float> rec;
        const std::vector<float> v = awkward_vector(n, rep);
        encode_checked(*c, v, rng, rec);
        for (float x : rec) EXPECT_TRUE(std::isfinite(x)) << st;
      }
      // A vector of tiny values exercises the overflow-free scaling.
      std::vector<float> tiny(n, 1e-42f);
      std::vector<float> rec;
      encode_checked(*c, tiny, rng, rec);
      double mean = 0;
      for (float x : rec) mean += x;
      EXPECT_LE(mean / n, 1e-41) << st;
    }
  }
}

TEST(Qsgd, RejectsNonFiniteInput) {
  auto c = make_stage("{qsgd: {norm: max}}", 4);
  std::vector<float> v{1.0f, NAN, 2.0f, 3.0f}, rec(4);
  Bytes out;
  Rng rng(1);
  EXPECT_THROW(c->encode(v, rng, out, rec), std::invalid_argument);
}

TEST(Qsgd, DecoderRejectsMalformedPayloads) {
  for (const std::string& st : settings()) {
    const std::size_t n = 37;
    auto c = make_stage(st, n);
    Rng rng(3);
    std::vector<float> rec, out(n);
    const Bytes good = encode_checked(*c, awkward_vector(n, 5), rng, rec);
    for (std::size_t len = 0; len < good.size(); ++len)
      EXPECT_THROW(c->decode(std::span(good.data(), len), out), DecodeError) << st << " prefix " << len;
    for (std::uint8_t extra : {0, 1, 255}) {
      Bytes longer = good;
      longer.push_back(extra);
      EXPECT_THROW(c->decode(longer, out), DecodeError) << st;
    }
    // Bit flips: a DecodeError or a finite vector, never anything else.
    Rng flips(17);
    int rejected = 0;
    for (int trial = 0; trial < 3000; ++trial) {
      Bytes bad = good;
      const int count = 1 + static_cast<int>(flips.below(3));
      for (int f = 0; f < count; ++f) bad[flips.below(bad.size())] ^= std::uint8_t(1u << flips.below(8));
      try {
        c->decode(bad, out);
        for (float x : out) ASSERT_TRUE(std::isfinite(x)) << st;
      } catch (const DecodeError&) {
        ++rejected;
      }
    }
    EXPECT_GT(rejected, 0) << st;
  }
}

TEST(Qsgd, RandomPayloadsNeverCrash) {
  auto c = make_stage("{qsgd: {levels: 4, bucket: 8}}", 50);
  Rng rng(23);
  std::vector<float> out(50);
  for (int trial = 0; trial < 5000; ++trial) {
    Bytes junk(rng.below(64));
    for (auto& b : junk) b = static_cast<std::uint8_t>(rng());
    try {
      c->decode(junk, out);
    } catch (const DecodeError&) {
    }
  }
}

TEST(Qsgd, SettingsAreValidated) {
  EXPECT_THROW(make_stage("{qsgd: {levels: 0}}", 8), InputError);
  EXPECT_THROW(make_stage("{qsgd: {norm: l1}}", 8), InputError);
  EXPECT_THROW(make_stage("{qsgd: {coding: huffman}}", 8), InputError);
  EXPECT_THROW(make_stage("{qsgd: {bucket: -1}}", 8), InputError);
  EXPECT_THROW(make_stage("{qsgd: {levels: 4, typo: 1}}", 8), InputError);
  EXPECT_TRUE(make_stage("qsgd", 8)->unbiased());
}

}  // namespace
}  // namespace fedsim
