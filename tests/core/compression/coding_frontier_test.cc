// The coding-frontier stages (issue 14) against their papers' claims:
// random-subspace coding (subspace), Deep Gradient Compression (dgc),
// PowerSGD (powersgd) and Wyner-Ziv nested quantization (wyner_ziv).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/base/config.h"
#include "core/base/errors.h"
#include "core/compression/dgc.h"
#include "core/compression/hadamard_rotation.h"
#include "core/compression/pipeline.h"
#include "core/compression/powersgd.h"
#include "core/compression/subspace.h"
#include "core/compression/wyner_ziv.h"
#include "tests/core/compression/compression_testing.h"

namespace fedsim {
namespace {

using test_util::as;
using test_util::gaussian;
using test_util::same_bits;
using test_util::sq_norm;

// These tests' pipelines share the seed 7.
std::unique_ptr<Compressor> make_pipeline(const std::string& stages, std::size_t n, std::vector<Layer> layers = {}) {
  return test_util::make_pipeline(stages, n, std::move(layers), 7);
}

double sq_dist(std::span<const float> a, std::span<const float> b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
  return s;
}


// Encodes on `enc`, decodes on `dec`, expects decode == reconstructed bit for bit.
Bytes round_trip(Compressor& enc, Compressor& dec, std::span<const float> v, Rng& rng, std::vector<float>& rec) {
  Bytes out;
  rec.assign(v.size(), -1.0f);
  enc.encode(v, rng, out, rec);
  std::vector<float> decoded(v.size(), -2.0f);
  dec.decode(out, decoded);
  EXPECT_TRUE(same_bits(decoded, rec)) << "decode(payload) differs from reconstructed";
  return out;
}

// ---------------------------------------------------------------- subspace

TEST(Subspace, EmbeddingIsOrthogonal) {
  // n = 37: blocks 32, 4, 1. The columns S e_i are orthonormal.
  auto c = make_pipeline("{subspace: {block: 32}}", 37);
  const RandomizedHadamard& s = as<Subspace>(*c).embedding_for(12345);
  const std::size_t n = 37;
  std::vector<std::vector<float>> cols(n, std::vector<float>(n, 0.0f));
  for (std::size_t i = 0; i < n; ++i) {
    cols[i][i] = 1.0f;
    s.rotate(cols[i]);
  }
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      double dot = 0.0;
      for (std::size_t k = 0; k < n; ++k) dot += static_cast<double>(cols[i][k]) * cols[j][k];
      EXPECT_NEAR(dot, i == j ? 1.0 : 0.0, 1e-6) << i << ", " << j;
    }
  // A larger one: norms and inner products kept, the inverse is the transpose.
  auto big = make_pipeline("subspace", 5000);
  const RandomizedHadamard& t = as<Subspace>(*big).embedding_for(99);
  auto x = gaussian(5000, 1), y = gaussian(5000, 2);
  std::vector<float> sx = x, sy = y;
  t.rotate(sx);
  t.rotate(sy);
  double xy = 0, sxsy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) xy += static_cast<double>(x[i]) * y[i], sxsy += static_cast<double>(sx[i]) * sy[i];
  EXPECT_NEAR(sxsy, xy, 1e-4 * std::sqrt(sq_norm(x) * sq_norm(y)));
  EXPECT_NEAR(sq_norm(sx), sq_norm(x), 1e-5 * sq_norm(x));
  t.unrotate(sx);
  EXPECT_LT(sq_dist(sx, x), 1e-10 * sq_norm(x));
  // Democratic: a spike is spread over its block, every coefficient ||v|| / sqrt(1024).
  std::vector<float> spike(5000, 0.0f);
  spike[17] = 3.0f;
  t.rotate(spike);
  for (std::size_t i = 0; i < 1024; ++i) EXPECT_NEAR(std::fabs(spike[i]), 3.0 / 32.0, 1e-6);
}

