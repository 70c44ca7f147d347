// FedVote: the latent tanh model and the binary / ternary vote quantizers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/compression/compressor.h"
#include "core/base/errors.h"
#include "core/compression/fedvote_quantizer.h"
#include "core/compression/pipeline.h"
#include "core/models/model.h"
#include "core/models/tanh_latent_model.h"

namespace fedsim {
namespace {

// Least squares y ~ a.x + b, loss 0.5 (a.x + b - y)^2, as a stand-in inner model.
class LeastSquares final : public Model {
 public:
  explicit LeastSquares(std::size_t dim) : dim_(dim) {}
  std::size_t num_params() const override { return dim_ + 1; }
  std::vector<Layer> layers() const override { return {{"weight", 0, dim_}, {"bias", dim_, 1}}; }
  void init(arma::fvec& params, Rng& rng) const override {
    params.set_size(num_params());
    for (auto& p : params) p = static_cast<float>(0.5 * rng.normal());
  }
  double loss_and_gradient(const arma::fvec& params, const Dataset& data, std::span<const std::uint32_t> batch,
                           arma::fvec& grad) const override {
    arma::vec g(num_params(), arma::fill::zeros);
    double loss = 0.0;
    for (std::uint32_t s : batch) {
      const double r = residual(params, data, s);
      loss += 0.5 * r * r;
      for (std::size_t j = 0; j < dim_; ++j) g[j] += r * data.features(j, s);
      g[dim_] += r;
    }
    grad = arma::conv_to<arma::fvec>::from(g / static_cast<double>(batch.size()));
    return loss / static_cast<double>(batch.size());
  }
  Evaluation evaluate(const arma::fvec& params, const Dataset& data) const override {
    double loss = 0.0;
    for (std::size_t s = 0; s < data.size(); ++s) loss += 0.5 * std::pow(residual(params, data, s), 2);
    return {loss / static_cast<double>(data.size()), 0.0};
  }
  double macs_per_sample() const override { return 2.0 * static_cast<double>(dim_ + 1); }

