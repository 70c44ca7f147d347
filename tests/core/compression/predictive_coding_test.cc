#include "core/compression/predictive_coding.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "core/coding/arithmetic_coder.h"
#include "core/base/errors.h"
#include "core/compression/pipeline.h"

namespace fedsim {
namespace {

// ------------------------------------------------------------ helpers

std::vector<std::uint32_t> draw_symbols(std::size_t n, const std::vector<double>& probs, Rng& rng) {
  std::vector<double> cdf(probs.size());
  double acc = 0.0;
  for (std::size_t i = 0; i < probs.size(); ++i) cdf[i] = (acc += probs[i]);
  std::vector<std::uint32_t> out(n);
  for (auto& s : out) {
    const double u = rng.uniform() * acc;
    s = static_cast<std::uint32_t>(std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
    s = std::min<std::uint32_t>(s, static_cast<std::uint32_t>(probs.size() - 1));
  }
  return out;
}

double empirical_entropy_bits(const std::vector<std::uint32_t>& symbols, std::size_t alphabet) {
  std::vector<double> counts(alphabet, 0.0);
  for (auto s : symbols) counts[s] += 1.0;
  double bits = 0.0;
  const double n = static_cast<double>(symbols.size());
  for (double c : counts)
    if (c > 0) bits -= c * std::log2(c / n);
  return bits;
}

Bytes encode_stream(const std::vector<std::uint32_t>& symbols, std::uint32_t alphabet) {
  Bytes out;
  ArithmeticEncoder enc(out);
  AdaptiveModel model(alphabet);
  for (auto s : symbols) enc.encode(s, model);
  enc.finish();
  return out;
}

std::vector<std::uint32_t> decode_stream(std::span<const std::uint8_t> bytes, std::size_t n, std::uint32_t alphabet) {
  ArithmeticDecoder dec(bytes);
  AdaptiveModel model(alphabet);
  std::vector<std::uint32_t> out(n);
  for (auto& s : out) s = dec.decode(model);
  dec.finish();
  return out;
}

PredictiveCodingOptions options_from(const std::string& yaml) {
  const Config cfg = Config::parse_string(yaml);
  auto o = PredictiveCodingOptions::from_config(cfg);
  cfg.finish();
  return o;
}

std::vector<float> gaussian(std::size_t n, Rng& rng, double scale = 1.0) {
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(scale * rng.normal());
  return v;
}

double squared_error(std::span<const float> a, std::span<const float> b) {
  double e = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) e += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return e;
}

double energy(std::span<const float> a) {
  double e = 0.0;
  for (float x : a) e += double(x) * x;
  return e;
}

// One encoder and one decoder of the same configuration, run in step.
struct Link {
  PredictiveCoder encoder;
  PredictiveCoder decoder;
  Link(const PredictiveCodingOptions& o, std::size_t dim, const std::vector<Layer>& layers)
      : encoder(o, dim, layers), decoder(o, dim, layers) {}

