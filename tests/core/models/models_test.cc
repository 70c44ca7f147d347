// The four models: gradients against finite differences, losses against an
// independent double-precision reference, training progress, chunking,
// layouts, registration and settings validation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "core/base/config.h"
#include "core/base/errors.h"
#include "core/models/linear_regression.h"
#include "core/models/ls_svm.h"
#include "core/models/mlp.h"
#include "core/models/model.h"
#include "core/base/rng.h"
#include "core/models/softmax_regression.h"

namespace fedsim {
namespace {

struct Spec {
  std::string label;  // test name suffix
  std::string name;   // registry name
  std::string yaml;   // settings
  ModelInput input;
};

std::ostream& operator<<(std::ostream& os, const Spec& s) { return os << s.label; }

std::unique_ptr<Model> make_model(const Spec& spec) {
  Config settings = Config::parse_string(spec.yaml, "test.yaml");
  auto model = ModelRegistry::instance().create("test.yaml: model", spec.name, settings, spec.input);
  settings.finish();
  return model;
}

// Gaussian features; labels from a random linear teacher (learnable, not
// separable because of the label noise); regression targets a noisy linear function.
Dataset make_data(const ModelInput& input, std::size_t n, std::uint64_t seed) {
  Rng rng(seed);
  Dataset d;
  d.name = "synthetic";
  d.num_classes = input.num_classes;
  d.features.set_size(input.dim, n);
  for (float& x : d.features) x = static_cast<float>(rng.normal());
  const std::size_t outputs = std::max<std::size_t>(1, input.num_classes);
  arma::fmat teacher(outputs, input.dim);
  for (float& x : teacher) x = static_cast<float>(rng.normal());
  arma::fmat scores = teacher * d.features;
  if (input.num_classes == 0) {
    d.targets = scores.row(0).t() + 0.5f;
    for (float& y : d.targets) y += static_cast<float>(0.1 * rng.normal());
  } else {
    d.labels.resize(n);
    for (std::size_t j = 0; j < n; ++j) {
      for (std::size_t c = 0; c < outputs; ++c) scores(c, j) += static_cast<float>(0.5 * rng.normal());
      d.labels[j] = static_cast<std::uint32_t>(scores.col(j).index_max());
      if (input.num_classes == 2) d.labels[j] = scores(0, j) > 0.0f ? 1 : 0;
    }
  }
  return d;
}

std::vector<std::uint32_t> all_indices(const Dataset& d) {
  std::vector<std::uint32_t> v(d.size());
  std::iota(v.begin(), v.end(), 0u);
  return v;
}

// A parameter point away from the (often zero) initial model.
arma::fvec random_params(const Model& model, std::uint64_t seed, double scale = 0.5) {
  Rng rng(seed);
  arma::fvec p;
  model.init(p, rng);
  for (float& x : p) x += static_cast<float>(scale * rng.normal());
  return p;
}

// Independent reference in double precision, written from the loss formulas
// in the headers: per-sample scores (logits, or the single linear score).
std::vector<double> reference_scores(const Spec& spec, const arma::fvec& p, const float* x) {
  const std::size_t dim = spec.input.dim;
  std::vector<double> a(x, x + dim);
  if (spec.name == "linear_regression" || spec.name == "ls_svm") {
    double s = p[dim];
    for (std::size_t i = 0; i < dim; ++i) s += static_cast<double>(p[i]) * a[i];
    return {s};
  }
  std::vector<std::size_t> widths{dim};
  if (spec.name == "mlp") {
    Config settings = Config::parse_string(spec.yaml, "test.yaml");
    for (auto h : settings.get_int_list("hidden", 1, 100000)) widths.push_back(static_cast<std::size_t>(h));
  }
  widths.push_back(spec.input.num_classes);
  std::size_t offset = 0;
  for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
    const std::size_t in = widths[l], out = widths[l + 1];
    std::vector<double> z(out);
    for (std::size_t o = 0; o < out; ++o) {
      double s = p[offset + in * out + o];  // bias after the row-major weights
      for (std::size_t i = 0; i < in; ++i) s += static_cast<double>(p[offset + o * in + i]) * a[i];
      z[o] = (l + 2 < widths.size()) ? std::max(s, 0.0) : s;
    }
    offset += in * out + out;
    a = z;
  }
  return a;
}

struct Reference {
  double loss = 0;
  double accuracy = 0;
};

Reference reference(const Spec& spec, const arma::fvec& p, const Dataset& d, std::span<const std::uint32_t> batch) {
  Reference r;
  for (std::uint32_t j : batch) {
    const std::vector<double> s = reference_scores(spec, p, d.features.colptr(j));
    if (spec.name == "linear_regression") {
      r.loss += 0.5 * (s[0] - d.targets[j]) * (s[0] - d.targets[j]);
    } else if (spec.name == "ls_svm") {
      const double y = d.labels[j] == 1 ? 1.0 : -1.0;
      r.loss += 0.5 * (s[0] - y) * (s[0] - y);
      r.accuracy += (s[0] >= 0) == (y > 0);
    } else {
      const double max = *std::max_element(s.begin(), s.end());
      double sum = 0;
      for (double v : s) sum += std::exp(v - max);
      r.loss += std::log(sum) + max - s[d.labels[j]];
      r.accuracy += static_cast<std::size_t>(std::max_element(s.begin(), s.end()) - s.begin()) == d.labels[j];
    }
  }
  r.loss /= static_cast<double>(batch.size());
  r.accuracy /= static_cast<double>(batch.size());
  if (spec.name == "ls_svm") {
    Config settings = Config::parse_string(spec.yaml, "test.yaml");
    const double l2 = settings.get_double("l2", 0.0, 0.0, 1e6);
    for (std::size_t i = 0; i < spec.input.dim; ++i) r.loss += 0.5 * l2 * p[i] * p[i];
  }
  return r;
}

class ModelTest : public ::testing::TestWithParam<Spec> {};

TEST_P(ModelTest, GradientMatchesCentralDifferences) {
  const Spec& spec = GetParam();
  auto model = make_model(spec);
  const Dataset data = make_data(spec.input, 60, 11);
  // A batch with a repeated sample and samples left out.
  std::vector<std::uint32_t> batch;
  for (std::uint32_t j = 0; j < 40; ++j) batch.push_back((j * 7) % 60);
  batch.push_back(3);
  const arma::fvec p = random_params(*model, 12);
  arma::fvec grad;
  model->loss_and_gradient(p, data, batch, grad);
  ASSERT_EQ(grad.n_elem, model->num_params());
  const double grad_scale = arma::abs(grad).max();
  ASSERT_GT(grad_scale, 1e-3);

  // 50 random coordinates plus the last one (a bias).
  Rng rng(13);
  std::vector<std::size_t> coords;
  for (int k = 0; k < 50; ++k) coords.push_back(rng.below(model->num_params()));
  coords.push_back(model->num_params() - 1);
  const float eps = 1e-3f;
  double worst = 0;
  arma::fvec q = p, scratch;
  for (std::size_t i : coords) {
    q[i] = p[i] + eps;
    const float up = q[i];
    const double loss_up = model->loss_and_gradient(q, data, batch, scratch);
    q[i] = p[i] - eps;
    const float down = q[i];
    const double loss_down = model->loss_and_gradient(q, data, batch, scratch);
    q[i] = p[i];
    const double numeric = (loss_up - loss_down) / (static_cast<double>(up) - static_cast<double>(down));
    // Relative to the coordinate and, for tiny coordinates, to the gradient's scale.
    const double error = std::abs(numeric - grad[i]) / (std::abs(numeric) + 0.05 * grad_scale);
    worst = std::max(worst, error);
    EXPECT_LT(error, 1e-2) << "coordinate " << i << ": analytic " << grad[i] << ", numeric " << numeric;
  }
  RecordProperty("worst_relative_error", std::to_string(worst));
}

TEST_P(ModelTest, LossMatchesDoublePrecisionReference) {
  const Spec& spec = GetParam();
  auto model = make_model(spec);
  const Dataset data = make_data(spec.input, 300, 21);
  const arma::fvec p = random_params(*model, 22);
  std::vector<std::uint32_t> batch;
  for (std::uint32_t j = 0; j < 100; ++j) batch.push_back((j * 37) % 300);
  arma::fvec grad;
  const double loss = model->loss_and_gradient(p, data, batch, grad);
  const Reference ref = reference(spec, p, data, batch);
  EXPECT_NEAR(loss, ref.loss, 1e-5 * (1 + ref.loss));
  const Evaluation eval = model->evaluate(p, data);
  const std::vector<std::uint32_t> all = all_indices(data);
  const Reference ref_all = reference(spec, p, data, all);
  EXPECT_NEAR(eval.loss, ref_all.loss, 1e-5 * (1 + ref_all.loss));
  EXPECT_DOUBLE_EQ(eval.accuracy, ref_all.accuracy);
}

// 2500 samples: several chunks of model_kernels::kChunk, the last one partial.
TEST_P(ModelTest, EvaluateMatchesFullBatchLoss) {
  const Spec& spec = GetParam();
  auto model = make_model(spec);
  const Dataset data = make_data(spec.input, 2500, 31);
  const arma::fvec p = random_params(*model, 32);
  arma::fvec grad;
  const std::vector<std::uint32_t> all = all_indices(data);
  const double loss = model->loss_and_gradient(p, data, all, grad);
  const Evaluation eval = model->evaluate(p, data);
  EXPECT_NEAR(eval.loss, loss, 1e-6 * loss);
  const Reference ref = reference(spec, p, data, all);
  EXPECT_NEAR(eval.loss, ref.loss, 1e-5 * (1 + ref.loss));
  EXPECT_DOUBLE_EQ(eval.accuracy, ref.accuracy);
  if (spec.input.num_classes == 0) {
    EXPECT_EQ(eval.accuracy, 0.0);
  }
}

// The gradient of a batch spanning several chunks is the size-weighted mean of
// the gradients of its parts.
TEST_P(ModelTest, GradientOfBatchIsMeanOfParts) {
  const Spec& spec = GetParam();
  auto model = make_model(spec);
  const Dataset data = make_data(spec.input, 1500, 41);
  const arma::fvec p = random_params(*model, 42);
  Rng rng(43);
  std::vector<std::uint32_t> batch(2600);
  for (auto& j : batch) j = static_cast<std::uint32_t>(rng.below(data.size()));
  const std::span<const std::uint32_t> whole(batch), first = whole.first(1000), rest = whole.subspan(1000);
  arma::fvec g_whole, g_first, g_rest;
  const double l_whole = model->loss_and_gradient(p, data, whole, g_whole);
  const double l_first = model->loss_and_gradient(p, data, first, g_first);
  const double l_rest = model->loss_and_gradient(p, data, rest, g_rest);
  // The weights sum to 1, so ls_svm's penalty (not per-sample) carries through unchanged.
  EXPECT_NEAR(l_whole, (1000 * l_first + 1600 * l_rest) / 2600, 1e-6 * l_whole);
  const arma::fvec combined = (1000.0f * g_first + 1600.0f * g_rest) / 2600.0f;
  EXPECT_LT(arma::norm(g_whole - combined), 1e-4 * arma::norm(g_whole));
}

TEST_P(ModelTest, GradientDescentDecreasesLoss) {
  const Spec& spec = GetParam();
  auto model = make_model(spec);
  const Dataset data = make_data(spec.input, 400, 51);
  Rng rng(52);
  arma::fvec p, grad;
  model->init(p, rng);
  const std::vector<std::uint32_t> all = all_indices(data);
  const double initial = model->loss_and_gradient(p, data, all, grad);
  double previous = initial, loss = initial;
  for (int step = 0; step < 100; ++step) {
    p -= 0.1f * grad;
    loss = model->loss_and_gradient(p, data, all, grad);
    EXPECT_LE(loss, previous * (1 + 1e-6)) << "step " << step;
    previous = loss;
  }
  EXPECT_LT(loss, 0.6 * initial) << "initial " << initial;
  RecordProperty("loss_ratio", std::to_string(loss / initial));
}

TEST_P(ModelTest, LayersTileParameters) {
  const Spec& spec = GetParam();
  auto model = make_model(spec);
  const std::vector<Layer> layers = model->layers();
  ASSERT_FALSE(layers.empty());
  std::size_t next = 0;
  for (const Layer& l : layers) {
    EXPECT_EQ(l.offset, next) << l.name;
    EXPECT_GT(l.size, 0u) << l.name;
    EXPECT_FALSE(l.name.empty());
    next = l.offset + l.size;
  }
  EXPECT_EQ(next, model->num_params());
}

TEST_P(ModelTest, InitIsDeterministicPerRng) {
  const Spec& spec = GetParam();
  auto model = make_model(spec);
  arma::fvec a, b;
  Rng r1(61), r2(61);
  model->init(a, r1);
  model->init(b, r2);
  ASSERT_EQ(a.n_elem, model->num_params());
  EXPECT_TRUE(arma::all(a == b));
}

// Two threads calling the same model at once get what serial calls get (the
// scratch buffers are per thread).
TEST_P(ModelTest, ConcurrentCallsMatchSerial) {
  const Spec& spec = GetParam();
  auto model = make_model(spec);
  const Dataset data = make_data(spec.input, 1200, 71);
  const arma::fvec p1 = random_params(*model, 72), p2 = random_params(*model, 73);
  std::vector<std::uint32_t> b1 = all_indices(data), b2(700);
  for (std::size_t j = 0; j < b2.size(); ++j) b2[j] = static_cast<std::uint32_t>((j * 13) % data.size());
  arma::fvec s1, s2;
  const double serial1 = model->loss_and_gradient(p1, data, b1, s1);
  const double serial2 = model->loss_and_gradient(p2, data, b2, s2);
  const Evaluation serial_eval = model->evaluate(p2, data);
  for (int rep = 0; rep < 3; ++rep) {
    arma::fvec g1, g2;
    double l1 = 0, l2 = 0;
    Evaluation e;
    std::thread t1([&] {
      l1 = model->loss_and_gradient(p1, data, b1, g1);
      e = model->evaluate(p2, data);
    });
    std::thread t2([&] { l2 = model->loss_and_gradient(p2, data, b2, g2); });
    t1.join();
    t2.join();
    EXPECT_EQ(l1, serial1);
    EXPECT_EQ(l2, serial2);
    EXPECT_EQ(e.loss, serial_eval.loss);
    EXPECT_TRUE(arma::all(g1 == s1));
    EXPECT_TRUE(arma::all(g2 == s2));
  }
}

INSTANTIATE_TEST_SUITE_P(AllModels, ModelTest,
                         ::testing::Values(Spec{"SoftmaxRegression", "softmax_regression", "init_scale: 0.1\n", {12, 4}},
                                           Spec{"LinearRegression", "linear_regression", "{}\n", {12, 0}},
                                           Spec{"LsSvm", "ls_svm", "l2: 0.05\n", {12, 2}},
                                           Spec{"Mlp", "mlp", "hidden: [16, 8]\n", {12, 4}}),
                         [](const ::testing::TestParamInfo<Spec>& info) { return info.param.label; });

TEST(ModelRegistry, CreatesEveryModelByName) {
  for (const char* name : {"softmax_regression", "linear_regression", "ls_svm", "mlp"})
    EXPECT_TRUE(ModelRegistry::instance().contains(name)) << name;
  const Config empty = Config::parse_string("{}\n", "test.yaml");
  EXPECT_EQ(ModelRegistry::instance().create("m", "softmax_regression", empty, ModelInput{784, 10})->num_params(),
            7850u);
  EXPECT_EQ(ModelRegistry::instance().create("m", "linear_regression", empty, ModelInput{90, 0})->num_params(), 91u);
  EXPECT_EQ(ModelRegistry::instance().create("m", "ls_svm", empty, ModelInput{5000, 2})->num_params(), 5001u);
  // The default MLP: 784 -> 200 -> 10.
  EXPECT_EQ(ModelRegistry::instance().create("m", "mlp", empty, ModelInput{784, 10})->num_params(),
            784u * 200 + 200 + 200 * 10 + 10);
}

TEST(Mlp, LayersAreWeightsAndBiasesInOrder) {
  Mlp mlp(Config::parse_string("hidden: [16, 8]\n", "test.yaml"), ModelInput{5, 3});
  const std::vector<Layer> layers = mlp.layers();
  ASSERT_EQ(layers.size(), 6u);
  const std::vector<std::string> names{"dense0.weight", "dense0.bias", "dense1.weight",
                                       "dense1.bias",   "dense2.weight", "dense2.bias"};
  const std::vector<std::size_t> sizes{80, 16, 128, 8, 24, 3};
  for (std::size_t i = 0; i < layers.size(); ++i) {
    EXPECT_EQ(layers[i].name, names[i]);
    EXPECT_EQ(layers[i].size, sizes[i]);
  }
  EXPECT_EQ(mlp.num_params(), 80u + 16 + 128 + 8 + 24 + 3);
}

TEST(Mlp, MacsPerSampleFollowsFormula) {
  Mlp mlp(Config::parse_string("hidden: [16, 8]\n", "test.yaml"), ModelInput{5, 3});
  EXPECT_DOUBLE_EQ(mlp.macs_per_sample(), (2 * 5 * 16 + 2 * 16) + (3 * 16 * 8 + 2 * 8) + (3 * 8 * 3 + 2 * 3));
  SoftmaxRegression softmax(Config::parse_string("{}\n", "test.yaml"), ModelInput{784, 10});
  EXPECT_DOUBLE_EQ(softmax.macs_per_sample(), 2.0 * 10 * 785);
}

// He initialisation: weights N(0, 2 / fan_in), biases 0.
TEST(Mlp, HeInitVariancePerLayer) {
  Mlp mlp(Config::parse_string("hidden: [300, 100]\n", "test.yaml"), ModelInput{400, 10});
  Rng rng(81);
  arma::fvec p;
  mlp.init(p, rng);
  const std::vector<std::size_t> fan_in{400, 300, 100};
  const std::vector<Layer> layers = mlp.layers();
  for (std::size_t l = 0; l < 3; ++l) {
    const arma::fvec w = p.subvec(layers[2 * l].offset, layers[2 * l].offset + layers[2 * l].size - 1);
    const double expected = 2.0 / static_cast<double>(fan_in[l]);
    // >= 1000 draws per layer: the sample variance is within 10% with overwhelming probability.
    EXPECT_NEAR(arma::var(arma::conv_to<arma::vec>::from(w)), expected, 0.1 * expected) << layers[2 * l].name;
    EXPECT_NEAR(arma::mean(arma::conv_to<arma::vec>::from(w)), 0.0, 0.1 * std::sqrt(expected));
    const arma::fvec b = p.subvec(layers[2 * l + 1].offset, layers[2 * l + 1].offset + layers[2 * l + 1].size - 1);
    EXPECT_TRUE(arma::all(b == 0.0f));
  }
}

TEST(Mlp, TrainsToHighAccuracyOnTeacherData) {
  const ModelInput input{12, 4};
  Mlp mlp(Config::parse_string("hidden: [32]\n", "test.yaml"), input);
  const Dataset train = make_data(input, 1000, 91);
  Rng rng(92);
  arma::fvec p, grad;
  mlp.init(p, rng);
  const Evaluation before = mlp.evaluate(p, train);
  std::vector<std::uint32_t> batch(32);
  for (int step = 0; step < 600; ++step) {
    for (auto& j : batch) j = static_cast<std::uint32_t>(rng.below(train.size()));
    mlp.loss_and_gradient(p, train, batch, grad);
    p -= 0.1f * grad;
  }
  const Evaluation after = mlp.evaluate(p, train);
  EXPECT_LT(before.accuracy, 0.5);
  EXPECT_GT(after.accuracy, 0.8);
  RecordProperty("accuracy", std::to_string(after.accuracy));
}

// With logits of order 1e4 a naive softmax overflows; the stable one gives the
// exact cross-entropy (here: the margin by which the label's logit loses).
TEST(SoftmaxRegression, LossFiniteForExtremeLogits) {
  SoftmaxRegression model(Config::parse_string("{}\n", "test.yaml"), ModelInput{1, 3});
  Dataset data;
  data.num_classes = 3;
  data.features = arma::fmat{{1.0f, 1.0f}};
  data.labels = {0, 2};
  arma::fvec p{1e4f, 2e4f, -1e4f, 0.0f, 0.0f, 0.0f};  // logits (1e4, 2e4, -1e4)
  arma::fvec grad;
  const std::vector<std::uint32_t> batch{0, 1};
  const double loss = model.loss_and_gradient(p, data, batch, grad);
  EXPECT_NEAR(loss, (1e4 + 3e4) / 2, 1.0);
  EXPECT_TRUE(grad.is_finite());
  EXPECT_TRUE(std::isfinite(model.evaluate(p, data).loss));
  EXPECT_EQ(model.evaluate(p, data).accuracy, 0.0);
}

TEST(LsSvm, AccuracyIsSignAgreement) {
  LsSvm model(Config::parse_string("{}\n", "test.yaml"), ModelInput{1, 2});
  Dataset data;
  data.num_classes = 2;
  data.features = arma::fmat{{-2.0f, -0.5f, 0.0f, 1.0f}};
  data.labels = {0, 1, 1, 0};
  const arma::fvec p{1.0f, 0.0f};  // score = x; 0 counts as +1
  const Evaluation e = model.evaluate(p, data);
  EXPECT_DOUBLE_EQ(e.accuracy, 0.5);
  // 0.5 * ((-2+1)^2 + (-0.5-1)^2 + (0-1)^2 + (1+1)^2) / 4
  EXPECT_NEAR(e.loss, 0.5 * (1 + 2.25 + 1 + 4) / 4, 1e-6);
}

TEST(LinearRegression, GradientDescentRecoversPlantedModel) {
  const ModelInput input{6, 0};
  LinearRegression model(Config::parse_string("{}\n", "test.yaml"), input);
  Dataset data;
  Rng rng(101);
  data.features.set_size(6, 500);
  for (float& x : data.features) x = static_cast<float>(rng.normal());
  const arma::fvec planted{0.5f, -1.0f, 2.0f, 0.0f, 0.25f, -0.75f};
  data.targets = (planted.t() * data.features).t() + 1.5f;  // noiseless, bias 1.5
  arma::fvec p, grad;
  model.init(p, rng);
  const std::vector<std::uint32_t> all = all_indices(data);
  for (int step = 0; step < 300; ++step) {
    model.loss_and_gradient(p, data, all, grad);
    p -= 0.3f * grad;
  }
  EXPECT_LT(arma::abs(p.head(6) - planted).max(), 1e-3);
  EXPECT_NEAR(p[6], 1.5f, 1e-3);
}

void expect_input_error(const std::string& name, const std::string& yaml, ModelInput input,
                        const std::string& must_mention) {
  try {
    ModelRegistry::instance().create("test.yaml: model", name, Config::parse_string(yaml, "test.yaml"), input);
    ADD_FAILURE() << name << " accepted " << yaml;
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("test.yaml"), std::string::npos) << what;
    EXPECT_NE(what.find(must_mention), std::string::npos) << what;
  }
}

