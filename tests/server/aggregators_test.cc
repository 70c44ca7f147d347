// Aggregation rules: FedVote's (reputation-weighted) vote, coordinate-wise
// median and trimmed mean, and the FedAvg mean.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/base/errors.h"
#include "core/compression/fedvote_quantizer.h"
#include "core/base/rng.h"
#include "server/aggregator.h"
#include "tests/server/aggregator_testing.h"

namespace fedsim {
namespace {

using test_util::make;
using test_util::Round;

constexpr double kK = 1.5;
constexpr double kClamp = 1.0 - 1e-4;

double soft_vote_to_h(double v) { return std::atanh(std::clamp(v, -kClamp, kClamp)) / kK; }

// Normalised weights w spread over [-0.95, 0.95], and the latent h = atanh(w)/k.
std::vector<double> weight_grid(std::size_t n) {
  std::vector<double> w(n);
  for (std::size_t i = 0; i < n; ++i)
    w[i] = -0.95 + 1.9 * static_cast<double>(i) / static_cast<double>(n - 1);
  return w;
}

std::vector<float> binary_votes(const std::vector<double>& w, Rng& rng) {
  std::vector<float> h(w.size()), votes(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) h[i] = static_cast<float>(std::atanh(w[i]) / kK);
  FedVoteBinary q(static_cast<float>(kK));
  Bytes out;
  q.encode(h, rng, out, votes);
  return votes;
}

TEST(VoteAggregator, NewLatentWeightIsAtanhOfSoftVoteOverK) {
  const std::size_t n = 400, clients = 31;
  const std::vector<double> w = weight_grid(n);
  Round round;
  for (std::uint32_t c = 0; c < clients; ++c) {
    Rng rng = Rng::derive(1, Stream::kUplink, {c});
    round.add(c, binary_votes(w, rng));
  }
  auto agg = make("vote");
  arma::fvec h(n, arma::fill::value(0.25f));
  agg->apply(round.span(), 1.0, h);

  double abs_err = 0.0, signed_err = 0.0;
  std::size_t strong = 0, strong_right = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double mean = 0.0;
    for (const auto& v : round.vectors) mean += v[i];
    mean /= clients;
    ASSERT_NEAR(h[i], soft_vote_to_h(mean), 1e-5 * (1.0 + std::fabs(h[i]))) << i;
    const double w_hat = std::tanh(kK * h[i]);
    abs_err += std::fabs(w_hat - w[i]);
    signed_err += w_hat - w[i];
    if (std::fabs(w[i]) >= 0.5) {
      ++strong;
      strong_right += (h[i] > 0) == (w[i] > 0);
    }
  }
  // Each soft vote is a mean of 31 votes with E = w, sd = sqrt(1 - w^2)/sqrt(31) <= 0.18.
  EXPECT_LT(abs_err / n, 0.16);
  EXPECT_LT(std::fabs(signed_err / n), 0.03);
  // P(majority of 31 wrong) < 0.003 for |w| >= 0.5: the majority recovers sign(w).
  EXPECT_EQ(strong_right, strong);
  std::printf("vote: mean |tanh(k h) - w| = %.4f, mean error %.4f, signs right %zu/%zu\n", abs_err / n,
              signed_err / n, strong_right, strong);
}

TEST(VoteAggregator, UnanimousVoteIsClampedToFiniteLatentWeight) {
  Round round;
  for (std::uint32_t c = 0; c < 5; ++c) round.add(c, {1.0f, -1.0f, 0.0f});
  arma::fvec h(3, arma::fill::zeros);
  make("vote")->apply(round.span(), 1.0, h);
  EXPECT_FLOAT_EQ(h[0], static_cast<float>(std::atanh(kClamp) / kK));
  EXPECT_FLOAT_EQ(h[1], static_cast<float>(-std::atanh(kClamp) / kK));
  EXPECT_EQ(h[2], 0.0f);  // ternary abstentions only
}

TEST(VoteAggregator, WeightsBySamplesAndServerLrInterpolates) {
  Round round;
  round.add(1, {1.0f}, 3);
  round.add(2, {-1.0f}, 1);
  arma::fvec h(1, arma::fill::zeros);
  make("vote")->apply(round.span(), 1.0, h);
  EXPECT_FLOAT_EQ(h[0], static_cast<float>(std::atanh(0.5) / kK));  // (3 - 1) / 4

  arma::fvec unweighted(1, arma::fill::value(0.7f));
  make("vote", "{}", AggregatorSettings{false})->apply(round.span(), 1.0, unweighted);
  EXPECT_FLOAT_EQ(unweighted[0], 0.0f);

  arma::fvec half(1, arma::fill::value(1.0f));
  make("vote", "{k: 3}")->apply(round.span(), 0.5, half);
  EXPECT_FLOAT_EQ(half[0], static_cast<float>(1.0 + 0.5 * (std::atanh(0.5) / 3.0 - 1.0)));
}

bool is_byzantine(std::uint32_t c) { return c % 4 == 1; }  // 8 of 31: ids 1, 5, ..., 29

TEST(VoteAggregator, ReputationOutvotesByzantineClientsAndZeroesTheirWeight) {
  const std::size_t n = 400, clients = 31, rounds = 4;
  const std::vector<double> w = weight_grid(n);
  auto plain = make("vote");
  auto robust = make("vote", "{reputation: true}");
  double plain_err = 0.0, robust_err = 0.0;
  std::size_t plain_right = 0, robust_right = 0, strong = 0;
  for (std::size_t r = 0; r < rounds; ++r) {
    Round round;
    for (std::uint32_t c = 0; c < clients; ++c) {
      Rng rng = Rng::derive(2, Stream::kUplink, {c, r});
      std::vector<float> votes = binary_votes(w, rng);
      if (is_byzantine(c))
        for (float& v : votes) v = -v;
      round.add(c, std::move(votes));
    }
    arma::fvec h_plain(n, arma::fill::zeros), h_robust(n, arma::fill::zeros);
    plain->apply(round.span(), 1.0, h_plain);
    robust->apply(round.span(), 1.0, h_robust);
    for (std::size_t i = 0; i < n; ++i) {
      plain_err += std::fabs(std::tanh(kK * h_plain[i]) - w[i]);
      robust_err += std::fabs(std::tanh(kK * h_robust[i]) - w[i]);
      if (std::fabs(w[i]) >= 0.3) {
        ++strong;
        plain_right += (h_plain[i] > 0) == (w[i] > 0);
        robust_right += (h_robust[i] > 0) == (w[i] > 0);
      }
    }
  }
  plain_err /= n * rounds;
  robust_err /= n * rounds;
  std::printf("8/31 Byzantine: mean |tanh(k h) - w| plain %.4f, reputation %.4f; signs right (|w| >= 0.3) "
              "plain %zu/%zu, reputation %zu/%zu\n",
              plain_err, robust_err, plain_right, strong, robust_right, strong);
  // The plain soft vote shrinks towards 15/31 w; with reputation only honest votes count.
  EXPECT_LT(robust_err, 0.6 * plain_err);
  EXPECT_GT(robust_right, plain_right);
  EXPECT_GE(robust_right, strong - strong / 100);

  // Probe: honest clients all vote +1, Byzantine ones -1. Any Byzantine
  // weight above 0 would pull the soft vote below the clamp.
  Round probe;
  for (std::uint32_t c = 0; c < clients; ++c) probe.add(c, std::vector<float>(n, is_byzantine(c) ? -1.0f : 1.0f));
  arma::fvec h_plain(n, arma::fill::zeros), h_robust(n, arma::fill::zeros);
  plain->apply(probe.span(), 1.0, h_plain);
  robust->apply(probe.span(), 1.0, h_robust);
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_FLOAT_EQ(h_robust[i], static_cast<float>(std::atanh(kClamp) / kK));
    ASSERT_FLOAT_EQ(h_plain[i], static_cast<float>(std::atanh(15.0 / 31.0) / kK));
  }
}

