// Each compression stage's paper guarantee as a test (the stages not covered
// by qsgd_test, fedvote_test and predictive_coding_test): unbiasedness and
// variance bounds checked statistically (per coordinate, tolerance 5 standard
// errors computed from the exact variance of the operator, fixed seeds), bit
// counts checked exactly, identities checked in float.
#include <gtest/gtest.h>
#include <zstd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "core/base/lane_rng.h"
#include "core/compression/censoring.h"
#include "core/compression/compressor.h"
#include "core/base/config.h"
#include "core/compression/error_feedback.h"
#include "core/base/errors.h"
#include "core/compression/hadamard_rotation.h"
#include "core/compression/log_quantizer.h"
#include "core/compression/natural_compression.h"
#include "core/compression/natural_dithering.h"
#include "core/compression/pipeline.h"
#include "core/compression/rand_k.h"
#include "core/compression/sign_compressor.h"
#include "core/compression/terngrad.h"
#include "core/compression/threshold_quantizer.h"
#include "core/compression/top_k.h"
#include "core/compression/zstd_coder.h"
#include "tests/core/compression/compression_testing.h"

namespace fedsim {
namespace {

using test_util::as;
using test_util::gaussian;
using test_util::make_pipeline;
using test_util::same_bits;
using test_util::sq_norm;

// Encodes v, checks that decode(payload) on `decoder` (the encoder itself for
// stateless stages) equals `reconstructed` bit for bit.
Bytes encode_checked(Compressor& enc, Compressor& dec, std::span<const float> v, Rng& rng, std::vector<float>& rec) {
  Bytes out;
  rec.assign(v.size(), -1.0f);
  enc.encode(v, rng, out, rec);
  std::vector<float> decoded(v.size(), -2.0f);
  dec.decode(out, decoded);
  for (std::size_t i = 0; i < v.size(); ++i) {
    EXPECT_EQ(std::bit_cast<std::uint32_t>(decoded[i]), std::bit_cast<std::uint32_t>(rec[i]))
        << "decode(payload) differs from reconstructed at " << i << ": " << decoded[i] << " vs " << rec[i]
        << " (input " << v[i] << ")";
    if (std::bit_cast<std::uint32_t>(decoded[i]) != std::bit_cast<std::uint32_t>(rec[i])) break;
  }
  return out;
}
Bytes encode_checked(Compressor& c, std::span<const float> v, Rng& rng, std::vector<float>& rec) {
  return encode_checked(c, c, v, rng, rec);
}

// Accumulates per-coordinate sums of many encodings of the same vector.
struct Draws {
  std::vector<double> sum, sum_sq_err;
  double total_sq_err = 0.0;  // sum over draws of ||C(v) - v||^2
  double total_sq = 0.0;      // sum over draws of ||C(v)||^2
  int count = 0;
};

Draws draw(Compressor& c, const std::vector<float>& v, int draws, std::uint64_t seed) {
  Draws d;
  d.sum.assign(v.size(), 0.0);
  Rng rng(seed);
  std::vector<float> rec(v.size());
  for (int k = 0; k < draws; ++k) {
    Bytes out;
    c.encode(v, rng, out, rec);
    for (std::size_t i = 0; i < v.size(); ++i) {
      const double e = static_cast<double>(rec[i]) - v[i];
      d.sum[i] += rec[i];
      d.total_sq_err += e * e;
      d.total_sq += static_cast<double>(rec[i]) * rec[i];
    }
  }
  d.count = draws;
  return d;
}

// Per coordinate: the empirical mean is within 5 standard errors (from the
// operator's exact per-coordinate variance) of `expected`, plus `slack` for
// float rounding. When enough coordinates are random, the squared z-scores
// average near 1 (the variance model is right, the tolerance is not loose).
void expect_means(const Draws& d, const std::vector<double>& expected, const std::vector<double>& variance,
                  const std::vector<double>& slack, const std::string& what) {
  double z2 = 0.0;
  int random = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double mean = d.sum[i] / d.count;
    const double se = std::sqrt(variance[i] / d.count);
    EXPECT_NEAR(mean, expected[i], 5 * se + slack[i]) << what << ": coordinate " << i << ", se " << se;
    if (se > 100 * slack[i] && se > 0) {
      z2 += (mean - expected[i]) * (mean - expected[i]) / (se * se);
      ++random;
    }
  }
  if (random >= 30) {
    EXPECT_GT(z2 / random, 0.5) << what;
    EXPECT_LT(z2 / random, 1.8) << what;
  }
}

// Rounding a between lo and hi to one of them with P(hi) = (a - lo) / (hi - lo):
// the variance (hi - a)(a - lo).
double dither_variance(double a, double lo, double hi) { return (hi - a) * (a - lo); }

int gamma_bits(std::uint64_t x) { return 2 * (63 - std::countl_zero(x)) + 1; }

// ---------------------------------------------------------------- TernGrad

std::vector<Layer> two_layers(std::size_t first, std::size_t second) {
  return {Layer{"a", 0, first}, Layer{"b", first, second}};
}

// Two layers of different scale, so that a single global scaler would show.
std::vector<float> two_scale_vector(std::size_t first, std::size_t second, std::uint64_t seed) {
  std::vector<float> v = gaussian(first + second, seed);
  for (std::size_t i = first; i < first + second; ++i) v[i] *= 10.0f;
  return v;
}

float layer_max_abs(const std::vector<float>& v, const Layer& l) {
  float m = 0.0f;
  for (std::size_t i = l.offset; i < l.offset + l.size; ++i) m = std::max(m, std::fabs(v[i]));
  return m;
}

TEST(TernGrad, UnbiasedWithoutClipping) {
  const auto layers = two_layers(20, 28);
  std::vector<float> v = two_scale_vector(20, 28, 1);
  v[3] = 0.0f;
  auto c = make_pipeline("terngrad", v.size(), layers);
  EXPECT_TRUE(c->unbiased());
  const Draws d = draw(*c, v, 20000, 2);
  std::vector<double> expected(v.begin(), v.end()), variance(v.size()), slack(v.size());
  for (const Layer& l : layers) {
    const double s = layer_max_abs(v, l);
    for (std::size_t i = l.offset; i < l.offset + l.size; ++i) {
      // s * sgn(g) with probability |g| / s (to 2^-24), else 0.
      variance[i] = std::fabs(v[i]) * s - static_cast<double>(v[i]) * v[i];
      slack[i] = 2e-7 * s;
    }
  }
  expect_means(d, expected, variance, slack, "terngrad");
  // Deterministic rounding (|g| >= s/2 -> s) would be off by far more than the tolerance.
  int caught = 0, eligible = 0;
  for (const Layer& l : layers) {
    const double s = layer_max_abs(v, l);
    for (std::size_t i = l.offset; i < l.offset + l.size; ++i) {
      const double a = std::fabs(v[i]);
      const double p = a / s;
      if (p < 0.02 || p > 0.98) continue;
      ++eligible;
      caught += std::min(a, s - a) > 5 * std::sqrt(variance[i] / d.count) + slack[i];
    }
  }
  EXPECT_EQ(caught, eligible);
}

TEST(TernGrad, PerLayerScalerIsMaxAbsTernaryValuesTwoBitsEach) {
  const auto layers = two_layers(37, 70);
  std::vector<float> v = two_scale_vector(37, 70, 3);
  auto c = make_pipeline("terngrad", v.size(), layers);
  Rng rng(4);
  for (int rep = 0; rep < 50; ++rep) {
    std::vector<float> rec;
    const Bytes out = encode_checked(*c, v, rng, rec);
    // One float32 scaler per layer, then 2 bits per coordinate.
    ASSERT_EQ(out.size(), 2 * 4 + (2 * v.size() + 7) / 8);
    for (std::size_t li = 0; li < layers.size(); ++li) {
      float scaler;
      std::memcpy(&scaler, out.data() + 4 * li, 4);
      const Layer& l = layers[li];
      EXPECT_EQ(scaler, layer_max_abs(v, l)) << "layer " << li;
      for (std::size_t i = l.offset; i < l.offset + l.size; ++i) {
        ASSERT_TRUE(rec[i] == 0.0f || rec[i] == (v[i] < 0 ? -scaler : scaler)) << i << ": " << rec[i];
        if (std::fabs(v[i]) == scaler) {
          EXPECT_NE(rec[i], 0.0f) << "the max coordinate is sent with probability 1";
        }
      }
    }
  }
  // An all-zero layer is sent as its zero scaler alone.
  std::fill(v.begin(), v.begin() + 37, 0.0f);
  std::vector<float> rec;
  const Bytes out = encode_checked(*c, v, rng, rec);
  EXPECT_EQ(out.size(), 2 * 4 + (2 * 70 + 7) / 8);
  for (std::size_t i = 0; i < 37; ++i) EXPECT_EQ(std::bit_cast<std::uint32_t>(rec[i]), 0u);
}

// E||g~||^2 = sum_t s_t ||g_t||_1 <= ||g||_inf ||g||_1 (Wen et al.).
TEST(TernGrad, SecondMomentIsScalerTimesL1AndWithinBound) {
  const auto layers = two_layers(100, 300);
  const std::vector<float> v = two_scale_vector(100, 300, 5);
  auto c = make_pipeline("terngrad", v.size(), layers);
  const Draws d = draw(*c, v, 2000, 6);
  double exact = 0.0, l1 = 0.0, linf = 0.0;
  for (const Layer& l : layers) {
    double layer_l1 = 0.0;
    for (std::size_t i = l.offset; i < l.offset + l.size; ++i) layer_l1 += std::fabs(v[i]);
    exact += layer_max_abs(v, l) * layer_l1;
    l1 += layer_l1;
    linf = std::max<double>(linf, layer_max_abs(v, l));
  }
  const double measured = d.total_sq / d.count;
  EXPECT_NEAR(measured, exact, 0.02 * exact);
  EXPECT_LE(measured, linf * l1);
}

TEST(TernGrad, ClipsAtCSigmaAndIsThenBiasedTowardsTheClippedGradient) {
  const std::size_t n = 1000;
  std::vector<float> v = gaussian(n, 7);
  v[5] = 50.0f;
  v[9] = -40.0f;
  auto c = make_pipeline("{terngrad: {clip: 2.5}}", n);
  EXPECT_FALSE(c->unbiased());
  double mean = 0.0, ss = 0.0;
  for (float x : v) mean += x;
  mean /= n;
  for (float x : v) ss += (x - mean) * (x - mean);
  const float s = static_cast<float>(2.5 * std::sqrt(ss / n));
  ASSERT_LT(s, 10.0f);
  Rng rng(8);
  std::vector<float> rec;
  const Bytes out = encode_checked(*c, v, rng, rec);
  float scaler;
  std::memcpy(&scaler, out.data(), 4);
  EXPECT_EQ(scaler, s);

  const Draws d = draw(*c, v, 20000, 9);
  std::vector<double> expected(n), variance(n), slack(n, 2e-7 * s);
  for (std::size_t i = 0; i < n; ++i) {
    const double clipped = std::clamp<double>(v[i], -s, s);
    expected[i] = clipped;
    variance[i] = std::fabs(clipped) * s - clipped * clipped;
  }
  expect_means(d, expected, variance, slack, "terngrad clip");
  EXPECT_EQ(d.sum[5] / d.count, s);  // clipped coordinates are always sent, as +-s
  EXPECT_EQ(d.sum[9] / d.count, -s);
}

// ---------------------------------------------------------- Natural compression

// The two powers of two around |t| (C_nat's outcomes) for a float t != 0;
// subnormals round between 0 and 2^-126, as documented.
std::pair<double, double> pow2_neighbours(float t) {
  const double a = std::fabs(static_cast<double>(t));
  if (a < 0x1.0p-126) return {0.0, 0x1.0p-126};
  int e;
  std::frexp(a, &e);  // a in [2^(e-1), 2^e)
  return {std::ldexp(1.0, e - 1), std::ldexp(1.0, e)};
}

std::vector<float> natural_test_vector() {
  std::vector<float> v = gaussian(64, 11);
  v[0] = 0.0f;
  v[1] = -0.0f;
  v[2] = 1.0f;      // powers of two are kept exactly
  v[3] = -0.25f;
  v[4] = 4.0f / 3;  // the worst case 9/8
  v[5] = -3.0e-3f;
  v[6] = 7.0e12f;
  v[7] = 3.0e-39f;  // subnormal
  v[8] = 1.9999999f;
  return v;
}

TEST(NaturalCompression, Unbiased) {
  const std::vector<float> v = natural_test_vector();
  auto c = make_pipeline("natural", v.size());
  EXPECT_TRUE(c->unbiased());
  const Draws d = draw(*c, v, 20000, 12);
  std::vector<double> expected(v.begin(), v.end()), variance(v.size()), slack(v.size(), 0.0);
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] == 0.0f) continue;
    const auto [lo, hi] = pow2_neighbours(v[i]);
    variance[i] = dither_variance(std::fabs(v[i]), lo, hi);
    slack[i] = 1e-12 * std::fabs(v[i]);
  }
  expect_means(d, expected, variance, slack, "natural");
  for (int i : {0, 1, 2, 3}) EXPECT_EQ(d.sum[i], d.count * static_cast<double>(v[i])) << "exact for 0 and 2^a";
}

