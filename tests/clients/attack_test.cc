// Byzantine clients' attacks (clients/attack.h), each on a hand-made update.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "clients/attack.h"
#include "clients/client.h"
#include "core/base/config.h"
#include "core/base/errors.h"
#include "core/compression/fedvote_quantizer.h"

namespace fedsim {
namespace {

// Builds an attack from its YAML settings and reports unread keys as the
// population parser does.
std::unique_ptr<Attack> make(const std::string& name, const std::string& settings = "{}") {
  Config cfg = Config::parse_string("attack: " + settings + "\n", "a.yaml").child("attack");
  auto attack = AttackRegistry::instance().create("a.yaml:1: attack.name", name, cfg);
  cfg.finish();
  return attack;
}

std::string error_of(const std::string& name, const std::string& settings) {
  try {
    make(name, settings);
  } catch (const InputError& e) {
    return e.what();
  }
  return "no error";
}

const arma::fvec kHonest{0.5f, -1.0f, 2.0f, 0.0f, -0.25f};

TEST(Attack, SignFlipNegatesAndScales) {
  Rng rng(1);
  arma::fvec v = kHonest;
  make("sign_flip")->corrupt(v, nullptr, rng);
  for (std::size_t i = 0; i < v.n_elem; ++i) EXPECT_EQ(v[i], -kHonest[i]);
  v = kHonest;
  make("sign_flip", "{scale: 3}")->corrupt(v, nullptr, rng);
  for (std::size_t i = 0; i < v.n_elem; ++i) EXPECT_EQ(v[i], -3.0f * kHonest[i]);
}

TEST(Attack, ScaledMultipliesByTheFactor) {
  Rng rng(1);
  arma::fvec v = kHonest;
  make("scaled")->corrupt(v, nullptr, rng);  // default factor 10
  for (std::size_t i = 0; i < v.n_elem; ++i) EXPECT_EQ(v[i], 10.0f * kHonest[i]);
  v = kHonest;
  make("scaled", "{factor: -0.5}")->corrupt(v, nullptr, rng);
  for (std::size_t i = 0; i < v.n_elem; ++i) EXPECT_EQ(v[i], -0.5f * kHonest[i]);
}

// The noise has mean 0 and the configured standard deviation (n = 200,000
// draws: the sample mean's standard error is std / 447, the sample std's
// about std / 632, so the 5-sigma bands below fail a wrong operator).
TEST(Attack, GaussianAddsNoiseOfTheGivenStd) {
  const std::size_t n = 200000;
  arma::fvec honest(n);
  for (std::size_t i = 0; i < n; ++i) honest[i] = static_cast<float>(i % 7) - 3.0f;
  for (bool replace : {false, true}) {
    Rng rng(7);
    arma::fvec v = honest;
    make("gaussian", std::string("{std: 2.5, replace: ") + (replace ? "true" : "false") + "}")->corrupt(v, nullptr, rng);
    const arma::vec noise = arma::conv_to<arma::vec>::from(replace ? v : arma::fvec(v - honest));
    EXPECT_NEAR(arma::mean(noise), 0.0, 5 * 2.5 / std::sqrt(double(n))) << replace;
    EXPECT_NEAR(arma::stddev(noise), 2.5, 5 * 2.5 / std::sqrt(2.0 * double(n))) << replace;
    // The same stream gives the same noise.
    Rng again(7);
    arma::fvec w = honest;
    make("gaussian", std::string("{std: 2.5, replace: ") + (replace ? "true" : "false") + "}")->corrupt(w, nullptr, again);
    EXPECT_TRUE(arma::all(v == w));
  }
}

// Under fedvote the message is h; votes are drawn from tanh(k h).
double fraction_of_plus_votes(const arma::fvec& h, std::uint64_t seed) {
  FedVoteBinary q(1.5f);
  Rng rng(seed);
  Bytes out;
  std::vector<float> votes(h.n_elem);
  q.encode({h.memptr(), h.n_elem}, rng, out, votes);
  double plus = 0;
  for (float x : votes) plus += x > 0;
  return plus / static_cast<double>(votes.size());
}

TEST(Attack, ConstantVoteVotesTheSameEverywhere) {
  Rng rng(1);
  for (int vote : {1, -1}) {
    arma::fvec h = kHonest;
    make("constant_vote", "{vote: " + std::to_string(vote) + "}")->corrupt(h, nullptr, rng);
    EXPECT_EQ(fraction_of_plus_votes(h, 3), vote > 0 ? 1.0 : 0.0);
  }
  EXPECT_EQ(make("constant_vote")->needs(UpdateContent::kWeights), "");
  EXPECT_NE(make("constant_vote")->needs(UpdateContent::kDifference), "");
  EXPECT_EQ(make("sign_flip")->needs(UpdateContent::kDifference), "");
}

// Sign flip of the latent weights inverts the vote distribution: with
// tanh(k h) = 0.6 an honest client votes +1 with probability 0.8, the
// attacker with 0.2 (100,000 coordinates: standard error 0.0013).
TEST(Attack, SignFlipUnderFedVoteInvertsTheVotes) {
  const float h0 = static_cast<float>(std::atanh(0.6) / 1.5);
  arma::fvec h(100000);
  h.fill(h0);
  EXPECT_NEAR(fraction_of_plus_votes(h, 5), 0.8, 0.007);
  Rng rng(1);
  make("sign_flip")->corrupt(h, nullptr, rng);
  EXPECT_NEAR(fraction_of_plus_votes(h, 5), 0.2, 0.007);
}

TEST(Attack, LabelFlipMapsLabelsAndSharesTheSamples) {
  const auto attack = make("label_flip");
  EXPECT_TRUE(attack->flips_labels());
  Rng rng(1);
  arma::fvec v = kHonest;
  attack->corrupt(v, nullptr, rng);  // it sends what it trained
  EXPECT_TRUE(arma::all(v == kHonest));

  Dataset d;
  d.num_classes = 10;
  d.features = arma::randu<arma::fmat>(3, 4);
  d.labels = {0, 3, 9, 5};
  const Dataset f = label_flipped(d);
  EXPECT_EQ(f.labels, (std::vector<std::uint32_t>{9, 6, 0, 4}));
  EXPECT_EQ(f.num_classes, 10u);
  EXPECT_EQ(f.features.memptr(), d.features.memptr());  // no copy of the samples
  EXPECT_EQ(f.size(), 4u);
  EXPECT_EQ(f.dim(), 3u);
}

TEST(Attack, InverseNormalCdfAndThePapersZ) {
  EXPECT_NEAR(inverse_normal_cdf(0.5), 0.0, 1e-12);
  EXPECT_NEAR(inverse_normal_cdf(0.975), 1.959963984540054, 1e-9);
  EXPECT_NEAR(inverse_normal_cdf(0.6), 0.2533471031357997, 1e-9);
  // n = 10, m = 2: s = floor(10/2 + 1) - 2 = 4, z = Phi^-1(6/10).
  EXPECT_NEAR(little_is_enough_z(10, 2), 0.2533471031357997, 1e-9);
  // n = 50, m = 24 (the paper's example): s = 2, z = Phi^-1(48/50) = 1.7507.
  EXPECT_NEAR(little_is_enough_z(50, 24), 1.750686071252170, 1e-9);
  // Colluders a majority: s clamped to 1, z = Phi^-1(9/10).
  EXPECT_NEAR(little_is_enough_z(10, 8), 1.2815515655446004, 1e-9);
  EXPECT_EQ(little_is_enough_z(1, 1), 0.0);
}

// Three colluders' honest messages, statistics by hand:
//   coordinate 0: 1, 2, 6 -> mean 3, sample variance (4 + 1 + 9) / 2 = 7
//   coordinate 1: -1, -1, -1 -> mean -1, std 0
TEST(Attack, LittleIsEnoughSendsMeanMinusZStd) {
  const arma::fvec a{1.0f, -1.0f}, b{2.0f, -1.0f}, c{6.0f, -1.0f};
  const ColluderStatistics s = ColluderStatistics::of({&a, &b, &c}, 10);
  EXPECT_EQ(s.colluders, 3u);
  EXPECT_EQ(s.batch, 10u);
  EXPECT_FLOAT_EQ(s.mean[0], 3.0f);
  EXPECT_FLOAT_EQ(s.mean[1], -1.0f);
  EXPECT_FLOAT_EQ(s.stddev[0], static_cast<float>(std::sqrt(7.0)));
  EXPECT_EQ(s.stddev[1], 0.0f);

  const auto attack = make("little_is_enough");
  EXPECT_TRUE(attack->colludes());
  Rng rng(1);
  arma::fvec v = a;
  attack->corrupt(v, &s, rng);
  const double z = little_is_enough_z(10, 3);  // s = 3, Phi^-1(0.7) = 0.5244
  EXPECT_NEAR(z, 0.5244005127080407, 1e-9);
  EXPECT_NEAR(v[0], 3.0 - z * std::sqrt(7.0), 1e-5);
  EXPECT_EQ(v[1], -1.0f);

  v = b;
  make("little_is_enough", "{z: 1.5}")->corrupt(v, &s, rng);
  EXPECT_NEAR(v[0], 3.0 - 1.5 * std::sqrt(7.0), 1e-5);

  // One colluder: no spread to hide in; it sends its own honest message.
  const ColluderStatistics one = ColluderStatistics::of({&c}, 10);
  v = a;
  attack->corrupt(v, &one, rng);
  EXPECT_TRUE(arma::all(v == c));
}

TEST(Attack, BadSettingsAreInputErrors) {
  EXPECT_NE(error_of("sign_flip", "{scale: 0}").find("scale"), std::string::npos);
  EXPECT_NE(error_of("sign_flip", "{scale: -1}").find("scale"), std::string::npos);
  EXPECT_NE(error_of("gaussian", "{std: 0}").find("std"), std::string::npos);
  EXPECT_NE(error_of("gaussian", "{std: .inf}").find("std"), std::string::npos);
  EXPECT_NE(error_of("constant_vote", "{vote: 0}").find("vote"), std::string::npos);
  EXPECT_NE(error_of("constant_vote", "{vote: 2}").find("vote"), std::string::npos);
  EXPECT_NE(error_of("little_is_enough", "{z: -1}").find("z"), std::string::npos);
  EXPECT_NE(error_of("sign_flip", "{scal: 2}").find("unknown key"), std::string::npos);
  EXPECT_NE(error_of("no_such_attack", "{}").find("unknown name 'no_such_attack'"), std::string::npos);
}

}  // namespace
}  // namespace fedsim