TEST(Subspace, BelowOneBitSendsTheStatedNumberOfBits) {
  for (double r : {0.05, 0.3, 0.5, 0.999}) {
    for (std::size_t n : {1u, 7u, 1000u, 4096u, 79510u}) {
      auto c = make_pipeline("{subspace: {bits_per_dim: " + std::to_string(r) + "}}", n);
      auto& s = as<Subspace>(*c);
      const std::size_t code_bits = static_cast<std::size_t>(std::floor(r * static_cast<double>(n)));
      EXPECT_EQ(s.code_bits(), code_bits);
      const auto v = gaussian(n, n);
      Rng rng(3);
      std::vector<float> rec;
      const Bytes payload = round_trip(*c, *c, v, rng, rec);
      const std::size_t blocks = RandomizedHadamard(n, 1024).blocks().size();
      EXPECT_EQ(payload.size(), 4 + 4 * blocks + (code_bits + 7) / 8) << "r " << r << ", n " << n;
      // Exactly floor(r n) coefficients carry one bit; the others are not sent.
      std::size_t sent = 0;
      for (std::uint8_t w : s.widths()) {
        EXPECT_LE(w, 1);
        sent += w;
      }
      EXPECT_EQ(sent, code_bits);
    }
  }
  // Above one bit: b or b + 1 bits per coefficient, floor(r n) in total.
  auto c = make_pipeline("{subspace: {bits_per_dim: 2.25}}", 1000);
  auto& s = as<Subspace>(*c);
  s.embedding_for(5);
  std::size_t total = 0;
  for (std::uint8_t w : s.widths()) {
    EXPECT_TRUE(w == 2 || w == 3);
    total += w;
  }
  EXPECT_EQ(total, 2250u);
}

// MSE of the midrise uniform quantizer with 2^w levels and step c on N(0, 1),
// by numerical integration.
double gaussian_mse(int width, double step) {
  const double half = 0.5 * static_cast<double>((1 << width) - 1);
  double mse = 0.0;
  const double dx = 1e-3;
  for (double x = -9.0; x < 9.0; x += dx) {
    const double j = std::clamp(std::floor(x / step + half + 0.5), 0.0, 2 * half);
    const double q = (j - half) * step;
    mse += (x - q) * (x - q) * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI) * dx;
  }
  return mse;
}

TEST(Subspace, GaussianStepsMinimiseTheQuantizerMse) {
  for (int w = 1; w <= 8; ++w) {
    const double c = Subspace::kGaussianStep[static_cast<std::size_t>(w)];
    const double at = gaussian_mse(w, c);
    EXPECT_LT(at, gaussian_mse(w, c * 1.02)) << w;
    EXPECT_LT(at, gaussian_mse(w, c * 0.98)) << w;
  }
}

TEST(Subspace, NearestRoundingMatchesTheGaussianQuantizerDistortion) {
  // After the embedding the coefficients are close to Gaussian: the
  // normalized distortion is Max's 0.3634 (1 bit) and 0.1188 (2 bits).
  const std::size_t n = 1 << 15;
  for (auto [r, expected] : {std::pair{1.0, 0.3634}, std::pair{2.0, 0.1188}}) {
    auto c = make_pipeline("{subspace: {bits_per_dim: " + std::to_string(r) + "}}", n);
    Rng rng(11);
    std::vector<float> rec;
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(std::pow(rng.uniform(), 3.0) * (i % 3 ? 1 : -1));
    round_trip(*c, *c, v, rng, rec);
    EXPECT_NEAR(sq_dist(rec, v) / sq_norm(v), expected, 0.03 * expected) << r;
  }
}