TEST(NaturalCompression, OutcomesAreTheTwoNeighbouringPowersOfTwoWithTheSign) {
  const std::vector<float> v = natural_test_vector();
  auto c = make_pipeline("natural", v.size());
  Rng rng(13);
  for (int rep = 0; rep < 200; ++rep) {
    std::vector<float> rec;
    encode_checked(*c, v, rng, rec);
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (v[i] == 0.0f) {
        EXPECT_EQ(std::bit_cast<std::uint32_t>(rec[i]) & 0x7FFFFFFFu, 0u);
        continue;
      }
      EXPECT_EQ(std::bit_cast<std::uint32_t>(rec[i]) & 0x7FFFFFu, 0u) << "mantissa dropped";
      const auto [lo, hi] = pow2_neighbours(v[i]);
      const double a = std::fabs(static_cast<double>(rec[i]));
      EXPECT_TRUE(a == lo || a == hi) << i;
      if (a != 0) {
        EXPECT_EQ(std::signbit(rec[i]), std::signbit(v[i])) << i;
      }
    }
  }
}

// E[C_nat(t)^2] <= 9/8 t^2 (omega = 1/8), with equality at t = 4/3 * 2^a.
TEST(NaturalCompression, SecondMomentWithinNineEighths) {
  const std::size_t n = 1000;
  const std::vector<float> v = gaussian(n, 14);
  auto c = make_pipeline("natural", n);
  const Draws d = draw(*c, v, 400, 15);
  double exact = 0.0;
  for (float x : v) {
    const auto [lo, hi] = pow2_neighbours(x);
    const double p_hi = (std::fabs(x) - lo) / (hi - lo);
    exact += (1 - p_hi) * lo * lo + p_hi * hi * hi;
  }
  const double norm2 = sq_norm(v);
  EXPECT_LE(exact, 9.0 / 8.0 * norm2);
  EXPECT_LE(d.total_sq / d.count, 9.0 / 8.0 * norm2);
  EXPECT_NEAR(d.total_sq / d.count, exact, 0.01 * exact);

  // The worst case attains the bound: t = 4/3 * 2^a.
  std::vector<float> worst(n);
  for (std::size_t i = 0; i < n; ++i) worst[i] = std::ldexp((i % 2 ? -4.0f : 4.0f) / 3, static_cast<int>(i % 21) - 10);
  const Draws w = draw(*c, worst, 400, 16);
  EXPECT_NEAR(w.total_sq / w.count, 9.0 / 8.0 * sq_norm(worst), 0.01 * sq_norm(worst));
}

