// The LibTorch models (built only when LibTorch is): the CNN's gradient
// against central differences (and a check that the test would catch a wrong
// gradient), the built-in layouts and multiply-add counts, TorchScript
// modules of the built-in architectures (and of the MLP) giving the built-in
// models' losses and gradients, bad .pt files refused with the file named,
// relative paths, low-precision clients, and thread-count-independent runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "clients/device_profile.h"
#include "clients/quantized_compute.h"
#include "core/base/config.h"
#include "core/base/errors.h"
#include "core/base/rng.h"
#include "core/models/model.h"
#include "core/models/torch/torch_model_names.h"
#include "server/metrics.h"
#include "server/scenario.h"
#include "server/simulation.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;

const fs::path kData = fs::path(FEDSIM_SOURCE_DIR) / "tests/core/models/data";

std::unique_ptr<Model> make_model(const std::string& yaml, ModelInput input, const std::string& file = "test.yaml") {
  Config settings = Config::parse_string(yaml, file);
  auto model = ModelRegistry::instance().create(file + ": model", settings.get_string("name"), settings, input);
  settings.finish();
  return model;
}

std::string torchscript_yaml(const std::string& pt, const std::string& extra = "") {
  return "name: torchscript\npath: " + (kData / pt).string() + "\n" + extra;
}

// 28x28 grey "images" in [0, 1] with random labels.
Dataset make_images(std::size_t n, std::uint32_t classes, std::uint64_t seed, std::size_t dim = 784) {
  Rng rng(seed);
  Dataset d;
  d.num_classes = classes;
  d.features.set_size(dim, n);
  for (float& x : d.features) x = static_cast<float>(rng.uniform());
  d.labels.resize(n);
  for (auto& y : d.labels) y = static_cast<std::uint32_t>(rng.below(classes));
  return d;
}

std::vector<std::uint32_t> first_n(std::size_t n) {
  std::vector<std::uint32_t> v(n);
  std::iota(v.begin(), v.end(), 0u);
  return v;
}

arma::fvec perturbed_init(const Model& model, std::uint64_t seed) {
  Rng rng(seed);
  arma::fvec p;
  model.init(p, rng);
  for (float& x : p) x += static_cast<float>(0.05 * rng.normal());
  return p;
}

// Runs f, expects an InputError whose message contains every part.
void expect_input_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no InputError";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    for (const std::string& part : parts) EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' not in: " << msg;
  }
}

double relative_difference(const arma::fvec& a, const arma::fvec& b) {
  return static_cast<double>(arma::norm(a - b)) / std::max(1e-30, static_cast<double>(arma::norm(b)));
}

TEST(TorchModels, NamesKnownWithoutLibTorchAreTheRegisteredOnes) {
  for (std::string_view name : kTorchModelNames)
    EXPECT_TRUE(ModelRegistry::instance().contains(std::string(name))) << name;
}

// ---------------------------------------------------------------------------
// The built-in CNN

// Directional central differences, one random unit direction per layer (a
// coordinate-wise check would mostly probe the dense layers): for a smooth
// loss (L(p + h d) - L(p - h d)) / 2h = g.d + O(h^2). ReLU kinks and max-pool
// switches make the loss only piecewise smooth, so h is small (1e-3); the
// loss is evaluate()'s, whose per-sample float32 losses are summed in double.
// Measured: every layer within 3e-3 relative (h from 3e-4 to 3e-3), against
// a tolerance of 1e-2; a gradient 5% off fails it.
struct DirectionalCheck {
  std::vector<double> analytic, numeric;
  double error(const std::vector<double>& g) const {  // worst relative error of g against numeric
    double worst = 0;
    for (std::size_t l = 0; l < g.size(); ++l)
      worst = std::max(worst, std::abs(g[l] - numeric[l]) / (std::abs(numeric[l]) + 1e-4));
    return worst;
  }
};