TEST(Subspace, StochasticRoundingIsUnbiasedAlsoBelowOneBit) {
  const std::size_t n = 40;
  const auto v = gaussian(n, 5);
  for (const char* r : {"0.5", "1.5"}) {
    auto c = make_pipeline(std::string("{subspace: {rounding: stochastic, block: 8, bits_per_dim: ") + r + "}}", n);
    EXPECT_TRUE(c->unbiased());
    Rng rng(9);
    const int draws = 20000;
    std::vector<double> sum(n, 0.0), sum_sq(n, 0.0);
    std::vector<float> rec(n);
    for (int d = 0; d < draws; ++d) {
      Bytes out;
      c->encode(v, rng, out, rec);
      for (std::size_t i = 0; i < n; ++i) sum[i] += rec[i], sum_sq[i] += static_cast<double>(rec[i]) * rec[i];
    }
    for (std::size_t i = 0; i < n; ++i) {
      const double mean = sum[i] / draws;
      const double var = sum_sq[i] / draws - mean * mean;
      EXPECT_NEAR(mean, v[i], 5 * std::sqrt(var / draws) + 1e-6) << r << ", coordinate " << i;
    }
  }
}

TEST(Subspace, ConvergesUnderErrorFeedbackAtHalfABit) {
  // r = 0.5 with nearest rounding is a contraction: with error feedback the
  // average of what is sent approaches a fixed input.
  const std::size_t n = 3000;
  const auto v = gaussian(n, 8);
  auto c = make_pipeline("error_feedback, {subspace: {bits_per_dim: 0.5}}", n);
  Rng rng(1);
  std::vector<double> sum(n, 0.0);
  std::vector<float> rec;
  const int rounds = 200;
  for (int t = 0; t < rounds; ++t) {
    round_trip(*c, *c, v, rng, rec);
    for (std::size_t i = 0; i < n; ++i) sum[i] += rec[i];
  }
  std::vector<float> mean(n);
  for (std::size_t i = 0; i < n; ++i) mean[i] = static_cast<float>(sum[i] / rounds);
  EXPECT_LT(sq_dist(mean, v) / sq_norm(v), 1e-3);
}

// --------------------------------------------------------------------- dgc

TEST(Dgc, MomentumCorrectionMatchesAHandComputedTwoStepExample) {
  // m = 0.5, k = 1 of 3, no clipping.
  //   step 1: g = (1, -3, 2): u = (1, -3, 2), v = (1, -3, 2); send v_1 = -3;
  //           masking: u = (1, 0, 2), v = (1, 0, 2).
  //   step 2: g = (2, 1, 1): u = 0.5 (1, 0, 2) + g = (2.5, 1, 2);
  //           v = (1, 0, 2) + u = (3.5, 1, 4); send v_2 = 4;
  //           masking: u = (2.5, 1, 0), v = (3.5, 1, 0).
  auto c = make_pipeline("{dgc: {k: 1, momentum: 0.5, sample: 1}}", 3);
  auto& dgc = as<Dgc>(*c);
  Rng rng(1);
  std::vector<float> rec;
  round_trip(*c, *c, std::vector<float>{1, -3, 2}, rng, rec);
  EXPECT_EQ(rec, (std::vector<float>{0, -3, 0}));
  EXPECT_EQ(std::vector<float>(dgc.momentum().begin(), dgc.momentum().end()), (std::vector<float>{1, 0, 2}));
  EXPECT_EQ(std::vector<float>(dgc.accumulation().begin(), dgc.accumulation().end()), (std::vector<float>{1, 0, 2}));
  round_trip(*c, *c, std::vector<float>{2, 1, 1}, rng, rec);
  EXPECT_EQ(rec, (std::vector<float>{0, 0, 4}));
  EXPECT_EQ(std::vector<float>(dgc.momentum().begin(), dgc.momentum().end()), (std::vector<float>{2.5f, 1, 0}));
  EXPECT_EQ(std::vector<float>(dgc.accumulation().begin(), dgc.accumulation().end()), (std::vector<float>{3.5f, 1, 0}));
}