  // Returns the payload; checks decoded == reconstructed bit for bit.
  Bytes round(std::span<const float> v, Rng& rng, std::vector<float>& recon) {
    Bytes payload;
    recon.assign(v.size(), 0.0f);
    encoder.encode(v, rng, payload, recon);
    std::vector<float> decoded(v.size(), -1.0f);
    decoder.decode(payload, decoded);
    EXPECT_EQ(0, std::memcmp(decoded.data(), recon.data(), recon.size() * sizeof(float)))
        << "decoder out of step with encoder";
    return payload;
  }
};

// ------------------------------------------------------------ arithmetic coder

TEST(ArithmeticCoder, RoundTripsRandomStreamsWithDirectBits) {
  Rng rng(1);
  for (std::uint32_t alphabet : {1u, 2u, 3u, 17u, 255u, 4095u, AdaptiveModel::kMaxSize}) {
    const std::size_t n = 20000;
    std::vector<std::uint32_t> symbols(n), raw(n);
    std::vector<int> widths(n);
    for (std::size_t i = 0; i < n; ++i) {
      symbols[i] = static_cast<std::uint32_t>(rng.below(alphabet));
      widths[i] = 1 + static_cast<int>(rng.below(16));
      raw[i] = static_cast<std::uint32_t>(rng.below(1u << widths[i]));
    }
    Bytes bytes;
    {
      ArithmeticEncoder enc(bytes);
      AdaptiveModel model(alphabet);
      for (std::size_t i = 0; i < n; ++i) {
        enc.encode(symbols[i], model);
        if (i % 7 == 0) enc.encode_bits(raw[i], widths[i]);
      }
      enc.finish();
    }
    ArithmeticDecoder dec(bytes);
    AdaptiveModel model(alphabet);
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_EQ(dec.decode(model), symbols[i]) << "alphabet " << alphabet << " symbol " << i;
      if (i % 7 == 0) {
        ASSERT_EQ(dec.decode_bits(widths[i]), raw[i]);
      }
    }
    EXPECT_NO_THROW(dec.finish());
  }
}

TEST(ArithmeticCoder, RoundTripsSkewedStreams) {
  Rng rng(2);
  // Very skewed (long runs of one symbol: the range shrinks slowly and carries
  // through runs of 0xFF bytes are frequent), then a shifting distribution.
  std::vector<std::uint32_t> symbols = draw_symbols(200000, {0.999, 0.0005, 0.0003, 0.0002}, rng);
  for (std::size_t i = 0; i < 50000; ++i) symbols.push_back(i < 25000 ? 3 : static_cast<std::uint32_t>(rng.below(4)));
  const Bytes bytes = encode_stream(symbols, 4);
  EXPECT_EQ(decode_stream(bytes, symbols.size(), 4), symbols);
  // Single-symbol alphabet: nothing but the flush.
  const std::vector<std::uint32_t> zeros(1000, 0);
  const Bytes flat = encode_stream(zeros, 1);
  EXPECT_EQ(flat.size(), 4u);
  EXPECT_EQ(decode_stream(flat, zeros.size(), 1), zeros);
}

TEST(ArithmeticCoder, LongIidStreamWithinOnePercentOfEmpiricalEntropy) {
  Rng rng(3);
  struct Case {
    std::vector<double> probs;
  };
  std::vector<double> geometric;
  for (int k = 0; k < 16; ++k) geometric.push_back(std::pow(0.6, k));
  const std::vector<Case> cases{{geometric}, {{0.9, 0.05, 0.03, 0.02}}, {std::vector<double>(64, 1.0)}};
  for (const auto& c : cases) {
    const std::size_t n = 1000000;
    const auto symbols = draw_symbols(n, c.probs, rng);
    const double nh = empirical_entropy_bits(symbols, c.probs.size());
    const Bytes bytes = encode_stream(symbols, static_cast<std::uint32_t>(c.probs.size()));
    const double coded = 8.0 * static_cast<double>(bytes.size());
    std::printf("  alphabet %zu: n*H = %.0f bits (%.4f/symbol), coded %.0f bits, ratio %.5f\n", c.probs.size(), nh,
                nh / n, coded, coded / nh);
    EXPECT_LE(coded, 1.01 * nh + 1024.0);
    EXPECT_GE(coded, nh - 1024.0);  // an i.i.d. source cannot be beaten by much
    EXPECT_EQ(decode_stream(bytes, n, static_cast<std::uint32_t>(c.probs.size())), symbols);
  }
}

TEST(ArithmeticCoder, IdealBitsFormulaMatchesCodedSize) {
  // Short enough that the model never halves: the closed form is exact up to
  // the coder's rounding and the 32-bit flush.
  Rng rng(4);
  for (std::uint32_t alphabet : {3u, 15u, 255u}) {
    std::vector<double> probs(alphabet);
    for (std::uint32_t k = 0; k < alphabet; ++k) probs[k] = std::pow(0.5, std::min<std::uint32_t>(k, 40));
    const auto symbols = draw_symbols(1800, probs, rng);
    std::vector<double> counts(alphabet, 0.0);
    for (auto s : symbols) counts[s] += 1.0;
    const double ideal = AdaptiveModel::ideal_bits(counts);
    const double coded = 8.0 * static_cast<double>(encode_stream(symbols, alphabet).size());
    EXPECT_GE(coded, ideal) << alphabet;
    EXPECT_LE(coded, ideal * 1.01 + 32 + 8) << alphabet;
  }
}

TEST(ArithmeticCoder, DecoderRejectsEmptyTruncatedAndTrailingBytes) {
  Rng rng(5);
  const auto symbols = draw_symbols(3000, {0.5, 0.3, 0.1, 0.1}, rng);
  const Bytes bytes = encode_stream(symbols, 4);
  EXPECT_THROW(decode_stream({}, symbols.size(), 4), DecodeError);
  for (std::size_t len = 0; len < bytes.size(); ++len)
    EXPECT_THROW(decode_stream(std::span(bytes).first(len), symbols.size(), 4), DecodeError) << len;
  for (std::uint8_t extra : {0x00, 0x01, 0xFF}) {
    Bytes longer = bytes;
    longer.push_back(extra);
    EXPECT_THROW(decode_stream(longer, symbols.size(), 4), DecodeError);
  }
}

// The Fenwick tree walks a fixed number of steps (no branch on the symbol):
// cumulative(), find() and the frequencies must match plain sums of the
// model's definition (start at 1, +kIncrement, halve rounding up past
// kMaxTotal) for every alphabet shape, through many halvings.
TEST(ArithmeticCoder, ModelMatchesPlainFrequencySumsThroughHalvings) {
  Rng rng(17);
  for (std::uint32_t size : {1u, 2u, 3u, 4u, 5u, 7u, 8u, 15u, 16u, 17u, 255u, 4095u, AdaptiveModel::kMaxSize}) {
    AdaptiveModel model(size);
    std::vector<std::uint32_t> freq(size, 1);
    const int updates = size > 1000 ? 6000 : 20000;
    for (int step = 0; step < updates; ++step) {
      // Skewed draws, so that some symbols stay at small frequencies.
      const auto s = static_cast<std::uint32_t>(rng.below(rng.bernoulli(0.7) ? std::min(size, 4u) : size));
      model.update(s);
      std::uint32_t total = 0;
      for (auto f : freq) total += f;
      if (total + AdaptiveModel::kIncrement > AdaptiveModel::kMaxTotal)
        for (auto& f : freq) f = (f + 1) / 2;
      freq[s] += AdaptiveModel::kIncrement;
      if (step % 97 != 0 && step != updates - 1) continue;
      std::uint32_t cum = 0;
      for (std::uint32_t k = 0; k < size; ++k) {
        ASSERT_EQ(model.frequency(k), freq[k]) << size << " " << k;
        ASSERT_EQ(model.cumulative(k), cum) << size << " " << k;
        std::uint32_t low = 0;
        ASSERT_EQ(model.find(cum, low), k);
        ASSERT_EQ(low, cum);
        ASSERT_EQ(model.find(cum + freq[k] - 1, low), k);
        cum += freq[k];
      }
      ASSERT_EQ(model.total(), cum) << size;
    }
  }
}

// ------------------------------------------------------------ predictive coding

const std::vector<Layer> kLayers{{"conv", 0, 300}, {"bias", 300, 10}, {"empty", 310, 0}, {"fc", 310, 1000}};
constexpr std::size_t kDim = 1310;

TEST(PredictiveCoding, EncoderAndDecoderStayInStepOverTwentyRounds) {
  for (const char* yaml : {"{}", "{predictors: [lms, linear], bits: [3, 12], lambda: 0.01}", "{bits: [2]}"}) {
    Link link(options_from(yaml), kDim, kLayers);
    Rng data(6), uplink(7);
    std::vector<float> x = gaussian(kDim, data), recon;
    std::size_t total_bytes = 0;
    for (int t = 0; t < 20; ++t) {
      const auto noise = gaussian(kDim, data, 0.1);
      for (std::size_t i = 0; i < kDim; ++i) x[i] = 0.9f * x[i] + noise[i];
      for (std::size_t i = 300; i < 310; ++i) x[i] = (t % 3 == 0) ? 0.0f : x[i];  // exact zeros now and then
      const Bytes payload = link.round(x, uplink, recon);
      total_bytes += payload.size();
      ASSERT_EQ(link.encoder.last_choices().size(), kLayers.size());
      for (std::size_t l = 0; l < kLayers.size(); ++l) {
        EXPECT_EQ(link.encoder.last_choices()[l].predictor, link.decoder.last_choices()[l].predictor);
        EXPECT_EQ(link.encoder.last_choices()[l].bits, link.decoder.last_choices()[l].bits);
      }
    }
    EXPECT_EQ(link.decoder.rounds(), 20u);
    std::printf("  %s: %.3f bits/coordinate\n", yaml, 8.0 * total_bytes / (20.0 * kDim));
  }
}

// x_t = x_{t-1} + small noise: "last" (or "linear") predicts well, so the
// residual is small relative to the update and a coarse quantizer suffices.
TEST(PredictiveCoding, SlowlyVaryingUpdatesNeedFarFewerBitsThanZeroPredictor) {
  const std::size_t dim = 8192;
  const std::vector<Layer> layers{{"a", 0, 4096}, {"b", 4096, 4096}};
  Link predictive(options_from("{predictors: [zero, last, mean, linear]}"), dim, layers);
  Link zero_only(options_from("{predictors: [zero]}"), dim, layers);
  Rng data(8), rng_a(9), rng_b(9);
  std::vector<float> x = gaussian(dim, data), recon;
  double bits_predictive = 0, bits_zero = 0, err_predictive = 0, err_zero = 0, signal = 0;
  std::map<std::string, int> picks;
  const int rounds = 30, warmup = 3;
  for (int t = 0; t < rounds; ++t) {
    if (t > 0) {
      const auto noise = gaussian(dim, data, 0.02);
      for (std::size_t i = 0; i < dim; ++i) x[i] += noise[i];
    }
    const Bytes p = predictive.round(x, rng_a, recon);
    const double e_p = squared_error(recon, x);
    const Bytes z = zero_only.round(x, rng_b, recon);
    const double e_z = squared_error(recon, x);
    if (t < warmup) continue;
    bits_predictive += 8.0 * p.size();
    bits_zero += 8.0 * z.size();
    err_predictive += e_p;
    err_zero += e_z;
    signal += energy(x);
    for (const auto& c : predictive.encoder.last_choices()) {
      ++picks[predictor_name(c.predictor)];
      // With a coarse residual quantizer the running mean (which averages
      // past quantization noise) can beat "last"; "zero" never can.
      EXPECT_NE(c.predictor, Predictor::kZero) << "round " << t;
    }
  }
  const double coords = double(dim) * (rounds - warmup);
  std::printf("  bits/coordinate: predictive %.3f, zero-only %.3f (ratio %.2f); relative distortion %.4f vs %.4f\n",
              bits_predictive / coords, bits_zero / coords, bits_zero / bits_predictive, err_predictive / signal,
              err_zero / signal);
  for (const auto& [name, count] : picks) std::printf("  picked %s %d times\n", name.c_str(), count);
  EXPECT_GT(bits_zero / bits_predictive, 2.0);
  EXPECT_LT(err_predictive, err_zero);  // fewer bits and still less distortion
}

// With a fine quantizer the reconstructions are (nearly) exact, so the choice
// reflects the signal model alone: a random walk is best predicted by the
// last update.
TEST(PredictiveCoding, RandomWalkWithFineQuantizerPicksLast) {
  const std::size_t dim = 2048;
  Link link(options_from("{predictors: [zero, mean, linear, last], bits: [12]}"), dim, {});
  Rng data(16), uplink(17);
  std::vector<float> x = gaussian(dim, data), recon;
  for (int t = 0; t < 12; ++t) {
    const auto noise = gaussian(dim, data, 0.02);
    for (std::size_t i = 0; i < dim; ++i) x[i] += noise[i];
    link.round(x, uplink, recon);
    if (t >= 2) {
      EXPECT_EQ(std::string(predictor_name(link.encoder.last_choices()[0].predictor)), "last") << "round " << t;
    }
  }
}

// ... and a linear trend by linear extrapolation of the last two.
TEST(PredictiveCoding, LinearTrendPicksLinear) {
  const std::size_t dim = 2048;
  Link link(options_from("{predictors: [zero, mean, last, linear], bits: [12]}"), dim, {});
  Rng data(10), uplink(11);
  const auto base = gaussian(dim, data), drift = gaussian(dim, data, 0.2);
  std::vector<float> x(dim), recon;
  for (int t = 0; t < 12; ++t) {
    const auto noise = gaussian(dim, data, 0.002);
    for (std::size_t i = 0; i < dim; ++i) x[i] = base[i] + static_cast<float>(t) * drift[i] + noise[i];
    link.round(x, uplink, recon);
    if (t >= 3) {
      EXPECT_EQ(std::string(predictor_name(link.encoder.last_choices()[0].predictor)), "linear") << "round " << t;
    }
  }
}

TEST(PredictiveCoding, LmsLearnsGeometricallyDecayingUpdates) {
  // x_t = 0.8 x_{t-1}: no fixed predictor is exact, the adaptive one becomes so.
  const std::size_t dim = 2048;
  Link link(options_from("{}"), dim, {});
  Rng data(12), uplink(13);
  std::vector<float> x = gaussian(dim, data), recon;
  std::map<std::string, int> late_picks;
  for (int t = 0; t < 25; ++t) {
    const auto noise = gaussian(dim, data, 1e-4);
    for (std::size_t i = 0; i < dim; ++i) x[i] = 0.8f * x[i] + noise[i];
    link.round(x, uplink, recon);
    if (t >= 15) ++late_picks[predictor_name(link.encoder.last_choices()[0].predictor)];
  }
  for (const auto& [name, count] : late_picks) std::printf("  rounds 15-24 picked %s %d times\n", name.c_str(), count);
  EXPECT_EQ(late_picks["lms"], 10);
}

TEST(PredictiveCoding, LargerLambdaSpendsFewerBitsForMoreDistortion) {
  const std::size_t dim = 16384;
  Rng data(14);
  const auto x = gaussian(dim, data);
  std::vector<double> bits, distortion;
  for (double lambda : {0.001, 0.01, 0.1, 1.0, 10.0}) {
    Link link(options_from("{predictors: [zero], lambda: " + std::to_string(lambda) + "}"), dim, {});
    Rng uplink(15);
    std::vector<float> recon;
    bits.push_back(8.0 * link.round(x, uplink, recon).size() / dim);
    distortion.push_back(squared_error(recon, x) / energy(x));
    std::printf("  lambda %-6g: b = %d, %.3f bits/coordinate, relative distortion %.5f\n", lambda,
                link.encoder.last_choices()[0].bits, bits.back(), distortion.back());
  }
  for (std::size_t k = 1; k < bits.size(); ++k) {
    EXPECT_LE(bits[k], bits[k - 1]);
    EXPECT_GE(distortion[k], distortion[k - 1]);
  }
  EXPECT_GT(bits.front(), 2.0 * bits.back());
  EXPECT_GT(distortion.back(), 10.0 * distortion.front());
}

// Step 2's cost of quantizer b on residual r, directly from its definition in
// predictive_coding.h (one quantizer at a time, no bounds): {distortion /
// norm, lambda-free rate / n}.
std::pair<double, double> exact_cost_terms(std::span<const float> r, int b, double norm) {
  const std::int32_t L = (1 << (b - 1)) - 1;
  float max_abs = 0.0f;
  for (float v : r) max_abs = std::max(max_abs, std::fabs(v));
  const float step = max_abs / static_cast<float>(L);
  std::vector<double> counts(2 * L + 2, 0.0);
  auto symbol = [](std::int32_t q) { return static_cast<std::size_t>(q > 0 ? 2 * q - 1 : -2 * q); };
  double variance = 0.0;
  for (float v : r) {
    const double y = std::clamp(static_cast<double>(v) / step, -double(L), double(L));
    const double lo = std::floor(y);
    const double p = y - lo;
    counts[symbol(static_cast<std::int32_t>(lo))] += 1.0 - p;
    if (p > 0) counts[symbol(static_cast<std::int32_t>(lo) + 1)] += p;
    variance += p * (1.0 - p);
  }
  const double n = static_cast<double>(r.size());
  const double header_bits = 0 + 3 + 32;  // one predictor, five quantizers, the step
  const double rate = header_bits + AdaptiveModel::ideal_bits(std::span<const double>(counts.data(), 2 * L + 1));
  const double s = step;
  return {variance * (s * s) / norm, rate / n};
}

TEST(PredictiveCoding, CostBoundsNeverChangeTheChoice) {
  // Large layers skip candidates by a lower bound of their cost: the choice
  // must still be the exact argmin over all candidates, also where two costs
  // nearly tie (lambda at 0.1% from a crossover) and for heavy tails.
  const std::size_t dim = std::size_t{1} << 15;
  const std::vector<int> bits{2, 3, 4, 6, 8};
  Rng data(31);
  for (int shape = 0; shape < 2; ++shape) {
    std::vector<float> x = gaussian(dim, data);
    if (shape == 1)
      for (float& v : x) v = v * v * v;  // heavy-tailed
    const double norm = energy(x);
    std::vector<std::pair<double, double>> terms;
    for (int b : bits) terms.push_back(exact_cost_terms(x, b, norm));
    std::vector<double> lambdas{0.0, 0.01, 0.1, 1.0, 100.0};
    for (std::size_t a = 0; a < bits.size(); ++a)
      for (std::size_t c = a + 1; c < bits.size(); ++c) {
        const double crossover = (terms[a].first - terms[c].first) / (terms[c].second - terms[a].second);
        if (crossover > 0) lambdas.insert(lambdas.end(), {crossover * 0.999, crossover * 1.001});
      }
    for (double lambda : lambdas) {
      std::size_t best = 0;
      for (std::size_t q = 1; q < bits.size(); ++q)
        if (terms[q].first + lambda * terms[q].second < terms[best].first + lambda * terms[best].second) best = q;
      PredictiveCodingOptions o;
      o.predictors = {Predictor::kZero};
      o.bits = bits;
      o.lambda = lambda;
      Link link(o, dim, {});
      Rng uplink(32);
      std::vector<float> recon;
      link.round(x, uplink, recon);
      EXPECT_EQ(bits[best], link.encoder.last_choices()[0].bits) << "shape " << shape << ", lambda " << lambda;
    }
  }
}

TEST(PredictiveCoding, LambdaIsScaleFree) {
  // Scaling every update by a power of two scales every float exactly: the
  // same predictors and quantizers must be chosen and the payload sizes match.
  const std::size_t dim = 3000;
  const std::vector<Layer> layers{{"a", 0, 1000}, {"b", 1000, 2000}};
  Link small(options_from("{}"), dim, layers), large(options_from("{}"), dim, layers);
  Rng data(16), rng_s(17), rng_l(17);
  std::vector<float> x = gaussian(dim, data), big(dim), recon;
  for (int t = 0; t < 8; ++t) {
    const auto noise = gaussian(dim, data, 0.05);
    for (std::size_t i = 0; i < dim; ++i) x[i] += noise[i];
    for (std::size_t i = 0; i < dim; ++i) big[i] = 1024.0f * x[i];
    const Bytes a = small.round(x, rng_s, recon);
    const Bytes b = large.round(big, rng_l, recon);
    EXPECT_EQ(a.size(), b.size());
    for (std::size_t l = 0; l < layers.size(); ++l) {
      EXPECT_EQ(small.encoder.last_choices()[l].predictor, large.encoder.last_choices()[l].predictor);
      EXPECT_EQ(small.encoder.last_choices()[l].bits, large.encoder.last_choices()[l].bits);
      EXPECT_EQ(1024.0f * small.encoder.last_choices()[l].step, large.encoder.last_choices()[l].step);
    }
  }
}

TEST(PredictiveCoding, ResidualQuantizationIsUnbiased) {
  // Fixed history (one round of v1), then many independent encodings of v2
  // from copies of that state: E[reconstruction] = v2 coordinate by
  // coordinate. Round-to-nearest would miss by up to step/2, about 70
  // standard errors here.
  const std::size_t dim = 64;
  Rng data(18);
  const auto v1 = gaussian(dim, data);
  std::vector<float> v2(dim);
  const auto delta = gaussian(dim, data, 0.3);
  for (std::size_t i = 0; i < dim; ++i) v2[i] = v1[i] + delta[i];
  PredictiveCoder base(options_from("{}"), dim, {});
  {
    Rng rng(19);
    Bytes out;
    std::vector<float> recon(dim);
    base.encode(v1, rng, out, recon);
  }
  const int trials = 20000;
  std::vector<double> sum(dim, 0.0), sum_sq(dim, 0.0);
  Rng rng(20);
  float step = 0.0f;
  for (int k = 0; k < trials; ++k) {
    PredictiveCoder enc = base;
    Bytes out;
    std::vector<float> recon(dim);
    enc.encode(v2, rng, out, recon);
    ASSERT_NE(enc.last_choices()[0].predictor, Predictor::kZero);
    if (k == 0) step = enc.last_choices()[0].step;
    ASSERT_EQ(enc.last_choices()[0].step, step);  // the choice does not depend on the draws
    for (std::size_t i = 0; i < dim; ++i) {
      const double e = double(recon[i]) - v2[i];
      sum[i] += e;
      sum_sq[i] += e * e;
    }
  }
  double mean_sd = 0.0;
  for (std::size_t i = 0; i < dim; ++i) {
    const double bias = sum[i] / trials;
    const double var = sum_sq[i] / trials - bias * bias;
    EXPECT_LE(var, double(step) * step / 4.0 * 1.05 + 1e-12) << i;  // p(1-p) step^2 <= step^2/4
    EXPECT_LE(std::fabs(bias), 5.0 * std::sqrt(var / trials) + 1e-6 * std::fabs(v2[i])) << i;
    mean_sd += std::sqrt(var) / dim;
  }
  EXPECT_GT(mean_sd, 0.05 * step);  // genuinely random rounding, not lossless
}

Bytes valid_payload(PredictiveCoder& encoder, std::size_t dim, std::uint64_t seed) {
  Rng data(seed), rng(seed + 1);
  const auto x = gaussian(dim, data);
  Bytes out;
  std::vector<float> recon(dim);
  encoder.encode(x, rng, out, recon);
  return out;
}

TEST(PredictiveCoding, DecoderRejectsTruncatedTrailingAndEmptyPayloads) {
  const auto o = options_from("{}");
  PredictiveCoder encoder(o, kDim, kLayers), decoder(o, kDim, kLayers);
  std::vector<float> out(kDim);
  decoder.decode(valid_payload(encoder, kDim, 21), out);  // one round of history
  const Bytes payload = valid_payload(encoder, kDim, 22);
  EXPECT_THROW(PredictiveCoder(decoder).decode({}, out), DecodeError);
  for (std::size_t len = 0; len < payload.size(); ++len) {
    PredictiveCoder d = decoder;
    EXPECT_THROW(d.decode(std::span(payload).first(len), out), DecodeError) << "prefix of " << len << " bytes";
  }
  Rng rng(23);
  for (int k = 0; k < 50; ++k) {
    Bytes longer = payload;
    const std::size_t extra = 1 + rng.below(8);
    for (std::size_t j = 0; j < extra; ++j) longer.push_back(static_cast<std::uint8_t>(rng.below(256)));
    PredictiveCoder d = decoder;
    EXPECT_THROW(d.decode(longer, out), DecodeError);
  }
  // A failed decode leaves the state alone: the genuine payload still decodes.
  EXPECT_NO_THROW(decoder.decode(payload, out));
  EXPECT_EQ(decoder.rounds(), 2u);
}

TEST(PredictiveCoding, DecoderSurvivesBitFlipsAndGarbage) {
  const auto o = options_from("{}");
  PredictiveCoder encoder(o, kDim, kLayers), decoder(o, kDim, kLayers);
  std::vector<float> out(kDim);
  decoder.decode(valid_payload(encoder, kDim, 24), out);
  const Bytes payload = valid_payload(encoder, kDim, 25);
  Rng rng(26);
  int rejected = 0, decoded = 0;
  const int trials = 3000;
  for (int k = 0; k < trials; ++k) {
    Bytes bad = payload;
    const int flips = 1 + static_cast<int>(rng.below(3));
    for (int f = 0; f < flips; ++f) bad[rng.below(bad.size())] ^= static_cast<std::uint8_t>(1u << rng.below(8));
    PredictiveCoder d = decoder;
    try {
      d.decode(bad, out);
      ++decoded;
    } catch (const DecodeError&) {
      ++rejected;
    }
  }
  int garbage_rejected = 0;
  for (int k = 0; k < 2000; ++k) {
    Bytes garbage(rng.below(64));
    for (auto& b : garbage) b = static_cast<std::uint8_t>(rng.below(256));
    PredictiveCoder d = (k % 2) ? decoder : PredictiveCoder(o, kDim, kLayers);
    try {
      d.decode(garbage, out);
    } catch (const DecodeError&) {
      ++garbage_rejected;
    }
  }
  std::printf("  bit flips: %d rejected, %d decoded to some vector; short garbage: %d/2000 rejected\n", rejected,
              decoded, garbage_rejected);
  EXPECT_EQ(rejected + decoded, trials);
  EXPECT_GT(rejected, trials / 2);  // the stream's checks catch most corruption
  EXPECT_EQ(garbage_rejected, 2000);  // 64 bytes cannot hold 1310 symbols
}

TEST(PredictiveCoding, BadSettingsAreInputErrors) {
  for (const char* yaml : {"{predictors: [last, nope]}", "{predictors: []}", "{predictors: [last, last]}",
                           "{predictors: last}", "{lambda: -0.1}", "{lambda: abc}", "{bits: [1, 4]}", "{bits: [13]}",
                           "{bits: []}", "{bits: [4, 4]}", "{lms_step: 2.5}"}) {
    EXPECT_THROW(options_from(yaml), InputError) << yaml;
  }
  try {
    options_from("{predictors: [last, nope]}");
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("predictors"), std::string::npos) << e.what();
  }
  const auto o = options_from("{predictors: [last, linear], bits: [4, 8], lambda: 0.5, lms_step: 0.2}");
  EXPECT_EQ(o.predictors, (std::vector<Predictor>{Predictor::kLast, Predictor::kLinear}));
  EXPECT_EQ(o.bits, (std::vector<int>{4, 8}));
  EXPECT_EQ(o.lambda, 0.5);
}

TEST(PredictiveCoding, RegisteredAsQuantizerStage) {
  const auto root = Config::parse_string("uplink: [{predictive_coding: {lambda: 0.2, bits: [3, 5]}}]\n");
  const PipelineSpec spec = PipelineSpec::parse(root, "uplink");
  EXPECT_EQ(spec.describe(), "predictive_coding");
  auto enc = spec.make(kDim, kLayers, 1), dec = spec.make(kDim, kLayers, 1);
  EXPECT_TRUE(enc->unbiased());
  Rng data(27), rng(28);
  const auto x = gaussian(kDim, data);
  Bytes payload;
  std::vector<float> recon(kDim), decoded(kDim);
  enc->encode(x, rng, payload, recon);
  dec->decode(payload, decoded);
  EXPECT_EQ(recon, decoded);
  EXPECT_THROW(PipelineSpec::parse(Config::parse_string("uplink: [{predictive_coding: {lambda: -1}}]\n"), "uplink"),
               InputError);
  EXPECT_THROW(PipelineSpec::parse(Config::parse_string("uplink: [{predictive_coding: {lamda: 1}}]\n"), "uplink"),
               InputError);
}

}  // namespace
}  // namespace fedsim