DirectionalCheck directional_check(const Model& model, const arma::fvec& p, const Dataset& data,
                                   const arma::fvec& grad, double h) {
  DirectionalCheck check;
  Rng rng(77);
  for (const Layer& layer : model.layers()) {
    arma::fvec d(p.n_elem, arma::fill::zeros);
    for (std::size_t i = 0; i < layer.size; ++i) d[layer.offset + i] = static_cast<float>(rng.normal());
    d /= arma::norm(d);
    const arma::fvec up = p + static_cast<float>(h) * d;
    const arma::fvec down = p - static_cast<float>(h) * d;
    // evaluate() sums the per-sample losses in double: less rounding noise.
    const double numeric = (model.evaluate(up, data).loss - model.evaluate(down, data).loss) / (2 * h);
    check.numeric.push_back(numeric);
    check.analytic.push_back(static_cast<double>(arma::dot(grad, d)));
  }
  return check;
}

TEST(Cnn, GradientMatchesCentralDifferencesAndAWrongOneWouldNot) {
  for (const std::string arch : {"fedavg", "lenet5"}) {
    SCOPED_TRACE(arch);
    const auto model = make_model("name: cnn\narch: " + arch + "\nchannels: [3, 5]\nhidden: [12]\n", {784, 10});
    const Dataset data = make_images(64, 10, 5);
    const std::vector<std::uint32_t> batch = first_n(64);
    const arma::fvec p = perturbed_init(*model, 6);
    arma::fvec grad;
    model->loss_and_gradient(p, data, batch, grad);
    const DirectionalCheck check = directional_check(*model, p, data, grad, 1e-3);
    EXPECT_LT(check.error(check.analytic), 1e-2);
    for (std::size_t l = 0; l < check.analytic.size(); ++l)
      EXPECT_GT(std::abs(check.numeric[l]), 1e-3) << "layer " << l << ": too flat to test";
    // The check's power: one layer's gradient 5% off, or two layers swapped, fails it.
    for (std::size_t l = 0; l < check.analytic.size(); ++l) {
      std::vector<double> wrong = check.analytic;
      wrong[l] *= 1.05;
      EXPECT_GT(check.error(wrong), 1e-2) << "layer " << l;
    }
  }
}

TEST(Cnn, FedAvgAndLeNet5LayoutsAsInThePapers) {
  const auto fedavg = make_model("name: cnn\n", {784, 10});
  EXPECT_EQ(fedavg->num_params(), 1663370u);  // McMahan et al. 2017
  const auto lenet = make_model("name: cnn\narch: lenet5\n", {784, 10});
  EXPECT_EQ(lenet->num_params(), 61706u);
  std::vector<std::string> names;
  std::size_t next = 0;
  for (const Layer& layer : lenet->layers()) {
    EXPECT_EQ(layer.offset, next);
    next += layer.size;
    names.push_back(layer.name);
  }
  EXPECT_EQ(next, lenet->num_params());
  EXPECT_EQ(names, (std::vector<std::string>{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight",
                                             "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"}));
  // Counted by hand as Mlp counts (2 for the input layer, else 3, per MAC;
  // 2 per bias output): conv1 6x28x28 outputs of 25, conv2 16x10x10 of 150,
  // dense 400-120-84-10.
  const double lenet_macs = 2.0 * 6 * 784 * 25 + 2.0 * 6 * 784 + 3.0 * 1600 * 150 + 2.0 * 1600 +
                            3.0 * 400 * 120 + 2.0 * 120 + 3.0 * 120 * 84 + 2.0 * 84 + 3.0 * 84 * 10 + 2.0 * 10;
  EXPECT_DOUBLE_EQ(lenet->macs_per_sample(), lenet_macs);
}