TEST(Dgc, ClipsTheLocalGradientBeforeAccumulating) {
  // ||(3, 4, 0)|| = 5 clipped to 1: (0.6, 0.8, 0); top-1 sends 0.8.
  auto c = make_pipeline("{dgc: {k: 1, momentum: 0, clip_norm: 1, sample: 1}}", 3);
  Rng rng(1);
  std::vector<float> rec;
  round_trip(*c, *c, std::vector<float>{3, 4, 0}, rng, rec);
  EXPECT_FLOAT_EQ(rec[1], 0.8f);
  EXPECT_EQ(rec[0], 0.0f);
  EXPECT_FLOAT_EQ(as<Dgc>(*c).accumulation()[0], 0.6f);
}

TEST(Dgc, SampledThresholdSendsAtMostKAndCloseToK) {
  const std::size_t n = 100000;
  auto c = make_pipeline("{dgc: {fraction: 0.01, sample: 0.01}}", n);
  Rng rng(4);
  std::vector<float> rec;
  std::size_t total = 0;
  for (int t = 0; t < 5; ++t) {
    const Bytes payload = round_trip(*c, *c, gaussian(n, 100 + t), rng, rec);
    const auto sent = static_cast<std::size_t>(std::count_if(rec.begin(), rec.end(), [](float x) { return x != 0.0f; }));
    EXPECT_LE(sent, 1000u);
    total += sent;
    std::uint32_t count = 0;
    std::memcpy(&count, payload.data(), 4);
    EXPECT_EQ(count, sent);
  }
  // The sample's threshold (the 10th largest of 1000 draws) is within about
  // 30% of the true 1% quantile, so the messages carry close to k entries.
  EXPECT_GE(total, 3500u);
}

// ---------------------------------------------------------------- powersgd

std::vector<Layer> matrix_and_bias(std::size_t rows, std::size_t cols) {
  return {Layer{"w", 0, rows * cols, rows, cols}, Layer{"b", rows * cols, cols}};
}

TEST(PowerSgd, ReconstructionIsTheRankRProductItSends) {
  const std::size_t rows = 9, cols = 6, r = 2, n = rows * cols + cols;
  auto c = make_pipeline("{powersgd: {rank: 2}}", n, matrix_and_bias(rows, cols));
  Rng rng(2);
  std::vector<float> rec;
  for (int t = 0; t < 3; ++t) {
    const auto v = gaussian(n, 30 + t);
    const Bytes payload = round_trip(*c, *c, v, rng, rec);
    ASSERT_EQ(payload.size(), 4 * (r * (rows + cols) + cols));
    std::vector<float> f(payload.size() / 4);
    std::memcpy(f.data(), payload.data(), payload.size());
    const float* p = f.data();
    const float* q = f.data() + r * rows;
    // P has orthonormal columns.
    for (std::size_t a = 0; a < r; ++a)
      for (std::size_t b = 0; b < r; ++b) {
        double dot = 0;
        for (std::size_t i = 0; i < rows; ++i) dot += static_cast<double>(p[i + a * rows]) * p[i + b * rows];
        EXPECT_NEAR(dot, a == b ? 1.0 : 0.0, 1e-6);
      }
    for (std::size_t i = 0; i < rows; ++i)
      for (std::size_t j = 0; j < cols; ++j) {
        double s = 0;
        for (std::size_t k = 0; k < r; ++k) s += static_cast<double>(p[i + k * rows]) * q[j + k * cols];
        EXPECT_EQ(std::bit_cast<std::uint32_t>(static_cast<float>(s)), std::bit_cast<std::uint32_t>(rec[i + j * rows]));
      }
    // The bias goes as float32, after the factors.
    for (std::size_t j = 0; j < cols; ++j) {
      EXPECT_EQ(f[r * (rows + cols) + j], v[rows * cols + j] + 0.0f);
    }
  }
}