// Groups: A (8 clients, Byzantine in the past), B1 (12 honest), B2 (11 honest).
// In the probe round A votes (+1, -1) and B1 (-1, +1): the same agreement
// with the majority (+1, +1), so only their history tells them apart.
TEST(VoteAggregator, ReputationPersistsPerClientAcrossRounds) {
  auto group = [](std::uint32_t c) { return c < 8 ? 'A' : c < 20 ? '1' : '2'; };
  auto history = [&](Aggregator& agg) {
    for (int r = 0; r < 3; ++r) {
      Round round;
      for (std::uint32_t c = 0; c < 31; ++c) round.add(c, group(c) == 'A' ? std::vector<float>{-1, -1} : std::vector<float>{1, 1});
      arma::fvec h(2, arma::fill::zeros);
      agg.apply(round.span(), 1.0, h);
    }
  };
  auto probe = [&](Aggregator& agg) {
    Round round;
    for (std::uint32_t c = 0; c < 31; ++c) {
      const char g = group(c);
      round.add(c, g == 'A' ? std::vector<float>{1, -1} : g == '1' ? std::vector<float>{-1, 1} : std::vector<float>{1, 1});
    }
    arma::fvec h(2, arma::fill::zeros);
    agg.apply(round.span(), 1.0, h);
    return h;
  };
  auto with_history = make("vote", "{reputation: true}");
  history(*with_history);
  const arma::fvec h = probe(*with_history);
  // Credibility (beta 0.5): A 0.25, B1 0.75, B2 1; mean 0.71: A is out, and
  // the credibility-weighted vote is (11 - 12 * 0.75) / (11 + 9) = 0.1 on coordinate 0.
  EXPECT_NEAR(h[0], std::atanh(0.1) / kK, 1e-6);
  EXPECT_FLOAT_EQ(h[1], static_cast<float>(std::atanh(kClamp) / kK));

  // Without history (a fresh aggregator, or beta = 0: no memory) A and B1 are
  // indistinguishable, so both coordinates get the same value.
  auto fresh = make("vote", "{reputation: true}");
  const arma::fvec h_fresh = probe(*fresh);
  EXPECT_EQ(h_fresh[0], h_fresh[1]);
  auto memoryless = make("vote", "{reputation: true, beta: 0}");
  history(*memoryless);
  const arma::fvec h_memoryless = probe(*memoryless);
  EXPECT_EQ(h_memoryless[0], h_memoryless[1]);
}