TEST(Cnn, TrainingLowersTheLoss) {
  const auto model = make_model("name: cnn\narch: lenet5\nchannels: [4, 8]\nhidden: [16]\n", {784, 4});
  // Learnable: the label is the brightest quadrant.
  Dataset data = make_images(256, 4, 9);
  for (std::size_t j = 0; j < data.size(); ++j) {
    data.labels[j] = static_cast<std::uint32_t>(j % 4);
    for (std::size_t r = 0; r < 14; ++r)
      for (std::size_t c = 0; c < 14; ++c)
        data.features((r + 14 * (data.labels[j] / 2)) * 28 + c + 14 * (data.labels[j] % 2), j) += 1.0f;
  }
  Rng rng(1);
  arma::fvec p, grad;
  model->init(p, rng);
  const Evaluation before = model->evaluate(p, data);
  for (int step = 0; step < 40; ++step) {
    std::vector<std::uint32_t> batch;
    for (int k = 0; k < 32; ++k) batch.push_back(static_cast<std::uint32_t>(rng.below(data.size())));
    model->loss_and_gradient(p, data, batch, grad);
    p -= 0.05f * grad;
  }
  const Evaluation after = model->evaluate(p, data);
  EXPECT_LT(after.loss, 0.5 * before.loss);
  EXPECT_GT(after.accuracy, 0.9);
}

TEST(Cnn, ChunkedBatchEqualsWholeBatch) {
  // 600 samples = chunks of 256, 256, 88: the gradient of the mean is the sum
  // of the chunks' scaled gradients.
  const auto model = make_model("name: cnn\narch: lenet5\nchannels: [2, 3]\nhidden: [8]\n", {784, 10});
  const Dataset data = make_images(600, 10, 3);
  const arma::fvec p = perturbed_init(*model, 4);
  arma::fvec whole, part;
  const double loss = model->loss_and_gradient(p, data, first_n(600), whole);
  arma::fvec sum(model->num_params(), arma::fill::zeros);
  double loss_sum = 0;
  for (std::uint32_t first : {0u, 200u, 400u}) {
    std::vector<std::uint32_t> batch = first_n(200);
    for (auto& j : batch) j += first;
    loss_sum += model->loss_and_gradient(p, data, batch, part) / 3;
    sum += part / 3.0f;
  }
  EXPECT_NEAR(loss, loss_sum, 1e-6 * loss);
  EXPECT_LT(relative_difference(whole, sum), 1e-5);
  const Evaluation eval = model->evaluate(p, data);
  EXPECT_NEAR(eval.loss, loss, 1e-5 * loss);
}

TEST(Cnn, SettingsAreValidated) {
  expect_input_error([] { make_model("name: cnn\n", {780, 10}); }, {"test.yaml", "square", "780"});
  expect_input_error([] { make_model("name: cnn\narch: lenet5\n", {100, 10}); }, {"lenet5", "10x10"});
  expect_input_error([] { make_model("name: cnn\nchannels: [3]\n", {784, 10}); }, {"channels", "two"});
  expect_input_error([] { make_model("name: cnn\narch: resnet\n", {784, 10}); }, {"arch", "fedavg, lenet5"});
  expect_input_error([] { make_model("name: cnn\n", {784, 0}); }, {"classification"});
  expect_input_error([] { make_model("name: cnn\nkernel: 3\n", {784, 10}); }, {"kernel"});
  // Three channels of 16x16: fine.
  EXPECT_EQ(make_model("name: cnn\nin_channels: 3\nchannels: [2, 2]\nhidden: [4]\n", {768, 10})->layers()[0].size,
            2u * 3 * 25);
}

// ---------------------------------------------------------------------------
// TorchScript modules of the same architecture as a built-in model