TEST(ModelSettings, BadValuesAreInputErrors) {
  expect_input_error("mlp", "hidden: [0]\n", {10, 3}, "hidden");
  expect_input_error("mlp", "hidden: [16, 100001]\n", {10, 3}, "hidden");
  expect_input_error("mlp", "hidden: []\n", {10, 3}, "hidden");
  expect_input_error("mlp", "hidden: 16\n", {10, 3}, "hidden");
  expect_input_error("mlp", "hidden: [8]\n", {10, 0}, "classification");
  expect_input_error("ls_svm", "{}\n", {10, 10}, "10 classes");
  expect_input_error("ls_svm", "l2: -1\n", {10, 2}, "l2");
  expect_input_error("linear_regression", "{}\n", {10, 3}, "regression");
  expect_input_error("softmax_regression", "{}\n", {10, 0}, "classification");
  expect_input_error("softmax_regression", "init_scale: abc\n", {10, 3}, "init_scale");
}

// Keys the models read are marked used, so the caller's finish() passes; a
// typo is left unread and reported.
TEST(ModelSettings, ReadKeysPassFinishTyposDoNot) {
  const Config good = Config::parse_string("hidden: [4]\n", "test.yaml");
  Mlp mlp(good, ModelInput{3, 2});
  EXPECT_NO_THROW(good.finish());
  const Config typo = Config::parse_string("hiden: [4]\n", "test.yaml");
  Mlp mlp2(typo, ModelInput{3, 2});
  EXPECT_THROW(typo.finish(), InputError);
}

}  // namespace
}  // namespace fedsim
