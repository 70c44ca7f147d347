// ZipML low-precision local computation: the quantizer's paper guarantees
// (unbiased, variance <= step^2 / 4, values on the 2^b grid), double sampling
// (unbiased least-squares gradient) against plain sampling (biased by the
// quantization variance, by the predicted amount), low-precision local SGD
// against fp32, determinism, and the population's precision reaching the
// clients of a simulation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "clients/device_profile.h"
#include "clients/local_training.h"
#include "clients/quantized_compute.h"
#include "core/base/config.h"
#include "core/models/model.h"
#include "core/base/rng.h"
#include "core/data/synthetic.h"
#include "server/scenario.h"
#include "server/simulation.h"

namespace fedsim {
namespace {

std::unique_ptr<Model> make_model(const std::string& name, const std::string& yaml, ModelInput input) {
  Config settings = Config::parse_string(yaml, "test.yaml");
  auto model = ModelRegistry::instance().create("test.yaml: model", name, settings, input);
  settings.finish();
  return model;
}

arma::fvec normal_vector(std::size_t n, Rng& rng, double scale = 1.0) {
  arma::fvec v(n);
  for (float& x : v) x = static_cast<float>(scale * rng.normal());
  return v;
}

// Per-coordinate running mean and variance over draws (double precision).
struct Moments {
  explicit Moments(std::size_t n) : sum(n, arma::fill::zeros), sum_sq(n, arma::fill::zeros) {}
  void add(const arma::fvec& x) {
    const arma::vec d = arma::conv_to<arma::vec>::from(x);
    sum += d;
    sum_sq += d % d;
    ++count;
  }
  arma::vec mean() const { return sum / count; }
  arma::vec variance() const { return arma::clamp(sum_sq / count - arma::square(mean()), 0.0, arma::datum::inf); }
  arma::vec standard_error() const { return arma::sqrt(variance() / count); }
  arma::vec sum, sum_sq;
  double count = 0;
};

// Exact variance of stochastic rounding of each x[i] onto grid: (u - x)(x - l).
arma::vec rounding_variance(const arma::fvec& x, const UniformGrid& grid) {
  arma::vec v(x.n_elem);
  for (std::size_t i = 0; i < x.n_elem; ++i) {
    const double position = (static_cast<double>(x[i]) - grid.lo) / grid.step;
    const double below = std::floor(position);
    const double frac = position - below;
    v[i] = frac * (1.0 - frac) * static_cast<double>(grid.step) * grid.step;
  }
  return v;
}

TEST(StochasticQuantizer, UnbiasedAndVarianceWithinQuarterStepSquared) {
  Rng data_rng(1);
  const arma::fvec x = normal_vector(48, data_rng);
  constexpr int kDraws = 20000;
  for (const int bits : {2, 4, 8}) {
    const UniformGrid grid = uniform_grid({x.memptr(), x.n_elem}, bits);
    ASSERT_EQ(grid.points, 1u << bits);
    EXPECT_FLOAT_EQ(grid.lo, x.min());
    EXPECT_NEAR(grid.lo + grid.step * static_cast<float>(grid.points - 1), x.max(), 1e-5f);
    const arma::vec predicted_variance = rounding_variance(x, grid);
    Rng rng(100 + bits);
    Moments moments(x.n_elem);
    arma::fvec q(x.n_elem);
    for (int d = 0; d < kDraws; ++d) {
      stochastic_quantize({x.memptr(), x.n_elem}, bits, rng, {q.memptr(), q.n_elem});
      moments.add(q);
    }
    const arma::vec mean = moments.mean();
    const arma::vec variance = moments.variance();
    const double bound = 0.25 * static_cast<double>(grid.step) * grid.step;  // ZipML: (u-x)(x-l) <= step^2/4
    double max_variance_ratio = 0.0;
    for (std::size_t i = 0; i < x.n_elem; ++i) {
      const double se = std::sqrt(predicted_variance[i] / kDraws);
      EXPECT_LE(std::abs(mean[i] - x[i]), 5.0 * se + 1e-6 * std::abs(x[i])) << "bits " << bits << " i " << i;
      EXPECT_LE(variance[i], bound * (1.0 + 5.0 * std::sqrt(2.0 / kDraws))) << "bits " << bits << " i " << i;
      // The measured variance is the predicted (u-x)(x-l), not merely below the bound.
      EXPECT_NEAR(variance[i], predicted_variance[i], 5.0 * std::sqrt(2.0 / kDraws) * bound + 1e-12)
          << "bits " << bits << " i " << i;
      max_variance_ratio = std::max(max_variance_ratio, variance[i] / bound);
    }
    RecordProperty("max_variance_over_bound_int" + std::to_string(bits), std::to_string(max_variance_ratio));
  }
}

TEST(StochasticQuantizer, ValuesAreOnTheBitGrid) {
  Rng rng(2);
  arma::fvec x(1000);
  for (float& v : x) v = static_cast<float>(6.0 * rng.uniform() - 3.0);
  for (const int bits : {2, 4, 8}) {
    const UniformGrid grid = uniform_grid({x.memptr(), x.n_elem}, bits);
    arma::fvec q(x.n_elem);
    stochastic_quantize({x.memptr(), x.n_elem}, bits, rng, {q.memptr(), q.n_elem});
    const std::set<float> distinct(q.begin(), q.end());
    EXPECT_LE(distinct.size(), std::size_t{1} << bits) << "bits " << bits;
    if (bits <= 4) {
      EXPECT_EQ(distinct.size(), std::size_t{1} << bits) << "every code is used on 1000 uniform values";
    }
    for (std::size_t i = 0; i < x.n_elem; ++i) {
      const float code = (q[i] - grid.lo) / grid.step;
      EXPECT_NEAR(code, std::round(code), 1e-3f);
      EXPECT_GE(std::round(code), 0.0f);
      EXPECT_LE(std::round(code), static_cast<float>(grid.points - 1));
      // A neighbour of x: at most one step away.
      EXPECT_LE(std::abs(q[i] - x[i]), grid.step * 1.0001f);
    }
  }
  // A constant block is exact and draws nothing.
  const std::vector<float> constant(10, 0.75f);
  std::vector<float> out(10);
  Rng a(3), b(3);
  stochastic_quantize(constant, 2, a, out);
  EXPECT_EQ(out, constant);
  EXPECT_EQ(a(), b());
}

// A small least-squares problem: samples A (dim x n), targets t, params [w; b].
struct LeastSquaresProblem {
  Dataset data;
  arma::fvec params;
  std::vector<std::uint32_t> batch;
};

LeastSquaresProblem make_problem(std::size_t dim, std::size_t n, std::uint64_t seed, bool binary_labels) {
  Rng rng(seed);
  LeastSquaresProblem p;
  p.data.features.set_size(dim, n);
  for (float& x : p.data.features) x = static_cast<float>(rng.normal());
  if (binary_labels) {
    p.data.num_classes = 2;
    p.data.labels.resize(n);
    for (auto& y : p.data.labels) y = static_cast<std::uint32_t>(rng.below(2));
  } else {
    p.data.targets = normal_vector(n, rng);
  }
  p.params = normal_vector(dim + 1, rng);
  p.batch.resize(n);
  std::iota(p.batch.begin(), p.batch.end(), 0u);
  return p;
}

// ZipML double sampling: E[Q1(a)(Q2(a)^T w + b - t)] = a(a^T w + b - t) with independent
// Q1, Q2; with one Q the bias is diag(Var Q(a)) w per sample.
TEST(DoubleSampling, UnbiasedWhilePlainSamplingIsBiasedByTheVariance) {
  constexpr std::size_t kDim = 12, kSamples = 6;
  constexpr int kBits = 2, kDraws = 30000;
  const LeastSquaresProblem p = make_problem(kDim, kSamples, 4, false);
  const auto model = make_model("linear_regression", "{}", ModelInput{kDim, 0});
  arma::fvec exact;
  const double exact_loss = model->loss_and_gradient(p.params, p.data, p.batch, exact);

  // Predicted bias of plain sampling: (1/n) sum_j diag(Var Q(a_j)) w; none on b.
  arma::vec predicted_bias(kDim + 1, arma::fill::zeros);
  for (std::size_t j = 0; j < kSamples; ++j) {
    const arma::fvec a = p.data.features.col(j);
    predicted_bias.head(kDim) +=
        rounding_variance(a, uniform_grid({a.memptr(), kDim}, kBits)) % arma::conv_to<arma::vec>::from(p.params.head(kDim));
  }
  predicted_bias /= static_cast<double>(kSamples);

  Rng rng(5);
  Moments double_sampled(kDim + 1), single_sampled(kDim + 1);
  arma::fmat q1(kDim, kSamples), q2(kDim, kSamples);
  arma::fvec grad;
  double loss_sum = 0.0;
  for (int d = 0; d < kDraws; ++d) {
    for (std::size_t j = 0; j < kSamples; ++j) {
      stochastic_quantize({p.data.features.colptr(j), kDim}, kBits, rng, {q1.colptr(j), kDim});
      stochastic_quantize({p.data.features.colptr(j), kDim}, kBits, rng, {q2.colptr(j), kDim});
    }
    loss_sum += double_sampled_least_squares(p.params, q1, q2, {p.data.targets.memptr(), kSamples}, 0.0, grad);
    double_sampled.add(grad);
    double_sampled_least_squares(p.params, q1, q1, {p.data.targets.memptr(), kSamples}, 0.0, grad);
    single_sampled.add(grad);
  }
  const arma::vec exact_d = arma::conv_to<arma::vec>::from(exact);
  const arma::vec ds_error = double_sampled.mean() - exact_d;
  const arma::vec ss_error = single_sampled.mean() - exact_d;
  const arma::vec ds_se = double_sampled.standard_error();
  const arma::vec ss_se = single_sampled.standard_error();
  std::size_t biased_coordinates = 0;
  for (std::size_t i = 0; i <= kDim; ++i) {
    EXPECT_LE(std::abs(ds_error[i]), 5.0 * ds_se[i] + 1e-5) << "double sampling, coordinate " << i;
    EXPECT_LE(std::abs(ss_error[i] - predicted_bias[i]), 5.0 * ss_se[i] + 1e-5) << "plain sampling, coordinate " << i;
    biased_coordinates += std::abs(ss_error[i]) > 10.0 * ss_se[i];
  }
  // The bias is not a rounding artefact: most weight coordinates are off by
  // more than 10 standard errors, and the measured bias matches the prediction.
  EXPECT_GE(biased_coordinates, kDim / 2);
  EXPECT_LT(arma::norm(ss_error - predicted_bias), 0.1 * arma::norm(predicted_bias));
  EXPECT_GT(arma::norm(predicted_bias), 0.05 * arma::norm(exact_d));
  // The loss estimate 0.5 r1 r2 is unbiased too.
  EXPECT_NEAR(loss_sum / kDraws, exact_loss, 0.02 * exact_loss);
  RecordProperty("relative_bias_plain_sampling", std::to_string(arma::norm(ss_error) / arma::norm(exact_d)));
  RecordProperty("relative_bias_double_sampling", std::to_string(arma::norm(ds_error) / arma::norm(exact_d)));
}

// ZipML's motivating failure: with 2-bit samples, SGD on plain-sampled
// gradients converges to the minimiser of a variance-regularised objective,
// far from the least-squares solution; double sampling gets close to fp32.
TEST(DoubleSampling, Int2SgdReachesNearFp32LossWherePlainSamplingDoesNot) {
  SyntheticRegressionSpec spec;
  spec.train_samples = 4000;
  spec.test_samples = 1000;
  spec.dim = 50;
  const SyntheticRegression problem = make_synthetic_regression(spec, 11);
  const Dataset& train = problem.data.train;
  const auto model = make_model("linear_regression", "{}", ModelInput{spec.dim, 0});
  constexpr std::size_t kBatch = 32;
  double loss[3];  // fp32, double sampling, plain sampling
  for (int mode = 0; mode < 3; ++mode) {
    Rng rng(21);
    arma::fvec params(spec.dim + 1, arma::fill::zeros), grad;
    arma::fmat q1(spec.dim, kBatch), q2(spec.dim, kBatch);
    std::vector<std::uint32_t> batch(kBatch);
    std::vector<float> targets(kBatch);
    for (int step = 0; step < 2000; ++step) {
      for (auto& i : batch) i = static_cast<std::uint32_t>(rng.below(train.size()));
      if (mode == 0) {
        model->loss_and_gradient(params, train, batch, grad);
      } else {
        for (std::size_t j = 0; j < kBatch; ++j) {
          stochastic_quantize({train.features.colptr(batch[j]), spec.dim}, 2, rng, {q1.colptr(j), spec.dim});
          stochastic_quantize({train.features.colptr(batch[j]), spec.dim}, 2, rng, {q2.colptr(j), spec.dim});
          targets[j] = train.targets[batch[j]];
        }
        double_sampled_least_squares(params, q1, mode == 1 ? q2 : q1, targets, 0.0, grad);
      }
      params -= 0.01f * grad;
    }
    loss[mode] = model->evaluate(params, problem.data.test).loss;
  }
  RecordProperty("int2_samples_test_loss_fp32", std::to_string(loss[0]));
  RecordProperty("int2_samples_test_loss_double", std::to_string(loss[1]));
  RecordProperty("int2_samples_test_loss_plain", std::to_string(loss[2]));
  EXPECT_LT(loss[1], 1.6 * loss[0]);
  EXPECT_GT(loss[2], 3.0 * loss[1]);
}

// End to end (samples double-sampled, model and gradient rounded): unbiased
// for both linear least-squares models, including ls_svm's l2 term and label map.
TEST(QuantizedCompute, EndToEndGradientUnbiasedForLinearLeastSquaresModels) {
  constexpr std::size_t kDim = 10, kSamples = 5;
  constexpr int kDraws = 20000;
  struct Case {
    std::string name, yaml;
    bool binary;
  };
  for (const Case& c : {Case{"linear_regression", "{}", false}, Case{"ls_svm", "{l2: 0.3}", true}}) {
    const LeastSquaresProblem p = make_problem(kDim, kSamples, 6, c.binary);
    const auto model = make_model(c.name, c.yaml, ModelInput{kDim, c.binary ? 2u : 0u});
    arma::fvec exact;
    model->loss_and_gradient(p.params, p.data, p.batch, exact);
    QuantizedCompute compute(*model, Precision::kInt4);
    ASSERT_TRUE(compute.double_sampling());
    Rng rng(7);
    Moments moments(kDim + 1);
    arma::fvec grad;
    for (int d = 0; d < kDraws; ++d) {
      compute.loss_and_gradient(p.params, p.data, p.batch, rng, grad);
      moments.add(grad);
    }
    const arma::vec error = moments.mean() - arma::conv_to<arma::vec>::from(exact);
    const arma::vec se = moments.standard_error();
    for (std::size_t i = 0; i <= kDim; ++i)
      EXPECT_LE(std::abs(error[i]), 5.0 * se[i] + 1e-5) << c.name << " coordinate " << i;
  }
}

TEST(QuantizedCompute, Fp32IsTheModelItselfAndDrawsNothing) {
  const LeastSquaresProblem p = make_problem(8, 20, 8, false);
  const auto model = make_model("linear_regression", "{}", ModelInput{8, 0});
  arma::fvec expected, grad;
  const double expected_loss = model->loss_and_gradient(p.params, p.data, p.batch, expected);
  QuantizedCompute compute(*model, Precision::kFp32);
  Rng rng(9), untouched(9);
  EXPECT_EQ(compute.loss_and_gradient(p.params, p.data, p.batch, rng, grad), expected_loss);
  EXPECT_TRUE(arma::all(grad == expected));
  EXPECT_EQ(rng(), untouched());
  EXPECT_FALSE(QuantizedCompute(*make_model("softmax_regression", "{}", ModelInput{8, 3}), Precision::kInt8)
                   .double_sampling());
}

struct SgdRun {
  double test_loss = 0.0;
  double test_accuracy = 0.0;
  arma::fvec params;
};

SgdRun train(const Model& model, const DataSplit& data, Precision precision, std::size_t steps, double lr,
             std::uint64_t seed) {
  LocalTrainingSettings settings;
  settings.local_steps = steps;
  settings.batch_size = 32;
  settings.learning_rate = lr;
  settings.precision = precision;
  IndexView view(data.train.size());
  std::iota(view.begin(), view.end(), 0u);
  SgdRun run;
  Rng init_rng(seed);
  model.init(run.params, init_rng);
  Rng rng(seed);
  run_local_sgd(model, data.train, view, settings, run.params, rng);
  const Evaluation e = model.evaluate(run.params, data.test);
  run.test_loss = e.loss;
  run.test_accuracy = e.accuracy;
  return run;
}

// ZipML's synthetic regression (n = dim = 100 in the paper; smaller here).
TEST(LocalSgd, Int8LinearRegressionConvergesCloseToFp32) {
  SyntheticRegressionSpec spec;
  spec.train_samples = 4000;
  spec.test_samples = 1000;
  spec.dim = 50;
  spec.noise = 0.1;
  const SyntheticRegression problem = make_synthetic_regression(spec, 11);
  const auto model = make_model("linear_regression", "{}", ModelInput{spec.dim, 0});
  const double noise_floor = 0.5 * spec.noise * spec.noise;  // 0.5 * E[noise^2]
  double loss[kNumPrecisions];
  for (const Precision p : kAllPrecisions) {
    loss[static_cast<int>(p)] = train(*model, problem.data, p, 1500, 0.02, 12).test_loss;
    RecordProperty(std::string("test_loss_") + precision_name(p), std::to_string(loss[static_cast<int>(p)]));
  }
  const double fp32 = loss[0], int8 = loss[1], int4 = loss[2], int2 = loss[3];
  EXPECT_LT(fp32, 1.5 * noise_floor);
  EXPECT_LT(int8, fp32 * 1.05);
  // Unbiased but noisier: lower precision ends above fp32, and still far below
  // the zero model's loss (about 0.5 * Var(y) = 0.5).
  EXPECT_LT(int4, fp32 * 1.5);
  EXPECT_LT(int2, 0.1);
}

// The non-linear path (one quantization per sample, model and gradient rounded).
TEST(LocalSgd, Int8SoftmaxRegressionLearnsLikeFp32) {
  SyntheticClassificationSpec spec;
  spec.classes = 5;
  spec.dim = 20;
  spec.train_samples = 3000;
  spec.test_samples = 1000;
  const SyntheticClassification problem = make_synthetic_classification(spec, 13);
  const auto model = make_model("softmax_regression", "{}", ModelInput{spec.dim, 5});
  const SgdRun fp32 = train(*model, problem.data, Precision::kFp32, 600, 0.1, 14);
  const SgdRun int8 = train(*model, problem.data, Precision::kInt8, 600, 0.1, 14);
  const SgdRun int2 = train(*model, problem.data, Precision::kInt2, 600, 0.1, 14);
  RecordProperty("accuracy_fp32", std::to_string(fp32.test_accuracy));
  RecordProperty("accuracy_int8", std::to_string(int8.test_accuracy));
  RecordProperty("accuracy_int2", std::to_string(int2.test_accuracy));
  EXPECT_GT(fp32.test_accuracy, 0.7);
  EXPECT_NEAR(int8.test_accuracy, fp32.test_accuracy, 0.02);
  EXPECT_GT(int2.test_accuracy, 1.0 / spec.classes + 0.2);  // still learns, worse
}

TEST(LocalSgd, DeterministicAndMinibatchOrderIndependentOfPrecision) {
  SyntheticRegressionSpec spec;
  spec.train_samples = 500;
  spec.test_samples = 100;
  spec.dim = 16;
  const SyntheticRegression problem = make_synthetic_regression(spec, 15);
  const auto model = make_model("linear_regression", "{}", ModelInput{spec.dim, 0});
  const SgdRun a = train(*model, problem.data, Precision::kInt4, 100, 0.05, 16);
  const SgdRun b = train(*model, problem.data, Precision::kInt4, 100, 0.05, 16);
  const SgdRun c = train(*model, problem.data, Precision::kInt4, 100, 0.05, 17);
  EXPECT_TRUE(arma::all(a.params == b.params));
  EXPECT_FALSE(arma::all(a.params == c.params));

  // The training rng advances exactly as at fp32 (rounding has its own stream).
  LocalTrainingSettings settings;
  settings.local_steps = 50;
  settings.batch_size = 8;
  IndexView view(problem.data.train.size());
  std::iota(view.begin(), view.end(), 0u);
  std::uint64_t next[2];
  for (int i = 0; i < 2; ++i) {
    settings.precision = i == 0 ? Precision::kFp32 : Precision::kInt2;
    arma::fvec params(spec.dim + 1, arma::fill::zeros);
    Rng rng(18);
    run_local_sgd(*model, problem.data.train, view, settings, params, rng);
    next[i] = rng();
  }
  EXPECT_EQ(next[0], next[1]);
}

// The population's precision reaches the clients' arithmetic: int2 clients
// end elsewhere than fp32 ones (same seed, same everything else), and
// determinism across thread counts holds with quantized clients.
TEST(Simulation, PopulationPrecisionDrivesLocalArithmetic) {
  const std::string yaml =
      "data: {source: synthetic_regression, train_samples: 1000, test_samples: 200, dim: 10}\n"
      "model: {name: linear_regression}\n"
      "clients: 10\nclients_per_round: 5\nlocal_steps: 5\nbatch_size: 16\nlearning_rate: 0.05\n"
      "rounds: 10\noutput: {progress: false}\n"
      "population: [{name: a, fraction: 1.0, precision: PRECISION}]\n";
  auto run = [&](const std::string& precision, int threads) {
    std::string text = yaml;
    text.replace(text.find("PRECISION"), 9, precision);
    Scenario sc = parse_scenario(text, "p.yaml", {"threads=" + std::to_string(threads)});
    Simulation sim(sc);
    return sim.run().final_loss;
  };
  const double fp32 = run("fp32", 1);
  const double int2 = run("int2", 1);
  EXPECT_NE(fp32, int2);
  EXPECT_EQ(int2, run("int2", 2));
  RecordProperty("final_loss_fp32", std::to_string(fp32));
  RecordProperty("final_loss_int2", std::to_string(int2));
}

}  // namespace
}  // namespace fedsim