TEST(PowerSgd, FullRankErrorFeedbackResidualGoesToZeroOnAFixedMatrix) {
  const std::size_t rows = 7, cols = 5, n = rows * cols;
  auto c = make_pipeline("{powersgd: {rank: 5}}", n, {Layer{"w", 0, n, rows, cols}});
  auto& p = as<PowerSgd>(*c);
  EXPECT_EQ(p.layer_rank(0), 5u);
  const auto m = gaussian(n, 77);
  Rng rng(3);
  std::vector<float> rec;
  for (int t = 0; t < 5; ++t) {
    round_trip(*c, *c, m, rng, rec);
    const double residual = sq_norm(p.residual());
    EXPECT_LT(residual, 1e-10 * sq_norm(m)) << "step " << t;
  }
}

TEST(PowerSgd, LowRankErrorFeedbackAverageApproachesTheMatrix) {
  // rank 1 of a rank-5 matrix: what is sent averages to M (EF), the error of
  // the average is e_T / T.
  const std::size_t rows = 8, cols = 5, n = rows * cols;
  auto c = make_pipeline("{powersgd: {rank: 1}}", n, {Layer{"w", 0, n, rows, cols}});
  const auto m = gaussian(n, 12);
  Rng rng(3);
  std::vector<float> rec;
  std::vector<double> sum(n, 0.0);
  const int rounds = 400;
  for (int t = 0; t < rounds; ++t) {
    round_trip(*c, *c, m, rng, rec);
    for (std::size_t i = 0; i < n; ++i) sum[i] += rec[i];
  }
  std::vector<float> mean(n);
  for (std::size_t i = 0; i < n; ++i) mean[i] = static_cast<float>(sum[i] / rounds);
  EXPECT_LT(sq_dist(mean, m) / sq_norm(m), 1e-3);
}

// --------------------------------------------------------------- wyner_ziv

TEST(WynerZiv, EqualsPlainDitheredQuantizationAtAndInsideTheBound) {
  Rng rng(21);
  int cases = 0;
  for (int w : {1, 2, 4, 8}) {
    const std::int64_t modulus = std::int64_t{1} << w;
    for (double step : {0.25, 0.5, 1.0, 0.375}) {
      const double bound = static_cast<double>(modulus - 1) * step / 2;  // exact in double
      for (int trial = 0; trial < 400; ++trial) {
        const double x = std::ldexp(static_cast<double>(rng.below(1 << 16)) - 32768.0, -10);
        const double u = rng.uniform();
        const std::int64_t m = wz_quantize(x, step, u);
        for (double distance : {bound, std::nextafter(bound, 0.0), bound * (1 - 1e-9), 0.5 * bound, 0.0}) {
          for (double sign : {1.0, -1.0}) {
            const double y = x + sign * distance;
            const std::int64_t decoded = wz_decode_index(wz_index(m, w), w, y, step, u);
            // At the bound itself a tie is possible only when x / step + u is
            // exactly half-way between integers.
            const double t = x / step + u;
            if (distance == bound && t - std::floor(t) == 0.5) continue;
            EXPECT_EQ(decoded, m) << "w " << w << ", step " << step << ", x " << x << ", y " << y << ", u " << u;
            EXPECT_EQ(wz_value(decoded, step, u), static_cast<float>(step * (static_cast<double>(m) - u)));
            ++cases;
          }
        }
      }
    }
  }
  EXPECT_GT(cases, 60000);
}

TEST(WynerZiv, BeyondTheBoundTheCodeWrapsByAMultipleOfTheModulus) {
  // |x - y| > (M + 1) Delta / 2: the decoder always lands on another member
  // of the coset, an error of j M Delta, j != 0. The stage therefore never
  // sends such a block (next test).
  Rng rng(4);
  for (int w : {1, 3, 6}) {
    const std::int64_t modulus = std::int64_t{1} << w;
    for (int trial = 0; trial < 2000; ++trial) {
      const double step = 0.5;
      const double x = rng.normal() * 10;
      const double u = rng.uniform();
      const double y = x + (rng.bernoulli(0.5) ? 1 : -1) * ((modulus + 1) * step / 2 + 1e-3 + rng.uniform() * 40);
      const std::int64_t m = wz_quantize(x, step, u);
      const std::int64_t decoded = wz_decode_index(wz_index(m, w), w, y, step, u);
      EXPECT_NE(decoded, m);
      EXPECT_EQ((decoded - m) % modulus, 0);
    }
  }
}