// 9 bits per coordinate (sign + 8-bit exponent), no header: ceil(9n / 8) bytes,
// 32/9 = 3.56x fewer than float32.
TEST(NaturalCompression, ExactlyNineBitsPerCoordinate) {
  std::vector<std::size_t> sizes(41);
  std::iota(sizes.begin(), sizes.end(), std::size_t{0});
  sizes.insert(sizes.end(), {1000, 1001, 4096, 4099});
  for (std::size_t n : sizes) {
    auto c = make_pipeline("natural", n);
    Rng rng(n);
    std::vector<float> rec;
    const Bytes out = encode_checked(*c, gaussian(n, n), rng, rec);
    EXPECT_EQ(out.size(), (9 * n + 7) / 8) << "n=" << n;
    EXPECT_EQ(out.size(), NaturalCompression::payload_bytes(n));
  }
}

// ------------------------------------------------------------ Natural dithering

// Exact per-coordinate moments of D_nat^{p,s} for one bucket.
struct DitherMoments {
  std::vector<double> variance;
  double total_variance = 0.0;
  float norm = 0.0f;
};

DitherMoments natural_dithering_moments(const std::vector<float>& v, std::size_t b0, std::size_t len, int s,
                                        bool inf_norm) {
  DitherMoments m;
  double ss = 0.0;
  float mx = 0.0f;
  for (std::size_t i = b0; i < b0 + len; ++i) {
    ss += static_cast<double>(v[i]) * v[i];
    mx = std::max(mx, std::fabs(v[i]));
  }
  m.norm = inf_norm ? mx : static_cast<float>(std::sqrt(ss));
  m.variance.assign(len, 0.0);
  if (m.norm == 0.0f) return m;
  // Levels at t = 0, 1, 2, 4, ..., 2^(s-1) for t = |v_i| 2^(s-1) / norm.
  const double unit = m.norm / std::ldexp(1.0, s - 1);
  for (std::size_t k = 0; k < len; ++k) {
    const double t = std::min(std::fabs(v[b0 + k]) / unit, std::ldexp(1.0, s - 1));
    double lo = 0.0, hi = 1.0;
    if (t >= 1.0) {
      int e;
      std::frexp(t, &e);
      lo = std::ldexp(1.0, e - 1);
      hi = 2 * lo;
    }
    m.variance[k] = unit * unit * dither_variance(t, lo, hi);
    m.total_variance += m.variance[k];
  }
  return m;
}

TEST(NaturalDithering, Unbiased) {
  for (const char* p : {"2", "inf"}) {
    for (int s : {2, 5}) {
      const std::size_t n = 90, bucket = 30;
      std::vector<float> v = gaussian(n, 21);
      v[0] = 0.0f;
      v[10] = 3.0f;  // an outlier
      v[40] = 1e-6f;
      for (std::size_t i = 60; i < 90; ++i) v[i] = 0.0f;  // a zero bucket
      auto c = make_pipeline("{natural_dithering: {levels: " + std::to_string(s) + ", norm_p: " + p +
                                 ", bucket: " + std::to_string(bucket) + "}}",
                             n);
      EXPECT_TRUE(c->unbiased());
      const Draws d = draw(*c, v, 20000, 22);
      std::vector<double> expected(v.begin(), v.end()), variance(n), slack(n);
      for (std::size_t b0 = 0; b0 < n; b0 += bucket) {
        const DitherMoments m = natural_dithering_moments(v, b0, bucket, s, std::string(p) == "inf");
        for (std::size_t k = 0; k < bucket; ++k) {
          variance[b0 + k] = m.variance[k];
          // Rounding probabilities are exact to 2^-23 of the level spacing.
          slack[b0 + k] = 1e-6 * std::fabs(v[b0 + k]) + m.norm * 0x1.0p-22;
        }
      }
      expect_means(d, expected, variance, slack, std::string("natural_dithering p=") + p + " s=" + std::to_string(s));
    }
  }
}

// Horvath et al. 2019, Theorem 7: D_nat^{p,s} has E||D(v) - v||^2 <= omega ||v||^2
// with omega = 1/8 + d^(1/r) 2^(1-s) min(1, d^(1/r) 2^(1-s)), r = min(p, 2),
// d the bucket size; the measured variance also matches the exact one.
TEST(NaturalDithering, VarianceWithinPaperBound) {
  const std::size_t n = 1000;
  const std::vector<float> v = gaussian(n, 23);
  const double norm2 = sq_norm(v);
  for (const char* p : {"2", "inf"}) {
    for (int s : {1, 2, 4, 8, 16}) {
      for (std::size_t bucket : {std::size_t{0}, std::size_t{100}}) {
        const std::size_t d = bucket == 0 ? n : bucket;
        auto c = make_pipeline("{natural_dithering: {levels: " + std::to_string(s) + ", norm_p: " + p +
                                   ", bucket: " + std::to_string(bucket) + "}}",
                               n);
        const Draws draws = draw(*c, v, 300, 24);
        const double measured = draws.total_sq_err / draws.count;
        const double root = std::sqrt(static_cast<double>(d)) * std::ldexp(1.0, 1 - s);
        const double omega = 1.0 / 8.0 + root * std::min(1.0, root);
        EXPECT_LE(measured, omega * norm2) << "p=" << p << " s=" << s << " d=" << d;
        double exact = 0.0;
        for (std::size_t b0 = 0; b0 < n; b0 += d)
          exact += natural_dithering_moments(v, b0, d, s, std::string(p) == "inf").total_variance;
        EXPECT_NEAR(measured, exact, 0.05 * exact) << "p=" << p << " s=" << s << " d=" << d;
      }
    }
  }
}

// The point of natural dithering: with the same number of levels (s + 1,
// zero included) its variance is far below uniform dithering's (QSGD with s
// levels) when most |v_i| / ||v|| are small.
TEST(NaturalDithering, FarBelowUniformDitheringAtTheSameLevelCount) {
  const std::size_t n = 1000;
  const std::vector<float> v = gaussian(n, 25);
  const double norm = std::sqrt(sq_norm(v));
  for (int s : {8, 12}) {
    auto c = make_pipeline("{natural_dithering: {levels: " + std::to_string(s) + "}}", n);
    const Draws d = draw(*c, v, 200, 26);
    double uniform = 0.0;
    for (float x : v) {
      const double a = std::fabs(x) / norm * s;
      uniform += (norm / s) * (norm / s) * dither_variance(a, std::floor(a), std::floor(a) + 1);
    }
    EXPECT_LT(d.total_sq_err / d.count, uniform / 8) << "s=" << s;
  }
}