void expect_same_as_builtin(const Model& script, const Model& builtin, const Dataset& data, double tolerance) {
  ASSERT_EQ(script.num_params(), builtin.num_params());
  const auto a = script.layers(), b = builtin.layers();
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t l = 0; l < a.size(); ++l) {
    EXPECT_EQ(a[l].name, b[l].name);
    EXPECT_EQ(a[l].offset, b[l].offset);
    EXPECT_EQ(a[l].size, b[l].size);
  }
  EXPECT_DOUBLE_EQ(script.macs_per_sample(), builtin.macs_per_sample());
  Rng rng(3);
  arma::fvec p;
  script.init(p, rng);  // the file's parameters
  const std::vector<std::uint32_t> batch = {5, 1, 17, 3, 3, 40, 22, 9, 31, 0, 12, 47};
  arma::fvec g_script, g_builtin;
  const double l_script = script.loss_and_gradient(p, data, batch, g_script);
  const double l_builtin = builtin.loss_and_gradient(p, data, batch, g_builtin);
  EXPECT_NEAR(l_script, l_builtin, tolerance * l_builtin);
  EXPECT_LT(relative_difference(g_script, g_builtin), tolerance);
  for (const Layer& layer : a) {
    const arma::fvec gs = g_script.subvec(layer.offset, layer.offset + layer.size - 1);
    const arma::fvec gb = g_builtin.subvec(layer.offset, layer.offset + layer.size - 1);
    EXPECT_LT(relative_difference(gs, gb), tolerance) << layer.name;
  }
  const Evaluation es = script.evaluate(p, data), eb = builtin.evaluate(p, data);
  EXPECT_NEAR(es.loss, eb.loss, tolerance * eb.loss);
  EXPECT_EQ(es.accuracy, eb.accuracy);
}

TEST(TorchScript, LeNet5ModuleGivesTheBuiltinLossAndGradients) {
  const auto script = make_model(torchscript_yaml("lenet5_small.pt"), {784, 10});
  const auto builtin = make_model("name: cnn\narch: lenet5\nchannels: [4, 8]\nhidden: [24, 16]\n", {784, 10});
  expect_same_as_builtin(*script, *builtin, make_images(50, 10, 8), 1e-6);
}

TEST(TorchScript, TracedLeNet5ModuleGivesTheBuiltinLossAndGradients) {
  // torch.jit.trace records aten::_convolution, not aten::conv2d: counted the same.
  const auto script = make_model(torchscript_yaml("lenet5_small_traced.pt"), {784, 10});
  const auto builtin = make_model("name: cnn\narch: lenet5\nchannels: [4, 8]\nhidden: [24, 16]\n", {784, 10});
  expect_same_as_builtin(*script, *builtin, make_images(50, 10, 15), 1e-6);
}

TEST(TorchScript, FedAvgModuleGivesTheBuiltinLossAndGradients) {
  const auto script = make_model(torchscript_yaml("fedavg_small.pt"), {784, 10});
  const auto builtin = make_model("name: cnn\narch: fedavg\nchannels: [4, 8]\nhidden: [32]\n", {784, 10});
  expect_same_as_builtin(*script, *builtin, make_images(50, 10, 9), 1e-6);
}

TEST(TorchScript, MlpModuleMatchesTheArmadilloMlp) {
  // Same layout, different kernels (LibTorch against Armadillo + OpenBLAS):
  // equal up to float rounding.
  const auto script = make_model(torchscript_yaml("mlp_784_32.pt", "input_shape: [784]\n"), {784, 10});
  const auto builtin = make_model("name: mlp\nhidden: [32]\n", {784, 10});
  expect_same_as_builtin(*script, *builtin, make_images(50, 10, 10), 1e-5);
}

TEST(TorchScript, TrainsFromTheFilesParametersWhateverTheSeed) {
  const auto model = make_model(torchscript_yaml("lenet5_small.pt"), {784, 10});
  arma::fvec a, b;
  Rng r1(1), r2(2);
  model->init(a, r1);
  model->init(b, r2);
  EXPECT_TRUE(arma::all(a == b));
  EXPECT_GT(arma::norm(a), 0.0f);
}

TEST(TorchScript, ParameterForwardNeverReadsHasZeroGradient) {
  const auto model = make_model(torchscript_yaml("unused_parameter.pt"), {784, 10});
  const Dataset data = make_images(16, 10, 14);
  Rng rng(1);
  arma::fvec p, grad;
  model->init(p, rng);
  model->loss_and_gradient(p, data, first_n(16), grad);
  for (const Layer& layer : model->layers()) {
    const double norm = arma::norm(grad.subvec(layer.offset, layer.offset + layer.size - 1));
    if (layer.name.starts_with("unused"))
      EXPECT_EQ(norm, 0.0) << layer.name;
    else
      EXPECT_GT(norm, 0.0) << layer.name;
  }
}