TEST(RobustAggregators, MedianAndTrimmedMeanIgnoreHugeOutliersWhereMeanDoesNot) {
  const std::size_t n = 1000;
  Round round;
  Rng rng(4);
  // The robust rules' guarantee: with fewer outliers than they trim, every
  // coordinate lands inside the honest clients' range at that coordinate.
  std::vector<float> lo(n, INFINITY), hi(n, -INFINITY);
  for (std::uint32_t c = 0; c < 23; ++c) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) {
      v[i] = c < 3 ? 1e6f : static_cast<float>(1.0 + 0.1 * rng.normal());
      if (c >= 3) lo[i] = std::min(lo[i], v[i]), hi[i] = std::max(hi[i], v[i]);
    }
    round.add(c, std::move(v), 10);
  }
  for (const auto& [name, settings] : std::vector<std::pair<std::string, std::string>>{
           {"median", "{}"}, {"trimmed_mean", "{trim: 0.15}"}, {"trimmed_mean", "{trim: 0.4}"}}) {
    arma::fvec x(n, arma::fill::zeros);
    make(name, settings)->apply(round.span(), 1.0, x);
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_GE(x[i], lo[i]) << name << settings << " at " << i;
      ASSERT_LE(x[i], hi[i]) << name << settings << " at " << i;
      ASSERT_NEAR(x[i], 1.0, 0.2) << name << settings << " at " << i;
    }
  }
  arma::fvec x(n, arma::fill::zeros);
  make("mean")->apply(round.span(), 1.0, x);
  EXPECT_GT(std::fabs(x[0]), 1e4);
  // The default trim 0.1 drops floor(2.3) = 2 per side: not enough for 3 outliers.
  arma::fvec y(n, arma::fill::zeros);
  make("trimmed_mean")->apply(round.span(), 1.0, y);
  EXPECT_GT(std::fabs(y[0]), 1e4);
}