// Per bucket: a float32 norm, then (1 + ceil(log2(s + 1))) bits per
// coordinate unless the bucket is zero; one padded bit stream.
TEST(NaturalDithering, PayloadSizeIsNormsPlusFixedWidthCodes) {
  for (int s : {1, 3, 7, 8, 64}) {
    for (std::size_t bucket : {std::size_t{0}, std::size_t{16}}) {
      const std::size_t n = 77;
      std::vector<float> v = gaussian(n, s);
      for (std::size_t i = 16; i < 32; ++i) v[i] = 0.0f;
      auto c = make_pipeline("{natural_dithering: {levels: " + std::to_string(s) + ", bucket: " +
                                 std::to_string(bucket) + "}}",
                             n);
      Rng rng(27);
      std::vector<float> rec;
      const Bytes out = encode_checked(*c, v, rng, rec);
      const std::size_t d = bucket == 0 ? n : bucket;
      const int code = 1 + std::bit_width(static_cast<unsigned>(s));
      std::size_t bits = 0;
      for (std::size_t b0 = 0; b0 < n; b0 += d) {
        const std::size_t len = std::min(d, n - b0);
        const bool zero = std::all_of(v.begin() + b0, v.begin() + b0 + len, [](float x) { return x == 0.0f; });
        bits += 32 + (zero ? 0 : len * code);
      }
      EXPECT_EQ(out.size(), (bits + 7) / 8) << "s=" << s << " bucket=" << bucket;
      // Outcomes: 0 or +-norm * 2^(k-s).
      for (std::size_t i = 0; i < n; ++i) {
        if (rec[i] == 0.0f) continue;
        EXPECT_EQ(std::signbit(rec[i]), std::signbit(v[i]));
      }
    }
  }
}

// ---------------------------------------------------------------- rand_k

TEST(RandK, ScaledSelectionIsUnbiasedWithVarianceNOverKMinusOne) {
  const std::size_t n = 40, k = 5;
  const std::vector<float> v = gaussian(n, 31);
  auto c = make_pipeline("{rand_k: {k: 5}}", n);
  EXPECT_TRUE(c->unbiased());
  const int draws = 40000;
  const Draws d = draw(*c, v, draws, 32);
  const double ratio = static_cast<double>(n) / k;
  std::vector<double> expected(v.begin(), v.end()), variance(n), slack(n);
  for (std::size_t i = 0; i < n; ++i) {
    variance[i] = static_cast<double>(v[i]) * v[i] * (ratio - 1);
    slack[i] = 1e-6 * std::fabs(v[i]);
  }
  expect_means(d, expected, variance, slack, "rand_k");
  EXPECT_NEAR(d.total_sq_err / draws, (ratio - 1) * sq_norm(v), 0.03 * (ratio - 1) * sq_norm(v));

  // Exactly k entries, each v_i * n/k, positions uniform.
  Rng rng(33);
  std::vector<int> picked(n, 0);
  const int rounds = 4000;
  for (int r = 0; r < rounds; ++r) {
    std::vector<float> rec;
    const Bytes out = encode_checked(*c, v, rng, rec);
    std::size_t nonzero = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (rec[i] == 0.0f) continue;
      ++nonzero;
      ++picked[i];
      EXPECT_EQ(rec[i], v[i] * static_cast<float>(ratio));
    }
    ASSERT_EQ(nonzero, k);
  }
  const double p = static_cast<double>(k) / n;
  for (std::size_t i = 0; i < n; ++i)
    EXPECT_NEAR(picked[i], rounds * p, 5 * std::sqrt(rounds * p * (1 - p))) << "coordinate " << i;
}

// ---------------------------------------------------- top_k, sign, error feedback

TEST(TopK, KeepsTheKLargestMagnitudesTiesToTheLowerIndex) {
  std::vector<float> v = gaussian(100, 41);
  v[10] = 5.0f;
  v[20] = -5.0f;  // a tie with v[10]
  v[30] = -5.0f;
  auto c = make_pipeline("{top_k: {k: 2}}", v.size());
  EXPECT_FALSE(c->unbiased());
  Rng rng(1);
  std::vector<float> rec;
  const Bytes out = encode_checked(*c, v, rng, rec);
  for (std::size_t i = 0; i < v.size(); ++i) EXPECT_EQ(rec[i], (i == 10 || i == 20) ? v[i] : 0.0f) << i;
  // gamma(11) + gamma(10) + two float32s.
  EXPECT_EQ(out.size(), (gamma_bits(11) + gamma_bits(10) + 64 + 7) / 8u);

  auto frac = make_pipeline("{top_k: {fraction: 0.1}}", 1000);
  const std::vector<float> w = gaussian(1000, 42);
  encode_checked(*frac, w, rng, rec);
  std::vector<float> sorted(w.size());
  std::transform(w.begin(), w.end(), sorted.begin(), [](float x) { return std::fabs(x); });
  std::sort(sorted.rbegin(), sorted.rend());
  std::size_t kept = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    if (rec[i] == 0.0f) continue;
    ++kept;
    EXPECT_EQ(rec[i], w[i]);
    EXPECT_GE(std::fabs(w[i]), sorted[99]);
  }
  EXPECT_EQ(kept, 100u);
}

// The radix select keeps exactly the set a full selection keeps: the k
// largest |v_i|, ties to the lower index, on vectors with many equal
// magnitudes (few distinct values, +-0, signs), at awkward n and k.
TEST(TopK, RadixSelectIsTheExactTopKWithTiesToTheLowerIndex) {
  Rng rng(43);
  for (std::size_t n : {1, 2, 7, 64, 1000, 4097}) {
    for (int kind = 0; kind < 3; ++kind) {
      std::vector<float> v(n);
      for (float& x : v) {
        const float sign = rng.below(2) ? -1.0f : 1.0f;
        if (kind == 0) x = static_cast<float>(rng.below(5)) * sign;  // heavy ties, zeros of both signs
        else if (kind == 1) x = static_cast<float>(rng.normal());
        else x = std::ldexp(1.0f + static_cast<float>(rng.below(3)) * 0x1.0p-23f, static_cast<int>(rng.below(4))) * sign;
      }
      for (std::size_t k : {std::size_t{1}, n / 3 + 1, n}) {
        TopK top(k, 0.0);
        Bytes out;
        std::vector<float> rec(n);
        top.encode(v, rng, out, rec);
        std::vector<std::size_t> order(n);
        std::iota(order.begin(), order.end(), std::size_t{0});
        std::sort(order.begin(), order.end(), [&v](std::size_t a, std::size_t b) {
          const float ma = std::fabs(v[a]), mb = std::fabs(v[b]);
          return ma > mb || (ma == mb && a < b);
        });
        std::vector<float> expected(n, 0.0f);
        for (std::size_t j = 0; j < k; ++j) expected[order[j]] = v[order[j]];
        EXPECT_TRUE(same_bits(rec, expected)) << "n " << n << " kind " << kind << " k " << k;
        std::vector<float> decoded(n);
        top.decode(out, decoded);
        EXPECT_TRUE(same_bits(decoded, expected)) << "n " << n << " kind " << kind << " k " << k;
      }
    }
  }
}

TEST(SignCompressor, ScaleIsMeanAbsAndOneBitPerCoordinate) {
  for (std::size_t n : {1, 7, 8, 9, 100}) {
    std::vector<float> v = gaussian(n, n);
    v[0] = 0.0f;  // sgn(0) = +1
    auto c = make_pipeline("sign", n);
    Rng rng(1);
    std::vector<float> rec;
    const Bytes out = encode_checked(*c, v, rng, rec);
    EXPECT_EQ(out.size(), 4 + (n + 7) / 8);
    double l1 = 0.0;
    for (float x : v) l1 += std::fabs(x);
    const float scale = static_cast<float>(l1 / n);
    for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(rec[i], v[i] < 0 ? -scale : scale) << i;
  }
}