TEST(WynerZiv, SideInformationSavesBitsWithTheSameReconstruction) {
  // Correlated successive updates: with side information the payload is
  // smaller, and the reconstruction is bit for bit the one without (same
  // step, same dither): only the bits change.
  const std::size_t n = 4096;
  auto with = make_pipeline("wyner_ziv", n);
  auto with_rx = make_pipeline("wyner_ziv", n);
  auto without = make_pipeline("{wyner_ziv: {side_information: none}}", n);
  auto without_rx = make_pipeline("{wyner_ziv: {side_information: none}}", n);
  auto x = gaussian(n, 1);
  Rng noise(2);
  std::size_t bytes_with = 0, bytes_without = 0;
  for (int t = 0; t < 6; ++t) {
    Rng r1(100 + t), r2(100 + t);
    std::vector<float> rec_with, rec_without;
    bytes_with += round_trip(*with, *with_rx, x, r1, rec_with).size();
    bytes_without += round_trip(*without, *without_rx, x, r2, rec_without).size();
    EXPECT_TRUE(same_bits(rec_with, rec_without)) << t;
    // Plain dithered quantization: |error| <= Delta / 2.
    double max_abs = 0;
    for (float v : x) max_abs = std::max(max_abs, static_cast<double>(std::fabs(v)));
    const double step = static_cast<float>(2 * max_abs / 14);
    for (std::size_t i = 0; i < n; ++i) EXPECT_LE(std::fabs(rec_with[i] - x[i]), step / 2 * (1 + 1e-5) + 1e-7);
    for (float& v : x) v = 0.9f * v + 0.1f * static_cast<float>(noise.normal());
  }
  EXPECT_LT(static_cast<double>(bytes_with), 0.8 * static_cast<double>(bytes_without));
  EXPECT_GT(as<WynerZiv>(*with_rx).last_side_coordinates(), 0u);
}

TEST(WynerZiv, UncorrelatedUpdatesFallBackToPlainAndStayExact) {
  const std::size_t n = 2000;
  auto enc = make_pipeline("{wyner_ziv: {bits: 3, block: 100}}", n);
  auto dec = make_pipeline("{wyner_ziv: {bits: 3, block: 100}}", n);
  Rng rng(5);
  std::vector<float> rec;
  for (int t = 0; t < 4; ++t) {
    const auto x = gaussian(n, 40 + t, t % 2 ? 100.0 : 0.01);  // scales jump: side information useless
    round_trip(*enc, *dec, x, rng, rec);
    double max_abs = 0;
    for (float v : x) max_abs = std::max(max_abs, static_cast<double>(std::fabs(v)));
    for (std::size_t i = 0; i < n; ++i) EXPECT_LE(std::fabs(rec[i] - x[i]), max_abs / 6 * (1 + 1e-5));
  }
}

TEST(WynerZiv, OutOfStepSideInformationIsDetected) {
  const std::size_t n = 300;
  auto enc = make_pipeline("wyner_ziv", n);
  auto dec = make_pipeline("wyner_ziv", n);
  Rng rng(6);
  std::vector<float> rec(n), out(n);
  Bytes first, second;
  enc->encode(gaussian(n, 1), rng, first, rec);
  enc->encode(gaussian(n, 2), rng, second, rec);
  EXPECT_THROW(dec->decode(second, out), DecodeError);  // missed the first message
  dec->decode(first, out);
  dec->decode(second, out);
  EXPECT_TRUE(same_bits(out, rec));
}

}  // namespace
}  // namespace fedsim