TEST(RobustAggregators, ExactStatisticsOnSmallInputs) {
  auto run = [](const std::string& name, const std::string& settings, const std::vector<float>& values,
                double lr = 1.0, float start = 0.0f) {
    Round round;
    for (std::size_t c = 0; c < values.size(); ++c) round.add(static_cast<std::uint32_t>(c), {values[c]});
    arma::fvec x(1, arma::fill::value(start));
    make(name, settings)->apply(round.span(), lr, x);
    return x[0];
  };
  EXPECT_EQ(run("median", "{}", {3, 1, 2}), 2.0f);
  EXPECT_EQ(run("median", "{}", {4, 1, 3, 2}), 2.5f);
  EXPECT_EQ(run("median", "{}", {7}), 7.0f);
  EXPECT_EQ(run("median", "{}", {4, 1, 3, 2}, 0.5, 1.0f), 2.25f);
  EXPECT_EQ(run("trimmed_mean", "{trim: 0.25}", {10, 1, 2, 3, -50, 4, 5, 6}), 3.5f);  // keeps 2, 3, 4, 5
  EXPECT_EQ(run("trimmed_mean", "{trim: 0.2}", {10, 1, 2, 3, -50, 4, 5, 6}), 3.5f);   // floor(1.6) = 1 per side
  EXPECT_FLOAT_EQ(run("trimmed_mean", "{trim: 0.1}", {10, 1, 2, 3, -50, 4, 5, 6}), -19.0f / 8.0f);  // drops none
  EXPECT_EQ(run("trimmed_mean", "{trim: 0}", {1, 2, 6}), 3.0f);
  EXPECT_EQ(run("trimmed_mean", "{trim: 0.49}", {9, 1, 5}), 5.0f);  // at most the median is left
  // Non-finite values are discarded per coordinate.
  const float nan = std::nanf(""), inf = INFINITY;
  EXPECT_EQ(run("median", "{}", {1, nan, inf, 3}), 2.0f);
  EXPECT_EQ(run("trimmed_mean", "{trim: 0.3}", {-inf, 1, nan, 2, 3}), 2.0f);
  EXPECT_EQ(run("median", "{}", {nan, nan}, 1.0, 5.0f), 5.0f);
}

TEST(RobustAggregators, ClientsWithZeroPolicyWeightAreLeftOut) {
  Round round;
  round.add(0, {1.0f});
  round.add(1, {2.0f});
  round.add(2, {100.0f}, 1, 0.0);
  for (const char* name : {"median", "trimmed_mean"}) {
    arma::fvec x(1, arma::fill::zeros);
    make(name)->apply(round.span(), 1.0, x);
    EXPECT_EQ(x[0], 1.5f) << name;
  }
}