// EF-SGD: sent + new residual == input + old residual. For top_k every
// coordinate is either sent whole (residual 0) or kept whole, so the identity
// is exact in float: fl(r + e') == fl(v + e).
TEST(ErrorFeedback, TopKResidualIdentityIsExactInFloat) {
  const std::size_t n = 64;
  auto enc = make_pipeline("error_feedback, {top_k: {k: 3}}", n);
  auto dec = make_pipeline("error_feedback, {top_k: {k: 3}}", n);
  auto& ef = as<ErrorFeedback>(*enc);
  Rng rng(43);
  for (int round = 0; round < 100; ++round) {
    const std::vector<float> v = gaussian(n, 100 + round, round % 3 == 0 ? 1e-3 : 1.0);
    const std::vector<float> old(ef.residual().begin(), ef.residual().end());
    std::vector<float> rec;
    encode_checked(*enc, *dec, v, rng, rec);
    const auto e = ef.residual();
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_EQ(rec[i] + e[i], v[i] + old[i]) << "round " << round << " coordinate " << i;
      ASSERT_TRUE(rec[i] == 0.0f || e[i] == 0.0f);
    }
  }
}

// For sign, r = +-scale need not be near u = fl(v + e): e' = fl(u - r) carries
// one rounding, so the identity holds exactly where Sterbenz applies (r within
// a factor 2 of u) and to 2^-24 |u - r| elsewhere (error_feedback.h).
TEST(ErrorFeedback, SignResidualIdentityExactUpToTheDocumentedRounding) {
  const std::size_t n = 200;
  auto enc = make_pipeline("error_feedback, sign", n);
  auto dec = make_pipeline("error_feedback, sign", n);
  auto& ef = as<ErrorFeedback>(*enc);
  Rng rng(44);
  int sterbenz = 0;
  for (int round = 0; round < 100; ++round) {
    const std::vector<float> v = gaussian(n, 200 + round);
    const std::vector<float> old(ef.residual().begin(), ef.residual().end());
    std::vector<float> rec;
    encode_checked(*enc, *dec, v, rng, rec);
    const auto e = ef.residual();
    for (std::size_t i = 0; i < n; ++i) {
      const float u = v[i] + old[i];
      const long double gap = static_cast<long double>(rec[i]) + e[i] - u;
      ASSERT_LE(std::fabs(gap), 0x1.0p-24L * std::fabs(static_cast<long double>(u) - rec[i])) << round << " " << i;
      if (std::fabs(rec[i]) / 2 <= std::fabs(u) && std::fabs(u) <= 2 * std::fabs(rec[i]) &&
          std::signbit(u) == std::signbit(rec[i])) {
        ++sterbenz;
        ASSERT_EQ(rec[i] + e[i], u) << round << " " << i;
      }
    }
  }
  EXPECT_GT(sterbenz, 1000);
}

// Over T calls with a constant v the average of what was sent is v - e_T / T
// (plus the float roundings of u = v + e and e' = u - r).
TEST(ErrorFeedback, AverageSentConvergesToTheInput) {
  for (const char* inner : {"{top_k: {k: 2}}", "sign"}) {
    const std::size_t n = 50;
    const int rounds = 400;
    const std::vector<float> v = gaussian(n, 45);
    auto enc = make_pipeline(std::string("error_feedback, ") + inner, n);
    auto& ef = as<ErrorFeedback>(*enc);
    Rng rng(46);
    std::vector<double> sent(n, 0.0), rounding(n, 0.0);
    std::vector<float> rec(n);
    for (int t = 0; t < rounds; ++t) {
      std::vector<float> old(ef.residual().begin(), ef.residual().end());
      Bytes out;
      enc->encode(v, rng, out, rec);
      for (std::size_t i = 0; i < n; ++i) {
        const float u = v[i] + old[i];
        sent[i] += rec[i];
        rounding[i] += 0x1.0p-24 * (std::fabs(u) + std::fabs(static_cast<double>(u) - rec[i]));
      }
    }
    for (std::size_t i = 0; i < n; ++i) {
      const double e = ef.residual()[i];
      EXPECT_NEAR(sent[i] / rounds, v[i] - e / rounds, rounding[i] / rounds + 1e-12) << inner << " " << i;
      EXPECT_NEAR(sent[i] / rounds, v[i], (std::fabs(e) + rounding[i]) / rounds + 1e-12) << inner << " " << i;
    }
    // The memory stays bounded, so the average converges at rate 1/T.
    double max_e = 0.0, max_v = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      max_e = std::max(max_e, std::fabs(static_cast<double>(ef.residual()[i])));
      max_v = std::max(max_v, std::fabs(static_cast<double>(v[i])));
    }
    EXPECT_LT(max_e, n * max_v) << inner;
  }
}

// ---------------------------------------------------------------- threshold

// The grid g_j = min(tau + j * step, M), computed as the stage does (threshold_quantizer.h).
struct Grid {
  float low, high, step;
  float at(std::uint32_t j) const { return std::min(low + static_cast<float>(j) * step, high); }
};

Grid threshold_grid(const std::vector<float>& v, double threshold, bool relative, std::uint32_t levels) {
  float max_abs = 0.0f;
  for (float x : v) max_abs = std::max(max_abs, std::fabs(x));
  const float low = relative ? static_cast<float>(threshold * max_abs) : static_cast<float>(threshold);
  const float high = std::max(max_abs, low);
  return Grid{low, high, (high - low) / static_cast<float>(levels - 1)};
}

TEST(ThresholdQuantizer, BelowThresholdDecodesToZeroOthersToNeighbouringGridPoints) {
  struct Case {
    std::string stage;
    double threshold;
    bool relative;
    std::uint32_t levels;
  };
  for (const Case& cs : {Case{"{threshold: {threshold: 0.5}}", 0.5, false, 4},
                         Case{"{threshold: {relative: 0.3, levels: 3}}", 0.3, true, 3},
                         Case{"threshold", 0.1, true, 4},
                         Case{"{threshold: {relative: 0, levels: 9}}", 0.0, true, 9}}) {
    const std::size_t n = 300;
    const std::vector<float> v = gaussian(n, 51);
    auto c = make_pipeline(cs.stage, n);
    EXPECT_EQ(c->unbiased(), cs.threshold == 0.0) << cs.stage;
    const Grid g = threshold_grid(v, cs.threshold, cs.relative, cs.levels);
    const int level_bits = std::bit_width(cs.levels - 1);
    Rng rng(52);
    for (int rep = 0; rep < 50; ++rep) {
      std::vector<float> rec;
      const Bytes out = encode_checked(*c, v, rng, rec);
      std::size_t bits = 64, previous = 0, count = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const float a = std::fabs(v[i]);
        if (a < g.low) {
          ASSERT_EQ(rec[i], 0.0f) << cs.stage << " " << i;
          continue;
        }
        std::uint32_t l = 0;
        while (l + 1 < cs.levels && g.at(l + 1) <= a) ++l;
        const float q = std::fabs(rec[i]);
        ASSERT_TRUE(q == g.at(l) || (l + 1 < cs.levels && q == g.at(l + 1))) << cs.stage << " " << i;
        if (q != 0.0f) {
          ASSERT_EQ(std::signbit(rec[i]), std::signbit(v[i]));
          ++count;
          bits += gamma_bits(i + 1 - previous) + 1 + level_bits;
          previous = i + 1;
        }
      }
      bits += gamma_bits(count + 1);
      ASSERT_EQ(out.size(), (bits + 7) / 8) << cs.stage;
    }
  }
}

