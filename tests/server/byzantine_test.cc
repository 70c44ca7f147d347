// Byzantine clients and the defences against them: Krum / multi-Krum, norm
// clipping, attackers in the population, and the `attackers` metrics column.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/base/config.h"
#include "core/base/errors.h"
#include "core/base/rng.h"
#include "server/aggregator.h"
#include "tests/server/aggregator_testing.h"
#include "server/metrics.h"
#include "server/population.h"
#include "server/scenario.h"
#include "server/simulation.h"

namespace fedsim {
namespace {

using test_util::make;
using test_util::Round;

// Five 2-D updates (offset by (1, -1), which leaves distances alone):
//   a (0,0)  b (1,0)  c (0,2)  d (3,3)  e (10,10)
// squared distances: ab 1, ac 4, ad 18, ae 200, bc 5, bd 13, be 181,
// cd 10, ce 164, de 98. With f = 1 each score sums the n - f - 2 = 2 nearest:
//   a 1+4 = 5, b 1+5 = 6, c 4+5 = 9, d 10+13 = 23, e 98+164 = 262.
Round five_updates() {
  Round r;
  r.add(0, {1, -1});
  r.add(1, {2, -1});
  r.add(2, {1, 1});
  r.add(3, {4, 2});
  r.add(4, {11, 9});
  return r;
}

TEST(Krum, PicksTheHandComputedCandidate) {
  Round r = five_updates();
  arma::fvec x(2, arma::fill::zeros);
  make("krum", "{f: 1}")->apply(r.span(), 1.0, x);
  EXPECT_EQ(x[0], 1.0f);  // a
  EXPECT_EQ(x[1], -1.0f);
}

TEST(Krum, MultiKrumAveragesTheBestScores) {
  Round r = five_updates();
  arma::fvec x{10.0f, 10.0f};
  make("krum", "{f: 1, m: 3}")->apply(r.span(), 0.5, x);  // a, b, c: mean (4/3, -1/3)
  EXPECT_FLOAT_EQ(x[0], 10.0f + 0.5f * 4.0f / 3.0f);
  EXPECT_FLOAT_EQ(x[1], 10.0f - 0.5f / 3.0f);
  // m = n is the plain unweighted mean.
  Round all = five_updates();
  arma::fvec y(2, arma::fill::zeros);
  make("krum", "{f: 1, m: 5}")->apply(all.span(), 1.0, y);
  EXPECT_FLOAT_EQ(y[0], 19.0f / 5.0f);
  EXPECT_FLOAT_EQ(y[1], 10.0f / 5.0f);
}

// Blanchard et al., Proposition 1, in the setting it covers (n > 2f + 2):
// f Byzantine vectors, however large, in whatever direction, cannot make Krum
// choose one of theirs when the honest ones agree; the mean they drag away.
TEST(Krum, ByzantineVectorsAreNeverChosen) {
  const std::size_t d = 50, honest = 7, f = 2;
  Rng rng(3);
  arma::fvec mu(d);
  for (float& v : mu) v = static_cast<float>(rng.normal());
  for (double attack_scale : {-100.0, 1e6, 2.0}) {
    Round r;
    for (std::uint32_t c = 0; c < honest; ++c) {
      std::vector<float> v(d);
      for (std::size_t i = 0; i < d; ++i) v[i] = static_cast<float>(mu[i] + 0.1 * rng.normal());
      r.add(c, v);
    }
    for (std::uint32_t c = 0; c < f; ++c) {
      std::vector<float> v(d);
      for (std::size_t i = 0; i < d; ++i) v[i] = static_cast<float>(attack_scale * mu[i] + 0.01 * c);
      r.add(static_cast<std::uint32_t>(honest + c), v);
    }
    arma::fvec krum(d, arma::fill::zeros), mean(d, arma::fill::zeros);
    make("krum", "{f: 2}")->apply(r.span(), 1.0, krum);
    make("mean")->apply(r.span(), 1.0, mean);
    bool is_honest = false;
    for (std::uint32_t c = 0; c < honest; ++c)
      is_honest |= arma::all(krum == arma::fvec(r.vectors[c].data(), d, false, true));
    EXPECT_TRUE(is_honest) << attack_scale;
    EXPECT_LT(arma::norm(krum - mu), 0.1 * 3 * std::sqrt(double(d))) << attack_scale;
    if (attack_scale != 2.0) {
      EXPECT_GT(arma::norm(mean - mu), 10.0 * arma::norm(mu)) << attack_scale;
    }
  }
}

TEST(Krum, SkipsNonFiniteUpdatesAndSmallRounds) {
  Round r = five_updates();
  r.vectors[0][1] = NAN;  // a is out; among b..e with f = 1: 1 neighbour each:
  // b 5 (c), c 5 (b), d 10, e 98 -> b (lower id on the tie)
  arma::fvec x(2, arma::fill::zeros);
  make("krum", "{f: 1}")->apply(r.span(), 1.0, x);
  EXPECT_EQ(x[0], 2.0f);
  EXPECT_EQ(x[1], -1.0f);
  Round one;
  one.add(7, {3, 4});
  arma::fvec y(2, arma::fill::zeros);
  make("krum", "{f: 3}")->apply(one.span(), 1.0, y);
  EXPECT_EQ(y[0], 3.0f);
  Round none;
  arma::fvec z{1.0f, 2.0f};
  make("krum")->apply(none.span(), 1.0, z);
  EXPECT_EQ(z[0], 1.0f);
}

// (3,4) norm 5, (0,1) norm 1, (30,40) norm 50.
TEST(NormClipping, ClipsToTheBoundThenAverages) {
  Round r;
  r.add(0, {3, 4});
  r.add(1, {0, 1});
  r.add(2, {30, 40});
  arma::fvec x(2, arma::fill::zeros);
  AggregatorSettings unweighted;
  unweighted.weight_by_samples = false;
  make("norm_clipping", "{max_norm: 2}", unweighted)->apply(r.span(), 1.0, x);
  // (1.2, 1.6), (0, 1), (1.2, 1.6): mean (0.8, 1.4)
  EXPECT_NEAR(x[0], 0.8, 1e-6);
  EXPECT_NEAR(x[1], 1.4, 1e-6);
  // Adaptive: the median norm, 5: (3,4), (0,1), (3,4) -> (2, 3).
  arma::fvec y(2, arma::fill::zeros);
  make("norm_clipping", "{}", unweighted)->apply(r.span(), 1.0, y);
  EXPECT_NEAR(y[0], 2.0, 1e-6);
  EXPECT_NEAR(y[1], 3.0, 1e-6);
  // Sample weights 1, 1, 2 (the default weighting): ((3,4) + (0,1) + 2 (3,4)) / 4.
  Round w;
  w.add(0, {3, 4}, 1);
  w.add(1, {0, 1}, 1);
  w.add(2, {30, 40}, 2);
  arma::fvec z(2, arma::fill::zeros);
  make("norm_clipping")->apply(w.span(), 1.0, z);
  EXPECT_NEAR(z[0], 9.0 / 4.0, 1e-6);
  EXPECT_NEAR(z[1], 13.0 / 4.0, 1e-6);
}

// Whatever the clients send, the model moves by at most server_lr x C.
TEST(NormClipping, BoundsTheNormOfTheStep) {
  Rng rng(11);
  for (int trial = 0; trial < 20; ++trial) {
    Round r;
    for (std::uint32_t c = 0; c < 8; ++c) {
      std::vector<float> v(30);
      const double scale = std::pow(10.0, rng.uniform() * 8.0 - 2.0);
      for (float& e : v) e = static_cast<float>(scale * rng.normal());
      r.add(c, v, 1 + static_cast<std::uint32_t>(rng.below(100)));
    }
    r.add(99, std::vector<float>(30, NAN));  // left out, not poisoning
    arma::fvec x(30, arma::fill::zeros);
    make("norm_clipping", "{max_norm: 0.5}")->apply(r.span(), 0.7, x);
    EXPECT_TRUE(x.is_finite());
    EXPECT_LE(arma::norm(x), 0.7 * 0.5 * (1 + 1e-5));
  }
}

TEST(Defences, BadSettingsAreInputErrors) {
  const auto error_of = [](const std::string& name, const std::string& settings) -> std::string {
    try {
      make(name, settings);
    } catch (const InputError& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(error_of("krum", "{f: -1}").find("f"), std::string::npos);
  EXPECT_NE(error_of("krum", "{m: 0}").find("m"), std::string::npos);
  EXPECT_NE(error_of("norm_clipping", "{max_norm: -1}").find("max_norm"), std::string::npos);
  EXPECT_NE(error_of("norm_clipping", "{max_norm: .inf}").find("max_norm"), std::string::npos);
  EXPECT_NE(error_of("krum", "{k: 1}").find("unknown key"), std::string::npos);
}

// ---------------------------------------------------------------------------
// Attackers in the population and in a run

Population population(const std::string& yaml, std::size_t n, std::uint64_t seed = 1) {
  const Config root = Config::parse_string(yaml, "p.yaml");
  Population p(root, n, seed);
  root.finish();
  return p;
}

TEST(Attackers, AFractionOfAClassIsDrawnPerSeed) {
  const std::string yaml =
      "population:\n"
      "  - {name: honest, fraction: 0.5}\n"
      "  - {name: mixed, fraction: 0.5, attack: {name: sign_flip, fraction: 0.3, scale: 2}}\n";
  std::vector<std::uint32_t> first;
  for (std::uint64_t seed : {1, 2}) {
    const Population p = population(yaml, 20, seed);
    std::vector<std::uint32_t> attackers;
    for (std::uint32_t c = 0; c < 20; ++c)
      if (p.is_attacker(c)) attackers.push_back(c);
    ASSERT_EQ(attackers.size(), 3u);  // round(0.3 x 10)
    for (std::uint32_t c : attackers) EXPECT_GE(c, 10u);
    EXPECT_EQ(p.client_class(1).attackers, 3u);
    EXPECT_EQ(p.client_class(1).attack, "sign_flip");
    EXPECT_EQ(p.client_class(0).attackers, 0u);
    // Drawn from the seed: the same again.
    const Population again = population(yaml, 20, seed);
    for (std::uint32_t c = 0; c < 20; ++c) EXPECT_EQ(again.is_attacker(c), p.is_attacker(c));
    if (seed == 1) first = attackers;
    else EXPECT_NE(first, attackers);
  }
  const Population whole = population("population: [{name: all, fraction: 1, attack: {name: label_flip}}]", 7);
  for (std::uint32_t c = 0; c < 7; ++c) EXPECT_TRUE(whole.is_attacker(c));
  EXPECT_TRUE(whole.any_label_flipping());
}

std::string scenario_error(const std::string& yaml) {
  try {
    const Scenario sc = parse_scenario(yaml, "bad.yaml");
    Simulation sim(sc);
  } catch (const InputError& e) {
    return e.what();
  }
  return "no error";
}

const std::string kTiny =
    "data: {source: synthetic_classification, train_samples: 400, test_samples: 100, dim: 8, classes: 3}\n"
    "model: {name: softmax_regression}\n"
    "clients: 10\nlocal_steps: 2\nbatch_size: 8\nrounds: 5\noutput: {progress: false}\n";

TEST(Attackers, MisfitsAreInputErrorsNamingTheKey) {
  EXPECT_NE(scenario_error(kTiny + "clients_per_round: 4\n"
                                   "population: [{name: a, fraction: 1, attack: {name: constant_vote}}]\n")
                .find("bad.yaml:"),
            std::string::npos);
  const std::string vote = scenario_error(kTiny + "clients_per_round: 4\n"
                                                  "population: [{name: a, fraction: 1, attack: {name: constant_vote}}]\n");
  EXPECT_NE(vote.find("attack.name"), std::string::npos) << vote;
  EXPECT_NE(vote.find("fedvote"), std::string::npos) << vote;
  const std::string regression = scenario_error(
      "data: {source: synthetic_regression, train_samples: 200, test_samples: 50, dim: 4}\n"
      "model: {name: linear_regression}\nclients: 4\nclients_per_round: 2\nrounds: 1\noutput: {progress: false}\n"
      "population: [{name: a, fraction: 1, attack: {name: label_flip, fraction: 0.5}}]\n");
  EXPECT_NE(regression.find("classification"), std::string::npos) << regression;
  EXPECT_NE(scenario_error(kTiny + "clients_per_round: 4\n"
                                   "population: [{name: a, fraction: 1, attack: {name: sign_flip, fraction: 2}}]\n")
                .find("fraction"),
            std::string::npos);
  EXPECT_NE(scenario_error(kTiny + "clients_per_round: 4\n"
                                   "population: [{name: a, fraction: 1, attack: {name: sign_flip, typo: 1}}]\n")
                .find("unknown key"),
            std::string::npos);
  EXPECT_NE(scenario_error(kTiny + "clients_per_round: 4\npopulation: [{name: a, fraction: 1, attack: sign_flip}]\n")
                .find("attack"),
            std::string::npos);
}

// The column counts the attackers' updates handed to the aggregator: with
// every client sampled, exactly the class's attackers each round; with 4 of
// 10 sampled, what the trace of arrivals says.
TEST(Attackers, CountsColumnMatchesTheRun) {
  {
    const Scenario sc = parse_scenario(
        kTiny + "clients_per_round: 10\n"
                "population: [{name: a, fraction: 1, attack: {name: sign_flip, fraction: 0.3}}]\n",
        "all.yaml");
    Simulation sim(sc);
    const RunSummary s = sim.run();
    ASSERT_EQ(s.rounds.size(), 5u);
    for (const RoundMetrics& m : s.rounds) {
      EXPECT_EQ(m.attackers, 3u);
      EXPECT_EQ(m.clients, 10u);
    }
  }
  const Scenario sc = parse_scenario(
      kTiny + "clients_per_round: 4\nrounds: 12\n"
              "population: [{name: a, fraction: 0.5, attack: {name: gaussian, std: 0.1}},"
              " {name: b, fraction: 0.5, dropout_probability: 0.2}]\n",
      "some.yaml");
  Simulation sim(sc);
  const RunSummary s = sim.run();
  std::map<std::uint32_t, std::uint64_t> expected;
  for (const ArrivalRecord& r : sim.trace())
    if (r.aggregated && sim.population().is_attacker(r.client)) ++expected[r.round];
  std::uint64_t total = 0;
  for (const RoundMetrics& m : s.rounds) {
    EXPECT_EQ(m.attackers, expected[static_cast<std::uint32_t>(m.round)]) << m.round;
    total += m.attackers;
  }
  EXPECT_GT(total, 0u);
  EXPECT_LT(total, 12u * 4u);
  // And it is written as the last column.
  const auto cols = MetricsWriter::columns({"a", "b"});
  EXPECT_EQ(cols.back(), "attackers");
}

// Colluders share statistics between two pool passes: still the same
// numbers whatever the thread count, under a synchronous and the async policy.
TEST(Attackers, CollusionIsDeterministicAcrossThreads) {
  for (const std::string policy : {"", "server: {policy: async, buffer_size: 3, concurrency: 6}\n"}) {
    std::vector<std::vector<float>> params;
    std::vector<std::uint64_t> attackers;
    for (int threads : {1, 2, 3}) {
      const Scenario sc = parse_scenario(
          kTiny + policy + "clients_per_round: 6\n"
                           "population: [{name: a, fraction: 1, attack: {name: little_is_enough, fraction: 0.5}}]\n",
          "lie.yaml", {"threads=" + std::to_string(threads)});
      Simulation sim(sc);
      const RunSummary s = sim.run();
      params.emplace_back(sim.model_params().begin(), sim.model_params().end());
      std::uint64_t total = 0;
      for (const RoundMetrics& m : s.rounds) total += m.attackers;
      attackers.push_back(total);
    }
    EXPECT_EQ(params[1], params[0]) << policy;
    EXPECT_EQ(params[2], params[0]) << policy;
    EXPECT_EQ(attackers[1], attackers[0]) << policy;
    EXPECT_GT(attackers[0], 0u) << policy;
  }
}

// Declaring an attack that nobody carries out (fraction 0) moves no number.
TEST(Attackers, NoAttackerNoChange) {
  const auto params = [](const std::string& population) {
    const Scenario sc = parse_scenario(kTiny + "clients_per_round: 4\n" + population, "zero.yaml");
    Simulation sim(sc);
    sim.run();
    return std::vector<float>(sim.model_params().begin(), sim.model_params().end());
  };
  EXPECT_EQ(params("population: [{name: a, fraction: 1}]\n"),
            params("population: [{name: a, fraction: 1, attack: {name: little_is_enough, fraction: 0}}]\n"));
  EXPECT_NE(params("population: [{name: a, fraction: 1}]\n"),
            params("population: [{name: a, fraction: 1, attack: {name: sign_flip, fraction: 0.5}}]\n"));
}

// Sign-flipping a third of 12 clients, scaled by 4: the mean is dragged
// backwards, the median and Krum are not.
TEST(Attackers, SignFlipHurtsTheMeanNotTheRobustRules) {
  const std::string base =
      "data: {source: synthetic_classification, train_samples: 2400, test_samples: 600, dim: 10, classes: 4, "
      "separation: 2.0}\n"
      "model: {name: softmax_regression}\n"
      "clients: 12\nclients_per_round: 12\nlocal_steps: 5\nbatch_size: 16\nlearning_rate: 0.05\nrounds: 15\n"
      "output: {progress: false}\n";
  const std::string attack = "population: [{name: a, fraction: 1, attack: {name: sign_flip, fraction: 0.34, scale: 4}}]\n";
  const auto accuracy = [&](const std::string& yaml) {
    const Scenario sc = parse_scenario(yaml, "flip.yaml");
    Simulation sim(sc);
    return sim.run().final_accuracy;
  };
  const double clean = accuracy(base);
  const double mean = accuracy(base + attack);
  const double median = accuracy(base + attack + "aggregator: {name: median}\n");
  const double krum = accuracy(base + attack + "aggregator: {name: krum, f: 4}\n");
  EXPECT_GT(clean, 0.6);
  EXPECT_LT(mean, clean - 0.2);
  EXPECT_GT(median, clean - 0.05);
  EXPECT_GT(krum, clean - 0.08);
}

}  // namespace
}  // namespace fedsim