TEST(RobustAggregators, MatchSortingReferenceAtHundredClientsByHundredThousandParams) {
  const std::size_t n = 100000, clients = 100;
  Round round;
  Rng rng(6);
  for (std::uint32_t c = 0; c < clients; ++c) {
    std::vector<float> v(n);
    for (auto& x : v) x = static_cast<float>(rng.normal());
    round.add(c, std::move(v));
  }
  auto updates = round.span();
  for (const auto& [name, settings] :
       std::vector<std::pair<std::string, std::string>>{{"median", "{}"}, {"trimmed_mean", "{trim: 0.1}"}}) {
    arma::fvec x(n, arma::fill::zeros);
    auto agg = make(name, settings);
    const auto t0 = std::chrono::steady_clock::now();
    agg->apply(updates, 1.0, x);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s: %zu clients x %zu params in %.1f ms\n", name.c_str(), clients, n, ms);
    for (std::size_t i = 0; i < n; i += 997) {
      std::vector<double> col;
      for (const auto& v : round.vectors) col.push_back(v[i]);
      std::sort(col.begin(), col.end());
      double expected = 0.0;
      if (name == "median") {
        expected = 0.5 * (col[49] + col[50]);
      } else {
        for (std::size_t j = 10; j < 90; ++j) expected += col[j];
        expected /= 80.0;
      }
      ASSERT_NEAR(x[i], expected, 1e-6) << name << " at " << i;
    }
  }
}

TEST(MeanAggregator, WeightsBySamples) {
  Round round;
  round.add(0, {1.0f, 0.0f}, 3);
  round.add(1, {4.0f, 8.0f}, 1);
  arma::fvec x(2, arma::fill::zeros);
  make("mean")->apply(round.span(), 1.0, x);
  EXPECT_FLOAT_EQ(x[0], 1.75f);
  EXPECT_FLOAT_EQ(x[1], 2.0f);
  arma::fvec y(2, arma::fill::zeros);
  make("mean", "{}", AggregatorSettings{false})->apply(round.span(), 1.0, y);
  EXPECT_FLOAT_EQ(y[0], 2.5f);
  EXPECT_FLOAT_EQ(y[1], 4.0f);
}

TEST(Aggregators, EveryRegisteredRuleLeavesModelUnchangedOnEmptyInput) {
  const arma::fvec before{0.5f, -1.25f, 3.0f};
  std::size_t checked = 0;
  for (const auto& [name, entry] : AggregatorRegistry::instance().entries()) {
    for (const char* settings : {"{}", "{reputation: true}"}) {
      if (std::string(settings) != "{}" && name != "vote") continue;
      Config cfg = Config::parse_string(std::string("a: ") + settings + "\n").child("a");
      auto agg = entry.factory(cfg, AggregatorSettings{});
      arma::fvec model = before;
      agg->apply({}, 1.0, model);
      EXPECT_EQ(std::memcmp(model.memptr(), before.memptr(), sizeof(float) * 3), 0) << name << " " << settings;
      ++checked;
    }
  }
  EXPECT_GE(checked, 5u);  // mean, median, trimmed_mean, vote (x2), and whatever else is registered
}

TEST(Aggregators, BadSettingsAreInputErrorsNamingFileLineAndKey) {
  const std::vector<std::tuple<std::string, std::string, std::string>> cases{
      {"vote", "{k: 0}", "k"},
      {"vote", "{k: -2}", "k"},
      {"vote", "{k: big}", "k"},
      {"vote", "{beta: 1.5}", "beta"},
      {"vote", "{reputation: maybe}", "reputation"},
      {"vote", "{kappa: 1}", "kappa"},
      {"trimmed_mean", "{trim: 0.5}", "trim"},
      {"trimmed_mean", "{trim: -0.1}", "trim"},
      {"trimmed_mean", "{trim: [0.1]}", "trim"},
      {"median", "{trim: 0.1}", "trim"},  // median has no settings: an unread key
  };
  for (const auto& [name, settings, key] : cases) {
    try {
      make(name, settings);
      ADD_FAILURE() << name << " accepted " << settings;
    } catch (const InputError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("agg.yaml:1"), std::string::npos) << msg;
      EXPECT_NE(msg.find(key), std::string::npos) << msg;
    }
  }
  EXPECT_NO_THROW(make("trimmed_mean", "{trim: 0.49}"));
  EXPECT_NO_THROW(make("vote", "{k: 2, reputation: true, beta: 0.9}"));
}

}  // namespace
}  // namespace fedsim