TEST(ThresholdQuantizer, KeptCoordinatesAreUnbiased) {
  const std::size_t n = 100;
  const std::vector<float> v = gaussian(n, 53);
  auto c = make_pipeline("{threshold: {threshold: 0.4, levels: 5}}", n);
  const Grid g = threshold_grid(v, 0.4, false, 5);
  const Draws d = draw(*c, v, 20000, 54);
  std::vector<double> expected(n), variance(n), slack(n);
  for (std::size_t i = 0; i < n; ++i) {
    const float a = std::fabs(v[i]);
    if (a < g.low) continue;  // expected 0, variance 0
    std::uint32_t l = 0;
    while (l + 1 < 5 && g.at(l + 1) <= a) ++l;
    expected[i] = v[i];
    if (l + 1 < 5) variance[i] = dither_variance(a, g.at(l), g.at(l + 1));
    slack[i] = 1e-6 * a + g.step * 0x1.0p-22;
  }
  expect_means(d, expected, variance, slack, "threshold");
}

// ---------------------------------------------------------------- log_quant

// Magnitudes M * base^-c, c = 0 .. 2^bits - 1, then 0, as the stage computes them.
std::vector<float> log_grid(const LogQuantizer& q, float max_abs) {
  std::vector<float> m;
  for (float r : q.ratios()) m.push_back(max_abs * r);
  m.push_back(0.0f);
  return m;
}

float max_abs_of(const std::vector<float>& v) {
  float m = 0.0f;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}

// The two grid magnitudes around a: m_c <= a <= m_(c-1) (a > 0).
std::pair<float, float> log_neighbours(const std::vector<float>& grid, float a) {
  std::size_t c = 0;
  while (grid[c] >= a) ++c;  // grid ends in 0 < a
  return {grid[c], grid[c - 1]};
}

TEST(LogQuantizer, DecodedMagnitudesAreOnTheLogGridNextToTheInput) {
  for (const char* st : {"log_quant", "{log_quant: {base: 10, bits: 2}}", "{log_quant: {base: 1.5, bits: 8}}"}) {
    const std::size_t n = 200;
    std::vector<float> v = gaussian(n, 61);
    v[0] = 0.0f;
    v[1] = 1e-20f;
    auto c = make_pipeline(st, n);
    const auto& q = as<LogQuantizer>(*c);
    const std::vector<float> grid = log_grid(q, max_abs_of(v));
    Rng rng(62);
    for (int rep = 0; rep < 50; ++rep) {
      std::vector<float> rec;
      encode_checked(*c, v, rng, rec);
      for (std::size_t i = 0; i < n; ++i) {
        if (v[i] == 0.0f) {
          ASSERT_EQ(rec[i], 0.0f);
          continue;
        }
        const auto [lo, hi] = log_neighbours(grid, std::fabs(v[i]));
        ASSERT_TRUE(std::fabs(rec[i]) == lo || std::fabs(rec[i]) == hi) << st << " " << i << ": " << rec[i];
        if (rec[i] != 0.0f) {
          ASSERT_EQ(std::signbit(rec[i]), std::signbit(v[i]));
        }
      }
    }
  }
}

TEST(LogQuantizer, UnbiasedWithoutThresholdAndThresholdZeroesSmallEntries) {
  const std::size_t n = 100;
  std::vector<float> v = gaussian(n, 63);
  v[7] = 1e-4f;  // below the smallest magnitude M 2^-15: rounds to it or to 0
  auto c = make_pipeline("log_quant", n);
  EXPECT_TRUE(c->unbiased());
  const std::vector<float> grid = log_grid(as<LogQuantizer>(*c), max_abs_of(v));
  const Draws d = draw(*c, v, 20000, 64);
  std::vector<double> expected(v.begin(), v.end()), variance(n), slack(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto [lo, hi] = log_neighbours(grid, std::fabs(v[i]));
    variance[i] = dither_variance(std::fabs(v[i]), lo, hi);
    slack[i] = 1e-7 * std::fabs(v[i]);
  }
  expect_means(d, expected, variance, slack, "log_quant");

  auto t = make_pipeline("{log_quant: {relative: 0.2}}", n);
  EXPECT_FALSE(t->unbiased());
  Rng rng(65);
  std::vector<float> rec;
  encode_checked(*t, v, rng, rec);
  const float threshold = static_cast<float>(0.2 * max_abs_of(v));
  for (std::size_t i = 0; i < n; ++i)
    if (std::fabs(v[i]) < threshold) {
      EXPECT_EQ(rec[i], 0.0f) << i;
    }
}

// Sparse vectors whose values sit on the grid are coded deterministically:
// positions and values round-trip, and the size is exactly the format's:
// M, gamma(count + 1), per block of 64 a 6-bit width w and per entry
// w + 1 + bits bits.
TEST(LogQuantizer, DeltaCodedPositionsRoundTripWithTheDocumentedSize) {
  const std::size_t n = 1000000;
  for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{64}, std::size_t{65}, std::size_t{300}}) {
    Rng pick(70 + count);
    std::vector<std::size_t> positions;
    std::size_t p = 0;
    for (std::size_t e = 0; e < count; ++e) {
      // Gaps from 1 to ~2^12, some blocks all ones (width 0).
      p += (e / 64) % 2 == 1 && count > 65 ? 1 : 1 + pick.below(std::uint64_t{1} << pick.below(13));
      positions.push_back(p - 1);
    }
    ASSERT_LE(p, n);
    auto c = make_pipeline("{log_quant: {bits: 3}}", n);
    const auto& q = as<LogQuantizer>(*c);
    std::vector<float> v(n, 0.0f);
    for (std::size_t e = 0; e < count; ++e)
      v[positions[e]] = (e % 2 ? -4.0f : 4.0f) * q.ratios()[e % q.ratios().size()];
    if (count > 0) v[positions[0]] = 4.0f;  // M = 4
    Rng rng(71);
    std::vector<float> rec;
    const Bytes out = encode_checked(*c, v, rng, rec);
    ASSERT_TRUE(same_bits(rec, v)) << "count " << count;
    std::size_t bits = 32 + gamma_bits(count + 1), previous = 0;
    for (std::size_t start = 0; start < count; start += 64) {
      const std::size_t end = std::min(count, start + 64);
      std::size_t widest = 0, prev = previous;
      for (std::size_t e = start; e < end; ++e) {
        widest = std::max(widest, positions[e] - prev);
        prev = positions[e] + 1;
      }
      bits += 6 + (end - start) * (std::bit_width(widest) + 1 + 3);
      previous = prev;
    }
    EXPECT_EQ(out.size(), (bits + 7) / 8) << "count " << count;
  }
}

