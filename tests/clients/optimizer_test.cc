// Every optimizer against steps computed by hand (the expected numbers are
// the papers' update rules evaluated in double by hand / a calculator; the
// optimizers run in float32, hence the 1e-6 tolerances), and the exact zeros
// of AdaGrad's L1 forms.
#include <gtest/gtest.h>

#include <cmath>

#include "clients/local_training.h"
#include "clients/optimizer.h"
#include "core/base/errors.h"
#include "core/data/data_source.h"
#include "core/models/model.h"

namespace fedsim {
namespace {

std::unique_ptr<Optimizer> make(const std::string& yaml) { return make_optimizer(Config::parse_string(yaml, "o.yaml")); }

arma::fvec vec(std::initializer_list<float> v) { return arma::fvec(std::vector<float>(v)); }

TEST(Optimizer, SgdStep) {
  auto o = make("{name: sgd}");
  arma::fvec x = vec({1.0f, -2.0f});
  o->step(x, vec({0.5f, 0.25f}), 0.1);
  EXPECT_FLOAT_EQ(x[0], 0.95f);
  EXPECT_FLOAT_EQ(x[1], -2.025f);
}

TEST(Optimizer, MomentumIsHeavyBall) {
  // x2 = x1 - lr g2 + beta (x1 - x0): x1 = (-0.1, -0.2), x2 = (-0.24, -0.28).
  auto o = make("{name: momentum, beta: 0.9}");
  arma::fvec x = vec({0.0f, 0.0f});
  o->step(x, vec({1.0f, 2.0f}), 0.1);
  EXPECT_NEAR(x[0], -0.1, 1e-7);
  EXPECT_NEAR(x[1], -0.2, 1e-7);
  o->step(x, vec({0.5f, -1.0f}), 0.1);
  EXPECT_NEAR(x[0], -0.24, 1e-6);
  EXPECT_NEAR(x[1], -0.28, 1e-6);
}

TEST(Optimizer, AdaGradDiagonalStep) {
  // G = (4, 1), H = delta + sqrt(G) = (2.5, 1.5): x = (1 - 0.1*2/2.5, 1 + 0.1/1.5).
  auto o = make("{name: adagrad, delta: 0.5}");
  arma::fvec x = vec({1.0f, 1.0f});
  o->step(x, vec({2.0f, -1.0f}), 0.1);
  EXPECT_NEAR(x[0], 0.92, 1e-6);
  EXPECT_NEAR(x[1], 1.0 + 0.1 / 1.5, 1e-6);
  // Second step: G = (4 + 1, 1 + 0), H = (0.5 + sqrt 5, 1.5).
  o->step(x, vec({1.0f, 0.0f}), 0.1);
  EXPECT_NEAR(x[0], 0.92 - 0.1 / (0.5 + std::sqrt(5.0)), 1e-6);
  EXPECT_NEAR(x[1], 1.0 + 0.1 / 1.5, 1e-6);
}

TEST(Optimizer, AdaGradCompositeMirrorDescentShrinksToExactZeros) {
  // z = (0.92, 1.0667, 0.05); lambda lr / H = (0.04, 0.0667, 0.2): the third
  // coordinate (no gradient, H = delta) is inside its threshold: exactly 0.
  auto o = make("{name: adagrad, form: cmd, l1: 1, delta: 0.5}");
  arma::fvec x = vec({1.0f, 1.0f, 0.05f});
  o->step(x, vec({2.0f, -1.0f, 0.0f}), 0.1);
  EXPECT_NEAR(x[0], 0.88, 1e-6);
  EXPECT_NEAR(x[1], 1.0, 1e-6);
  EXPECT_EQ(x[2], 0.0f);
}

TEST(Optimizer, AdaGradRdaExactZerosWhereDualAverageInsideThreshold) {
  // Two gradients: gbar = (0.75, 0.3, -1.5), G = (1.25, 0.2, 5), H = 1 + sqrt(G);
  // x_i = -sign(gbar_i) (lr t / H_i) max(|gbar_i| - 0.5, 0).
  auto o = make("{name: adagrad, form: rda, l1: 0.5, delta: 1}");
  arma::fvec x = vec({3.0f, 3.0f, 3.0f});  // RDA's iterate does not depend on x
  o->step(x, vec({1.0f, 0.2f, -2.0f}), 0.1);
  o->step(x, vec({0.5f, 0.4f, -1.0f}), 0.1);
  EXPECT_NEAR(x[0], -0.02360679774997897, 1e-7);
  EXPECT_EQ(x[1], 0.0f);  // |gbar| = 0.3 <= 0.5
  EXPECT_NEAR(x[2], 0.061803398874989486, 1e-7);
  // Many coordinates at random: zero exactly where |gbar| <= lambda, never elsewhere.
  auto rda = make("{name: adagrad, form: rda, l1: 0.3}");
  arma::arma_rng::set_seed(7);
  arma::fvec y(1000, arma::fill::zeros);
  arma::vec sum(1000, arma::fill::zeros);
  for (int t = 0; t < 5; ++t) {
    arma::fvec g = arma::randn<arma::fvec>(1000) * 0.5f;
    sum += arma::conv_to<arma::vec>::from(g);
    rda->step(y, g, 0.1);
  }
  std::size_t zeros = 0;
  for (std::size_t i = 0; i < y.n_elem; ++i) {
    const bool inside = std::abs(sum[i] / 5.0) <= 0.3;
    EXPECT_EQ(y[i] == 0.0f, inside) << i;
    zeros += inside;
  }
  EXPECT_GT(zeros, 100u);
}

TEST(Optimizer, AdamWithBiasCorrection) {
  auto o = make("{name: adam, beta1: 0.9, beta2: 0.999, eps: 1e-8}");
  arma::fvec x = vec({1.0f, -1.0f});
  o->step(x, vec({0.5f, -2.0f}), 0.1);
  EXPECT_NEAR(x[0], 0.9, 1e-6);  // first step: lr sign(g)
  EXPECT_NEAR(x[1], -0.9, 1e-6);
  o->step(x, vec({-0.1f, -1.0f}), 0.1);
  EXPECT_NEAR(x[0], 0.8488973956993239, 1e-6);
  EXPECT_NEAR(x[1], -0.8067820372085104, 1e-6);
}

TEST(Optimizer, AmsgradKeepsTheLargestSecondMoment) {
  // beta2 0.5: v = 0.5 then 0.255; vhat stays 0.5, m = 0.1 both times.
  auto o = make("{name: amsgrad, beta1: 0.9, beta2: 0.5}");
  arma::fvec x = vec({0.0f});
  o->step(x, vec({1.0f}), 0.1);
  EXPECT_NEAR(x[0], -0.01414213542373095, 1e-7);
  o->step(x, vec({0.1f}), 0.1);
  EXPECT_NEAR(x[0], -0.0282842708474619, 1e-7);
}

TEST(Optimizer, YogiAdditiveSecondMoment) {
  // v: 0 -> 2 (v < g^2: grows by (1-b2) g^2) -> 1.5 -> 1.0 (v > g^2: shrinks).
  auto o = make("{name: yogi, beta1: 0.9, beta2: 0.5, eps: 1e-3}");
  arma::fvec x = vec({0.0f});
  const double expected[] = {-0.014132142689802294, -0.03697539551794717, -0.07214023068278233};
  const float grads[] = {2.0f, 1.0f, 1.0f};
  for (int t = 0; t < 3; ++t) {
    o->step(x, vec({grads[t]}), 0.1);
    EXPECT_NEAR(x[0], expected[t], 1e-6) << t;
  }
}

TEST(Optimizer, FreshHasNoState) {
  auto o = make("{name: momentum, beta: 0.5}");
  arma::fvec x = vec({0.0f});
  o->step(x, vec({1.0f}), 1.0);
  auto f = o->fresh();
  arma::fvec y = vec({0.0f});
  f->step(y, vec({1.0f}), 1.0);
  EXPECT_EQ(y[0], -1.0f);
}

TEST(Optimizer, BadSettingsAreInputErrors) {
  const auto fails = [](const std::string& yaml, const std::string& needle) {
    try {
      make(yaml);
      ADD_FAILURE() << yaml << " was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  fails("{name: momentum, beta: 1}", "beta");
  fails("{name: momentum, beta: -0.1}", "beta");
  fails("{name: adam, beta2: 1.5}", "beta2");
  fails("{name: adam, eps: 0}", "eps");
  fails("{name: adagrad, delta: 0}", "delta");
  fails("{name: adagrad, form: lasso}", "form");
  fails("{name: adagrad, l1: -1}", "l1");
  fails("{name: rmsprop}", "unknown name 'rmsprop'");
}

TEST(Optimizer, SgdThroughLocalTrainingIsBitIdenticalToTheDefault) {
  const Config data = Config::parse_string(
      "{source: synthetic_classification, train_samples: 200, test_samples: 10, dim: 8, classes: 3}");
  const DataSplit split = DataSourceRegistry::instance().create("d", "synthetic_classification", data)->load(1);
  const auto model = ModelRegistry::instance().create("m", "softmax_regression", Config(),
                                                      ModelInput{split.train.dim(), split.train.num_classes});
  IndexView view(200);
  for (std::uint32_t i = 0; i < 200; ++i) view[i] = i;
  LocalTrainingSettings settings;
  settings.local_steps = 7;
  settings.batch_size = 16;
  settings.learning_rate = 0.3;
  settings.weight_decay = 0.01;
  arma::fvec a(model->num_params(), arma::fill::zeros), b = a;
  Rng ra(5), rb(5);
  run_local_sgd(*model, split.train, view, settings, a, ra);
  auto sgd = make("{name: sgd}");
  run_local_sgd(*model, split.train, view, settings, b, rb, sgd.get());
  EXPECT_TRUE(arma::all(a == b));
  EXPECT_GT(arma::abs(a).max(), 0.0f);
}

}  // namespace
}  // namespace fedsim