TEST(TorchScript, CountsOrTakesMultiplyAdds) {
  expect_input_error([] { make_model(torchscript_yaml("looped.pt"), {784, 10}); },
                     {"looped.pt", "aten::linear inside a loop", "macs_per_sample"});
  const auto model = make_model(torchscript_yaml("looped.pt", "macs_per_sample: 123456\n"), {784, 10});
  EXPECT_EQ(model->macs_per_sample(), 123456.0);
  // Given, it replaces the count.
  EXPECT_EQ(make_model(torchscript_yaml("lenet5_small.pt", "macs_per_sample: 5e6\n"), {784, 10})->macs_per_sample(), 5e6);
}

// ---------------------------------------------------------------------------
// Bad input

fs::path temp_file(const std::string& name, const std::string& bytes) {
  const fs::path path = fs::temp_directory_path() / ("fedsim_torch_test_" + name);
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::unique_ptr<Model> load_pt(const fs::path& path, ModelInput input = {784, 10}) {
  return make_model("name: torchscript\npath: " + path.string() + "\n", input);
}

TEST(TorchScriptBadInput, MissingFile) {
  expect_input_error([] { load_pt(kData / "no_such_model.pt"); }, {"no_such_model.pt", "not found"});
}

TEST(TorchScriptBadInput, DirectoryEmptyFileAndNotAZipArchive) {
  expect_input_error([] { load_pt(kData); }, {kData.string(), "directory"});
  const fs::path empty = temp_file("empty.pt", "");
  expect_input_error([&] { load_pt(empty); }, {empty.string(), "an empty file"});
  const fs::path text = temp_file("text.pt", "hello, not a model");
  expect_input_error([&] { load_pt(text); }, {text.string(), "zip archive", "0x68 0x65 0x6c 0x6c"});
  const fs::path pickle = temp_file("pickle.pt", std::string("\x80\x02}q\x00.", 6));
  expect_input_error([&] { load_pt(pickle); }, {pickle.string(), "pickle"});
}

TEST(TorchScriptBadInput, TruncatedAndCorruptArchives) {
  const std::string good = read_bytes(kData / "lenet5_small.pt");
  const fs::path truncated = temp_file("truncated.pt", good.substr(0, good.size() / 2));
  expect_input_error([&] { load_pt(truncated); }, {truncated.string(), "LibTorch cannot load"});
  std::string flipped = good;
  for (std::size_t i = 200; i < flipped.size(); i += 97) flipped[i] = static_cast<char>(~flipped[i]);
  const fs::path corrupt = temp_file("corrupt.pt", flipped);
  expect_input_error([&] { load_pt(corrupt); }, {corrupt.string()});
}

TEST(TorchScriptBadInput, OutputClassesDoNotMatchTheData) {
  expect_input_error([] { load_pt(kData / "seven_classes.pt"); },
                     {"seven_classes.pt", "2 x 7", "expected 2 x 10", "10 classes"});
}

TEST(TorchScriptBadInput, NonFloat32Parameters) {
  expect_input_error([] { load_pt(kData / "float64.pt"); }, {"float64.pt", "dense0.weight", "is float64", "float32"});
}

TEST(TorchScriptBadInput, BuffersAreRefused) {
  expect_input_error([] { load_pt(kData / "batchnorm.pt"); }, {"batchnorm.pt", "buffers", "bn.running_mean"});
}

TEST(TorchScriptBadInput, InputShapeThatTheModuleDoesNotTake) {
  // The CNN gets flat input: its forward fails, and the message says which key to set.
  expect_input_error([] { make_model(torchscript_yaml("lenet5_small.pt", "input_shape: [784]\n"), {784, 10}); },
                     {"lenet5_small.pt", "2 x 784", "input_shape"});
  expect_input_error([] { make_model(torchscript_yaml("lenet5_small.pt", "input_shape: [1, 28, 27]\n"), {784, 10}); },
                     {"input_shape", "product 756"});
}

// ---------------------------------------------------------------------------
// Paths, precision, threads

TEST(TorchScript, RelativePathIsRelativeToTheScenarioFile) {
  const std::string scenario = (kData / "scenario.yaml").string();
  EXPECT_EQ(make_model("name: torchscript\npath: lenet5_small.pt\n", {784, 10}, scenario)->num_params(), 6306u);
  // From --set, relative to the working directory.
  Config root = Config::parse_string("model: {name: torchscript}\n", scenario);
  Config::apply_override(root.node(), "model.path=lenet5_small.pt");
  EXPECT_EQ(root.child("model").get_path("path"), "lenet5_small.pt");
  Config from_file = Config::parse_string("path: sub/m.pt\n", "/a/b/s.yaml");
  EXPECT_EQ(from_file.get_path("path"), "/a/b/sub/m.pt");
  Config absolute = Config::parse_string("path: /x/m.pt\n", "/a/b/s.yaml");
  EXPECT_EQ(absolute.get_path("path"), "/x/m.pt");
}

TEST(LowPrecision, TorchModelGetsTheZipMlOperandRoundingNotSilentFp32) {
  // An int8 client's gradient is computed on 8-bit samples and parameters and
  // rounded to 8 bits per layer, as for the MLP: close to fp32, not equal,
  // and on a grid of at most 256 values per layer.
  const auto model = make_model("name: cnn\narch: lenet5\nchannels: [4, 8]\nhidden: [16]\n", {784, 10});
  const Dataset data = make_images(32, 10, 12);
  const arma::fvec p = perturbed_init(*model, 13);
  const std::vector<std::uint32_t> batch = first_n(32);
  arma::fvec g32, g8;
  QuantizedCompute fp32(*model, Precision::kFp32), int8(*model, Precision::kInt8);
  Rng rng(5);
  fp32.loss_and_gradient(p, data, batch, rng, g32);
  int8.loss_and_gradient(p, data, batch, rng, g8);
  const double diff = relative_difference(g8, g32);
  EXPECT_GT(diff, 1e-4);
  EXPECT_LT(diff, 0.5);
  for (const Layer& layer : model->layers()) {
    std::vector<float> values(g8.begin() + layer.offset, g8.begin() + layer.offset + layer.size);
    std::sort(values.begin(), values.end());
    EXPECT_LE(std::unique(values.begin(), values.end()) - values.begin(), 256) << layer.name;
  }
}

std::string run_metrics(const std::string& yaml, int threads) {
  const fs::path dir = fs::temp_directory_path() / ("fedsim_torch_threads_" + std::to_string(threads));
  const Scenario sc = parse_scenario(yaml, "torch_det.yaml", {"threads=" + std::to_string(threads)});
  Simulation sim(sc);
  {
    MetricsWriter writer(dir.string(), sim.population().class_names());
    sim.run([&](const RoundMetrics& m) { writer.write(m); });
  }
  return read_bytes(dir / "metrics.csv");
}

TEST(Determinism, TorchModelsGiveTheSameMetricsWithOneAndTwoThreads) {
  for (const std::string& model : std::vector<std::string>{"{name: cnn, channels: [4, 8], hidden: [16]}",
                                  "{name: torchscript, path: " + (kData / "fedavg_small.pt").string() + "}"}) {
    SCOPED_TRACE(model);
    const std::string yaml =
        "data: {source: synthetic_classification, train_samples: 1200, test_samples: 300, dim: 784, classes: 10}\n"
        "partition: {scheme: dirichlet, alpha: 0.5}\n"
        "model: " + model + "\n"
        "clients: 12\nclients_per_round: 6\nlocal_steps: 3\nbatch_size: 16\nlearning_rate: 0.05\n"
        "rounds: 4\neval_every: 2\noutput: {progress: false}\n"
        "population: [{name: a, fraction: 0.5}, {name: b, fraction: 0.5, profile: phone_cpu, precision: int8}]\n"
        "uplink: [{qsgd: {levels: 7, bucket: 512}}]\n";
    const std::string one = run_metrics(yaml, 1);
    EXPECT_NE(one.find('\n'), std::string::npos);
    EXPECT_EQ(one, run_metrics(yaml, 2));
  }
}

}  // namespace
}  // namespace fedsim