// The encoder against the definition in log_quantizer.h, coordinate by
// coordinate in scalar code: the draws are the 32-bit words of a LaneRng made
// from the encoder's Rng, one per coordinate in index order. On data that
// sits exactly on, next to, and between the magnitudes, subnormals, zeros,
// and bases close to 1 (where the SIMD estimate of the magnitude's index
// misses most often and the exact walk takes over).
TEST(LogQuantizer, MatchesTheScalarDefinitionOnEveryPathOfTheEstimate) {
  struct Case {
    double base;
    int bits;
    double relative;
  };
  for (const Case& k : {Case{2.0, 4, 0.0}, Case{1.01, 8, 0.0}, Case{1.0001, 8, 0.0}, Case{1000.0, 1, 0.0},
                        Case{1.5, 8, 0.05}, Case{10.0, 2, 0.0}}) {
    LogQuantizer q(k.base, k.bits, LogQuantizer::Mode::kRelative, k.relative);
    for (std::size_t n : {1, 15, 16, 17, 1023, 1024, 1025, 2500}) {
      std::vector<float> v = gaussian(n, n + 3);
      const float max_abs = max_abs_of(v);
      const std::vector<float> grid = log_grid(q, max_abs);
      for (std::size_t i = 0; i < n; ++i) {
        const float g = grid[i % (grid.size() - 1)];
        switch (i % 7) {
          case 1: v[i] = g; break;                                    // on a magnitude
          case 2: v[i] = -std::nextafter(g, 0.0f); break;             // just below one
          case 3: v[i] = std::nextafter(g, 2.0f * max_abs); break;    // just above one
          case 4: v[i] = i % 2 ? 1e-40f : 0.0f; break;                // subnormal or zero
          default: break;
        }
      }
      v[0] = max_abs;
      const float m = max_abs_of(v);
      const std::vector<float> table = log_grid(q, m);
      const float threshold = static_cast<float>(k.relative * static_cast<double>(m));
      Rng rng(n + 11);
      Rng lane_seed = rng;
      LaneRng lanes(lane_seed);
      std::vector<std::uint64_t> words((n + 15) / 16 * LaneRng::kLanes);
      lanes.fill(words.data(), (n + 15) / 16);
      std::vector<std::uint32_t> random(words.size() * 2);
      std::memcpy(random.data(), words.data(), words.size() * sizeof(std::uint64_t));
      std::vector<float> expected(n, 0.0f);
      for (std::size_t i = 0; i < n; ++i) {
        const float a = std::fabs(v[i]);
        if (!(a > 0.0f && a >= threshold)) continue;
        std::size_t lower = 1;
        while (table[lower] >= a) ++lower;  // m_lower < a <= m_(lower-1)
        const float lo = table[lower], hi = table[lower - 1];
        const float u = static_cast<float>(random[i] >> 8) * 0x1.0p-24f;
        const float q_i = u * (hi - lo) < a - lo ? hi : lo;
        expected[i] = q_i == 0.0f ? 0.0f : std::copysign(q_i, v[i]);
      }
      Bytes out;
      std::vector<float> rec(n);
      q.encode(v, rng, out, rec);
      ASSERT_TRUE(same_bits(rec, expected)) << "base " << k.base << " bits " << k.bits << " n " << n;
      std::vector<float> decoded(n);
      q.decode(out, decoded);
      ASSERT_TRUE(same_bits(decoded, expected)) << "base " << k.base << " bits " << k.bits << " n " << n;
    }
  }
}

// The bytes and values of threshold and log quantization, digested over
// dense and sparse vectors (gaps of 509, past the gamma tables), sizes
// around the encoders' passes of 1024 coordinates and 16-lane chunks, and the settings with their own paths (levels up to 2^20, 8-bit
// log codes). Threshold's recorded from the scalar encoder it replaced (issue
// 12: same bytes); log quantization's re-recorded when its draws moved to the
// lane-parallel generator (checked against the scalar definition above);
// FEDSIM_SIMD=baseline runs the other SIMD path to the same.
std::uint64_t threshold_and_log_digest(const std::vector<std::string>& stages) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  const auto mix = [&h](const void* data, std::size_t size) {
    const auto* bytes = static_cast<const std::uint8_t*>(data);
    for (std::size_t i = 0; i < size; ++i) h = (h ^ bytes[i]) * 0x100000001b3ULL;
  };
  for (const std::string& stage : stages) {
    for (std::size_t n : {1, 17, 1025, 3001, 70001}) {
      for (int sparse = 0; sparse < 2; ++sparse) {
        std::vector<float> v = gaussian(n, n + 7 * static_cast<std::size_t>(sparse));
        if (sparse)
          for (std::size_t i = 0; i < n; ++i)
            if (i % 509 != 3) v[i] = 0.0f;
        auto c = make_pipeline(stage, n);
        Rng rng(n + 1);
        std::vector<float> rec;
        const Bytes out = encode_checked(*c, v, rng, rec);
        mix(out.data(), out.size());
        mix(rec.data(), rec.size() * sizeof(float));
      }
    }
  }
  return h;
}

TEST(ThresholdQuantizer, GivesTheRecordedBytes) {
  const std::uint64_t digest = threshold_and_log_digest(
      {"threshold", "{threshold: {relative: 0, levels: 9}}", "{threshold: {threshold: 0.3, levels: 1048576}}"});
  EXPECT_EQ(digest, 0xd78f041d879ea90fULL) << "0x" << std::hex << digest;
}

TEST(LogQuantizer, GivesTheRecordedBytes) {
  const std::uint64_t digest =
      threshold_and_log_digest({"log_quant", "{log_quant: {base: 1.5, bits: 8, relative: 0.05}}"});
  EXPECT_EQ(digest, 0xc565fa9f421724a3ULL) << "0x" << std::hex << digest;
}

// ---------------------------------------------------------- hadamard_rotation

TEST(HadamardRotation, OrthonormalNormPreservedInverseExactToFloat) {
  for (std::size_t block : {std::size_t{8}, std::size_t{1024}}) {
    for (std::size_t n : {1, 2, 13, 64, 1000, 1037, 3000}) {
      auto c = make_pipeline("{hadamard_rotation: {block: " + std::to_string(block) + "}}", n, {}, 99);
      const auto& h = as<HadamardRotation>(*c);
      const std::vector<float> x = gaussian(n, n), y = gaussian(n, n + 1);
      std::vector<float> rx = x, ry = y;
      h.rotate(rx);
      h.rotate(ry);
      const double tol = 1e-6 * (1 + std::log2(static_cast<double>(block)));
      EXPECT_NEAR(sq_norm(rx), sq_norm(x), tol * sq_norm(x)) << "n=" << n;
      double dot = 0.0, rdot = 0.0;
      for (std::size_t i = 0; i < n; ++i) {
        dot += static_cast<double>(x[i]) * y[i];
        rdot += static_cast<double>(rx[i]) * ry[i];
      }
      EXPECT_NEAR(rdot, dot, tol * std::sqrt(sq_norm(x) * sq_norm(y))) << "n=" << n;
      h.unrotate(rx);
      double err = 0.0;
      for (std::size_t i = 0; i < n; ++i) err += (static_cast<double>(rx[i]) - x[i]) * (rx[i] - x[i]);
      EXPECT_LE(std::sqrt(err), tol * std::sqrt(sq_norm(x))) << "n=" << n;

      // Through the pipeline (float32 inside): decode(encode(v)) is v to float tolerance.
      Rng rng(1);
      std::vector<float> rec;
      encode_checked(*c, x, rng, rec);
      err = 0.0;
      for (std::size_t i = 0; i < n; ++i) err += (static_cast<double>(rec[i]) - x[i]) * (rec[i] - x[i]);
      EXPECT_LE(std::sqrt(err), tol * std::sqrt(sq_norm(x))) << "n=" << n;
    }
  }
}

// A spike is spread evenly over its block: every rotated coordinate has
// magnitude 1/sqrt(block), and the same seed gives the same signs on both ends.
TEST(HadamardRotation, SpreadsASpikeEvenlyOverItsBlock) {
  const std::size_t n = 96;  // blocks of 64 and 32
  auto a = make_pipeline("{hadamard_rotation: {block: 64}}", n, {}, 5);
  auto b = make_pipeline("{hadamard_rotation: {block: 64}}", n, {}, 5);
  std::vector<float> x(n, 0.0f);
  x[70] = 1.0f;
  std::vector<float> rx = x, rx2 = x;
  as<HadamardRotation>(*a).rotate(rx);
  as<HadamardRotation>(*b).rotate(rx2);
  EXPECT_TRUE(same_bits(rx, rx2));
  for (std::size_t i = 0; i < 64; ++i) EXPECT_EQ(rx[i], 0.0f);
  for (std::size_t i = 64; i < n; ++i) EXPECT_NEAR(std::fabs(rx[i]), 1 / std::sqrt(32.0), 1e-7);
}