 private:
  double residual(const arma::fvec& params, const Dataset& data, std::size_t s) const {
    double y = params[dim_];
    for (std::size_t j = 0; j < dim_; ++j) y += static_cast<double>(params[j]) * data.features(j, s);
    return y - data.targets[s];
  }
  std::size_t dim_;
};

Dataset regression_data(std::size_t dim, std::size_t n, std::uint64_t seed) {
  Rng rng(seed);
  Dataset d;
  d.features.set_size(dim, n);
  d.targets.set_size(n);
  for (auto& x : d.features) x = static_cast<float>(rng.normal());
  for (auto& t : d.targets) t = static_cast<float>(rng.normal());
  return d;
}

TEST(TanhLatentModel, GradientMatchesFiniteDifferences) {
  const std::size_t dim = 6;
  const float k = 1.5f;
  TanhLatentModel model(std::make_unique<LeastSquares>(dim), k);
  const Dataset data = regression_data(dim, 40, 1);
  std::vector<std::uint32_t> batch;
  for (std::uint32_t i = 0; i < 40; i += 3) batch.push_back(i);
  Rng rng(2);
  arma::fvec h(model.num_params());
  for (auto& x : h) x = static_cast<float>(rng.uniform() * 2.0 - 1.0);
  arma::fvec grad;
  model.loss_and_gradient(h, data, batch, grad);
  ASSERT_EQ(grad.n_elem, model.num_params());
  const float eps = 1e-3f;
  for (std::size_t i = 0; i < h.n_elem; ++i) {
    arma::fvec plus = h, minus = h, unused;
    plus[i] += eps;
    minus[i] -= eps;
    const double fd = (model.loss_and_gradient(plus, data, batch, unused) -
                       model.loss_and_gradient(minus, data, batch, unused)) /
                      static_cast<double>(plus[i] - minus[i]);
    EXPECT_NEAR(grad[i], fd, 2e-3 + 1e-2 * std::fabs(fd)) << "coordinate " << i;
  }
}

TEST(TanhLatentModel, LossIsInnerLossAtScaledTanhWeights) {
  const std::size_t dim = 4;
  LeastSquares inner(dim);
  TanhLatentModel model(std::make_unique<LeastSquares>(dim), 2.0f);
  const Dataset data = regression_data(dim, 20, 3);
  std::vector<std::uint32_t> batch{0, 5, 7, 19};
  const arma::fvec h{-0.7f, 0.1f, 0.0f, 1.3f, -2.0f};
  const arma::fvec& c = model.scale();
  // One scale per layer, positive.
  for (const Layer& l : model.layers())
    for (std::size_t i = l.offset; i < l.offset + l.size; ++i) {
      EXPECT_GT(c[i], 0.0f);
      EXPECT_EQ(c[i], c[l.offset]);
    }
  const arma::fvec w = c % arma::tanh(2.0f * h);
  EXPECT_TRUE(arma::approx_equal(model.weights(h), w, "absdiff", 0.0f));
  arma::fvec g1, g2;
  EXPECT_DOUBLE_EQ(model.loss_and_gradient(h, data, batch, g1), inner.loss_and_gradient(w, data, batch, g2));
  EXPECT_DOUBLE_EQ(model.evaluate(h, data).loss, inner.evaluate(w, data).loss);
  const arma::fvec binary = c % arma::fvec{-1.0f, 1.0f, 1.0f, 1.0f, -1.0f};  // sign(0) = +1
  EXPECT_DOUBLE_EQ(model.evaluate_binarized(h, data).loss, inner.evaluate(binary, data).loss);
  EXPECT_EQ(model.num_params(), inner.num_params());
  EXPECT_EQ(model.layers().size(), 2u);
  EXPECT_GT(model.macs_per_sample(), inner.macs_per_sample());
  EXPECT_LT(model.macs_per_sample(), 2.0 * inner.macs_per_sample());
}

TEST(TanhLatentModel, ScaleIsSqrtThreeTimesInitialRmsPerLayer) {
  // An MLP has nonzero-initialised weight layers and zero-initialised biases:
  // weights get sqrt(3) rms, a bias the scale of the layer before it.
  Config cfg = Config::parse_string("{hidden: [16]}", "t.yaml");
  const ModelInput input{30, 4};
  auto inner = ModelRegistry::instance().create("", "mlp", cfg, input);
  TanhLatentModel model(ModelRegistry::instance().create("", "mlp", cfg, input), 1.5f);
  arma::fvec w;
  Rng probe(0x5ca1e);
  inner->init(w, probe);
  float previous = 1.0f;
  for (const Layer& l : model.layers()) {
    const arma::fvec part = w.subvec(l.offset, l.offset + l.size - 1);
    const double rms = std::sqrt(arma::accu(arma::square(arma::conv_to<arma::vec>::from(part))) / double(l.size));
    const float expected = rms > 0.0 ? static_cast<float>(std::sqrt(3.0) * rms) : previous;
    EXPECT_NEAR(model.scale()[l.offset], expected, 1e-6f * expected) << l.name;
    previous = expected;
  }
}

TEST(TanhLatentModel, InitMapsInnerWeightsThroughAtanh) {
  const std::size_t dim = 50;
  LeastSquares inner(dim);
  TanhLatentModel model(std::make_unique<LeastSquares>(dim), 1.5f);
  Rng r1(7), r2(7);
  arma::fvec w, h;
  inner.init(w, r1);
  model.init(h, r2);
  ASSERT_EQ(h.n_elem, w.n_elem);
  for (std::size_t i = 0; i < w.n_elem; ++i) {
    ASSERT_TRUE(std::isfinite(h[i]));
    const float c = model.scale()[i];
    const float clamped = std::clamp(w[i] / c, -TanhLatentModel::kClamp, TanhLatentModel::kClamp);
    EXPECT_NEAR(std::tanh(1.5f * h[i]), clamped, 1e-5f);
  }
}

// ---- quantizers ----

std::unique_ptr<Compressor> make_stage(const std::string& name, const std::string& settings = "{}") {
  const StageRegistry::Entry* f = StageRegistry::instance().find(name);
  EXPECT_NE(f, nullptr) << name;
  if (!f) return nullptr;
  EXPECT_EQ(f->meta, StageKind::kQuantizer);
  const std::string text = "s: " + settings + "\n";
  Config cfg = Config::parse_string(text).child("s");
  StageContext ctx;
  ctx.dim = 16;
  return f->factory(cfg, ctx);
}

// Each h in `grid`, repeated `copies` times; the mean vote per grid value over
// `rounds` encodes must be tanh(k h) within 5 standard deviations.
struct VoteStats {
  std::vector<double> mean, nonzero, wrong_sign;
  std::size_t draws = 0;
};

VoteStats vote_stats(Compressor& q, const std::vector<float>& grid, std::size_t copies, int rounds) {
  std::vector<float> h;
  for (float x : grid) h.insert(h.end(), copies, x);
  std::vector<float> votes(h.size());
  VoteStats s;
  s.mean.assign(grid.size(), 0.0);
  s.nonzero.assign(grid.size(), 0.0);
  s.wrong_sign.assign(grid.size(), 0.0);
  Rng rng(11);
  for (int r = 0; r < rounds; ++r) {
    Bytes out;
    q.encode(h, rng, out, votes);
    for (std::size_t i = 0; i < h.size(); ++i) {
      const std::size_t g = i / copies;
      s.mean[g] += votes[i];
      s.nonzero[g] += votes[i] != 0.0f;
      s.wrong_sign[g] += votes[i] * grid[g] < 0.0f;
    }
  }
  s.draws = copies * static_cast<std::size_t>(rounds);
  for (auto* v : {&s.mean, &s.nonzero, &s.wrong_sign})
    for (double& x : *v) x /= static_cast<double>(s.draws);
  return s;
}

const std::vector<float> kGrid{-2.0f, -1.0f, -0.5f, -0.2f, -0.05f, 0.0f, 0.05f, 0.2f, 0.5f, 1.0f, 2.0f};

TEST(FedVoteBinary, VoteUnbiasedForTanhKH) {
  for (const auto& [settings, k] : {std::pair<std::string, double>{"{}", 1.5}, {"{k: 3}", 3.0}}) {
    auto q = make_stage("fedvote_binary", settings);
    EXPECT_FALSE(q->unbiased());
    const VoteStats s = vote_stats(*q, kGrid, 20000, 10);
    for (std::size_t g = 0; g < kGrid.size(); ++g) {
      const double w = std::tanh(k * kGrid[g]);
      const double sigma = std::sqrt(std::max(1.0 - w * w, 1e-3) / static_cast<double>(s.draws));
      EXPECT_NEAR(s.mean[g], w, 5.0 * sigma) << "k = " << k << ", h = " << kGrid[g];
      EXPECT_EQ(s.nonzero[g], 1.0);  // binary: every vote is +-1
    }
  }
}

TEST(FedVoteTernary, VoteUnbiasedForTanhKHAndNonZeroWithProbabilityAbsW) {
  for (const auto& [settings, k] : {std::pair<std::string, double>{"{}", 1.5}, {"{k: 0.5}", 0.5}}) {
    auto q = make_stage("fedvote_ternary", settings);
    EXPECT_FALSE(q->unbiased());
    const VoteStats s = vote_stats(*q, kGrid, 20000, 10);
    for (std::size_t g = 0; g < kGrid.size(); ++g) {
      const double w = std::tanh(k * kGrid[g]);
      const double sigma = std::sqrt(std::max(std::fabs(w) * (1.0 - std::fabs(w)), 1e-4) / static_cast<double>(s.draws));
      EXPECT_NEAR(s.mean[g], w, 5.0 * sigma) << "k = " << k << ", h = " << kGrid[g];
      EXPECT_NEAR(s.nonzero[g], std::fabs(w), 5.0 * sigma) << "k = " << k << ", h = " << kGrid[g];
      EXPECT_EQ(s.wrong_sign[g], 0.0);  // a non-zero vote always has the sign of h
    }
  }
}

TEST(FedVoteBinary, ExactlyOneBitPerWeight) {
  auto q = make_stage("fedvote_binary");
  for (std::size_t n : {0u, 1u, 7u, 8u, 9u, 1000u, 1001u, 4096u}) {
    std::vector<float> h(n, 0.3f), votes(n);
    Bytes out{0xAB, 0xCD};  // encode appends after what is already there
    Rng rng(n);
    q->encode(h, rng, out, votes);
    EXPECT_EQ(out.size() - 2, (n + 7) / 8) << n;
    EXPECT_EQ(out[0], 0xAB);
    EXPECT_EQ(out[1], 0xCD);
  }
}

TEST(FedVoteTernary, SixteenTenthsBitPerWeight) {
  auto q = make_stage("fedvote_ternary");
  for (std::size_t n : {0u, 1u, 4u, 5u, 6u, 1000u, 1001u, 4096u}) {
    std::vector<float> h(n, -0.3f), votes(n);
    Bytes out;
    Rng rng(n);
    q->encode(h, rng, out, votes);
    EXPECT_EQ(out.size(), (n + 4) / 5) << n;
    EXPECT_LE(out.size() * 8, 2 * n + 7) << "more than 2 bits per weight";
  }
}

TEST(FedVote, DecodeReproducesReconstructedBitForBit) {
  for (const char* name : {"fedvote_binary", "fedvote_ternary"}) {
    auto enc = make_stage(name);
    auto dec = make_stage(name);
    Rng data_rng(5);
    for (std::size_t n : {1u, 3u, 5u, 8u, 13u, 257u, 10000u}) {
      std::vector<float> h(n), votes(n, 42.0f), decoded(n, -42.0f);
      for (auto& x : h) x = static_cast<float>(2.0 * data_rng.normal());
      h[0] = 0.0f;
      Bytes out;
      Rng rng(n);
      enc->encode(h, rng, out, votes);
      dec->decode(out, decoded);
      ASSERT_EQ(std::memcmp(votes.data(), decoded.data(), n * sizeof(float)), 0) << name << " n = " << n;
      for (float v : decoded) EXPECT_TRUE(v == 1.0f || v == -1.0f || (v == 0.0f && name[8] == 't')) << name;
    }
  }
}

TEST(FedVote, SameRngGivesSameVotes) {
  auto q = make_stage("fedvote_binary");
  std::vector<float> h(777, 0.1f), v1(777), v2(777);
  Bytes o1, o2;
  Rng r1(9), r2(9);
  q->encode(h, r1, o1, v1);
  q->encode(h, r2, o2, v2);
  EXPECT_EQ(o1, o2);
}

TEST(FedVoteBinary, DecoderRejectsMalformedPayloads) {
  auto q = make_stage("fedvote_binary");
  std::vector<float> out(13);
  EXPECT_NO_THROW(q->decode(Bytes{0xff, 0x1f}, out));
  EXPECT_THROW(q->decode(Bytes{0xff}, out), DecodeError);              // truncated
  EXPECT_THROW(q->decode(Bytes{}, out), DecodeError);                  // empty
  EXPECT_THROW(q->decode(Bytes{0xff, 0x1f, 0x00}, out), DecodeError);  // trailing byte
  EXPECT_THROW(q->decode(Bytes{0xff, 0x20}, out), DecodeError);        // padding bit set
  std::vector<float> none;
  EXPECT_NO_THROW(q->decode(Bytes{}, none));
  EXPECT_THROW(q->decode(Bytes{0x00}, none), DecodeError);
}

TEST(FedVoteTernary, DecoderRejectsMalformedPayloads) {
  auto q = make_stage("fedvote_ternary");
  std::vector<float> out(7);                                     // 5 + 2 votes
  EXPECT_NO_THROW(q->decode(Bytes{242, 8}, out));                // 242 = 22222_3, 8 = 22_3
  EXPECT_THROW(q->decode(Bytes{243, 0}, out), DecodeError);      // not a base-3 group of 5
  EXPECT_THROW(q->decode(Bytes{0, 9}, out), DecodeError);        // last byte holds only 2 votes
  EXPECT_THROW(q->decode(Bytes{0}, out), DecodeError);           // truncated
  EXPECT_THROW(q->decode(Bytes{0, 0, 0}, out), DecodeError);     // trailing byte
  q->decode(Bytes{1 + 2 * 3 + 0 * 9 + 1 * 27 + 2 * 81, 2 + 1 * 3}, out);
  const std::vector<float> expected{1, -1, 0, 1, -1, -1, 1};
  for (std::size_t i = 0; i < 7; ++i) EXPECT_EQ(out[i], expected[i]) << i;
}

TEST(FedVote, DecodersSurviveBitFlipsAndGarbage) {
  for (const char* name : {"fedvote_binary", "fedvote_ternary"}) {
    auto q = make_stage(name);
    const std::size_t n = 23;
    std::vector<float> h(n, 0.4f), votes(n), out(n);
    Bytes payload;
    Rng rng(1);
    q->encode(h, rng, payload, votes);
    std::size_t accepted = 0, rejected = 0;
    for (std::size_t bit = 0; bit < payload.size() * 8; ++bit) {
      Bytes flipped = payload;
      flipped[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
      try {
        q->decode(flipped, out);
        ++accepted;
        for (float v : out) ASSERT_TRUE(v == 1.0f || v == -1.0f || v == 0.0f);
      } catch (const DecodeError&) {
        ++rejected;
      }
    }
    EXPECT_GT(accepted, 0u) << name;
    EXPECT_GT(rejected, 0u) << name;  // flips into padding / out-of-range groups are caught
    Rng garbage(2);
    for (int trial = 0; trial < 2000; ++trial) {
      Bytes junk(garbage.below(8));
      for (auto& b : junk) b = static_cast<std::uint8_t>(garbage.below(256));
      std::vector<float> o(garbage.below(40));
      try {
        q->decode(junk, o);
        EXPECT_EQ(junk.size(), std::string(name) == "fedvote_binary" ? (o.size() + 7) / 8 : (o.size() + 4) / 5);
      } catch (const DecodeError&) {
      }
    }
  }
}

TEST(FedVote, PipelineReadsSettingsAndRejectsBadOnes) {
  Config ok = Config::parse_string("uplink: [{fedvote_binary: {k: 2.5}}]\n");
  PipelineSpec spec = PipelineSpec::parse(ok, "uplink");
  auto via_pipeline = spec.make(300, {Layer{"all", 0, 300}}, 0);
  FedVoteBinary direct(2.5f);
  std::vector<float> h(300), v1(300), v2(300);
  for (std::size_t i = 0; i < h.size(); ++i) h[i] = 0.01f * static_cast<float>(i) - 1.5f;
  Bytes o1, o2;
  Rng r1(3), r2(3);
  via_pipeline->encode(h, r1, o1, v1);
  direct.encode(h, r2, o2, v2);
  EXPECT_EQ(o1, o2);

  for (const char* bad : {"uplink: [{fedvote_binary: {k: -1}}]\n", "uplink: [{fedvote_ternary: {k: 0}}]\n",
                          "uplink: [{fedvote_binary: {k: many}}]\n", "uplink: [{fedvote_ternary: {levels: 3}}]\n"}) {
    Config cfg = Config::parse_string(bad, "bad.yaml");
    try {
      PipelineSpec::parse(cfg, "uplink");
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("bad.yaml:1"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace fedsim