// Hadamard + QSGD stays unbiased; decoded coordinate i has variance
// (1/B) sum_j var_j over its block (orthonormal H with entries +-1/sqrt(B)).
TEST(HadamardRotation, ComposesWithQsgdAndStaysUnbiased) {
  const std::size_t n = 96;
  const std::uint32_t s = 2;
  std::vector<float> v = gaussian(n, 81);
  v[0] = 20.0f;  // a spike the rotation spreads
  auto c = make_pipeline("{hadamard_rotation: {block: 64}}, {qsgd: {levels: 2}}", n, {}, 82);
  EXPECT_TRUE(c->unbiased());
  const auto& h = as<HadamardRotation>(*c);
  std::vector<float> w = v;
  h.rotate(w);
  const double unit = std::sqrt(sq_norm(w)) / s;
  std::vector<double> rotated_var(n);
  double total_var = 0.0;
  for (std::size_t j = 0; j < n; ++j) {
    const double a = std::fabs(w[j]) / unit;
    rotated_var[j] = unit * unit * dither_variance(a, std::floor(a), std::floor(a) + 1);
    total_var += rotated_var[j];
  }
  std::vector<double> expected(v.begin(), v.end()), variance(n), slack(n);
  for (const auto& b : h.blocks()) {
    double sum = 0.0;
    for (std::size_t j = b.offset; j < b.offset + b.size; ++j) sum += rotated_var[j];
    for (std::size_t i = b.offset; i < b.offset + b.size; ++i) variance[i] = sum / b.size;
  }
  for (std::size_t i = 0; i < n; ++i) slack[i] = 1e-5 * unit;
  const Draws d = draw(*c, v, 20000, 83);
  expect_means(d, expected, variance, slack, "hadamard + qsgd");
  EXPECT_NEAR(d.total_sq_err / d.count, total_var, 0.03 * total_var);
}

// ---------------------------------------------------------------- censoring

TEST(Censoring, SkipsSmallChangesAndTheReceiverReusesTheLastVector) {
  const std::size_t n = 50;
  const double threshold = 0.01;
  auto enc = make_pipeline("{censoring: {threshold: 0.01}}", n);
  auto dec = make_pipeline("{censoring: {threshold: 0.01}}", n);
  auto& ce = as<Censoring>(*enc);
  auto& cd = as<Censoring>(*dec);
  Rng rng(91);
  std::vector<float> last(n, 0.0f);
  const std::vector<float> base = gaussian(n, 92);
  const std::vector<float> direction = gaussian(n, 93);
  // Relative squared changes around the threshold, against the last sent vector.
  int skipped = 0, sent = 0;
  for (double change : {1.0, 0.005, 0.009, 0.02, 0.0, 0.0099, 0.0101, 0.5, 0.001, 0.05, 2.0}) {
    std::vector<float> v(n);
    const double scale = std::sqrt(change * sq_norm(base) / sq_norm(direction));
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(last[i] + scale * direction[i]);
    if (change == 1.0) v = base;
    double diff = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      const double d = static_cast<double>(v[i]) - last[i];
      diff += d * d;
    }
    const bool skip = diff <= threshold * sq_norm(v);
    std::vector<float> rec;
    const Bytes out = encode_checked(*enc, *dec, v, rng, rec);
    EXPECT_EQ(ce.last_skipped(), skip) << change;
    EXPECT_EQ(cd.last_skipped(), skip) << change;
    if (skip) {
      ++skipped;
      EXPECT_EQ(out, Bytes{Censoring::kSkipped});
      EXPECT_TRUE(same_bits(rec, last)) << "the receiver reuses the last vector";
    } else {
      ++sent;
      ASSERT_EQ(out.size(), 1 + 4 * n);
      EXPECT_EQ(out[0], Censoring::kSent);
      EXPECT_TRUE(same_bits(rec, v));
      last = v;
    }
  }
  EXPECT_GE(skipped, 4);
  EXPECT_GE(sent, 4);
}

// With a quantizer inside, "last" is what the receiver reconstructed.
TEST(Censoring, ComparesAgainstTheReconstructedVectorWithAQuantizerInside) {
  const std::size_t n = 100;
  const std::string stages = "{censoring: {threshold: 0.1}}, {qsgd: {levels: 16}}";
  auto enc = make_pipeline(stages, n);
  auto dec = make_pipeline(stages, n);
  auto& ce = as<Censoring>(*enc);
  EXPECT_FALSE(enc->unbiased());
  Rng rng(94);
  const std::vector<float> base = gaussian(n, 95), drift = gaussian(n, 96);
  int skipped = 0;
  for (int round = 0; round < 40; ++round) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = base[i] + 0.1f * static_cast<float>(round) * drift[i];
    const std::vector<float> last(ce.last_sent().begin(), ce.last_sent().end());
    double diff = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      const double d = static_cast<double>(v[i]) - last[i];
      diff += d * d;
    }
    std::vector<float> rec;
    encode_checked(*enc, *dec, v, rng, rec);
    EXPECT_EQ(ce.last_skipped(), diff <= 0.1 * sq_norm(v)) << round;
    if (ce.last_skipped()) {
      ++skipped;
      EXPECT_TRUE(same_bits(rec, last));
    } else {
      EXPECT_TRUE(same_bits(rec, ce.last_sent()));
    }
  }
  EXPECT_GT(skipped, 5);
  EXPECT_LT(skipped, 35);
}

// ---------------------------------------------------------------- zstd

// zstd is lossless: the frame decompresses to the inner stage's payload byte
// for byte, and the reconstruction is the inner stage's, bit for bit.
TEST(ZstdCoder, LosslessAroundEveryQuantizer) {
  const std::size_t n = 500;
  std::vector<float> v = gaussian(n, 101);
  for (std::size_t i = 0; i < n; i += 3) v[i] = 0.0f;
  for (const std::string inner : {"float32", "qsgd", "{top_k: {k: 20}}", "sign", "natural", "terngrad",
                                  "natural_dithering", "{rand_k: {k: 30}}", "threshold", "log_quant"}) {
    auto plain = make_pipeline(inner, n);
    auto coded = make_pipeline(inner + ", {zstd: {level: 5}}", n);
    EXPECT_EQ(plain->unbiased(), coded->unbiased()) << inner;
    Rng r1(102), r2(102);
    std::vector<float> rec_plain, rec_coded;
    const Bytes inner_bytes = encode_checked(*plain, v, r1, rec_plain);
    const Bytes frame = encode_checked(*coded, v, r2, rec_coded);
    EXPECT_TRUE(same_bits(rec_plain, rec_coded)) << inner;
    const unsigned long long content = ZSTD_getFrameContentSize(frame.data(), frame.size());
    ASSERT_EQ(content, inner_bytes.size()) << inner;
    Bytes back(inner_bytes.size());
    const std::size_t got = ZSTD_decompress(back.data(), back.size(), frame.data(), frame.size());
    ASSERT_FALSE(ZSTD_isError(got)) << inner;
    EXPECT_EQ(back, inner_bytes) << inner;
  }
}

TEST(ZstdCoder, ShrinksRedundantPayloads) {
  const std::size_t n = 4000;
  std::vector<float> v(n, 0.0f);
  for (std::size_t i = 0; i < n; i += 50) v[i] = 1.0f;
  auto c = make_pipeline("zstd", n);
  Rng rng(1);
  std::vector<float> rec;
  const Bytes out = encode_checked(*c, v, rng, rec);
  EXPECT_TRUE(same_bits(rec, v));
  EXPECT_LT(out.size(), 4 * n / 20);
}

}  // namespace
}  // namespace fedsim
