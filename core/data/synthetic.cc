#include "core/data/synthetic.h"

#include <cmath>
#include <memory>

#include "core/data/data_source.h"
#include "core/base/rng.h"

namespace fedsim {
namespace {

enum Part : std::uint64_t { kGroundTruth = 0, kTrainPart = 1, kTestPart = 2 };

void fill_normal(arma::fmat& m, Rng& rng, double stddev) {
  float* p = m.memptr();
  for (std::size_t i = 0; i < m.n_elem; ++i) p[i] = static_cast<float>(stddev * rng.normal());
}

Dataset regression_part(const SyntheticRegressionSpec& spec, const arma::fvec& w, std::size_t n, Rng rng,
                        const char* name) {
  Dataset d;
  d.name = name;
  d.features.set_size(spec.dim, n);
  fill_normal(d.features, rng, 1.0);
  if (spec.lognormal_sigma > 0.0)
    d.features.transform([&](float z) { return static_cast<float>(std::exp(spec.lognormal_sigma * z)); });
  d.targets = (w.t() * d.features).t();
  for (std::size_t i = 0; i < n; ++i) d.targets[i] += static_cast<float>(spec.noise * rng.normal());
  return d;
}

Dataset classification_part(const SyntheticClassificationSpec& spec, const arma::fmat& means, std::size_t n,
                            Rng rng, const char* name) {
  Dataset d;
  d.name = name;
  d.num_classes = static_cast<std::uint32_t>(spec.classes);
  d.labels.resize(n);
  d.features.set_size(spec.dim, n);
  fill_normal(d.features, rng, 1.0);
  for (std::size_t i = 0; i < n; ++i) {
    d.labels[i] = static_cast<std::uint32_t>(rng.below(spec.classes));
    d.features.col(i) += means.col(d.labels[i]);
  }
  return d;
}

constexpr std::int64_t kMaxSamples = std::int64_t{1} << 31;
constexpr std::int64_t kMaxDim = std::int64_t{1} << 24;

class SyntheticRegressionSource final : public DataSource {
 public:
  explicit SyntheticRegressionSource(const Config& c) {
    spec_.train_samples = static_cast<std::size_t>(c.get_int("train_samples", 10000, 1, kMaxSamples));
    spec_.test_samples = static_cast<std::size_t>(c.get_int("test_samples", 2000, 1, kMaxSamples));
    spec_.dim = static_cast<std::size_t>(c.get_int("dim", 100, 1, kMaxDim));
    spec_.noise = c.get_double("noise", 0.1, 0.0, 1e6);
    if (c.get_choice("features", "gaussian", {"gaussian", "lognormal"}) == "lognormal")
      spec_.lognormal_sigma = c.get_double("sigma", 1.0, 0.01, 4.0);
  }
  DataSplit load(std::uint64_t seed) const override { return make_synthetic_regression(spec_, seed).data; }

 private:
  SyntheticRegressionSpec spec_;
};

class SyntheticClassificationSource final : public DataSource {
 public:
  explicit SyntheticClassificationSource(const Config& c) {
    spec_.classes = static_cast<std::size_t>(c.get_int("classes", 10, 2, 100000));
    spec_.dim = static_cast<std::size_t>(c.get_int("dim", 20, 1, kMaxDim));
    spec_.train_samples = static_cast<std::size_t>(c.get_int("train_samples", 10000, 1, kMaxSamples));
    spec_.test_samples = static_cast<std::size_t>(c.get_int("test_samples", 2000, 1, kMaxSamples));
    spec_.separation = c.get_double("separation", 3.0, 0.0, 1e6);
  }
  DataSplit load(std::uint64_t seed) const override { return make_synthetic_classification(spec_, seed).data; }

 private:
  SyntheticClassificationSpec spec_;
};

FEDSIM_REGISTER(
    DataSourceRegistry, "synthetic_regression",
    [](const Config& c) -> std::unique_ptr<DataSource> { return std::make_unique<SyntheticRegressionSource>(c); },
    "Gaussian or log-normal features, y = w*^T a + noise (train_samples, test_samples, dim, noise, features, sigma)");
FEDSIM_REGISTER(
    DataSourceRegistry, "synthetic_classification",
    [](const Config& c) -> std::unique_ptr<DataSource> {
      return std::make_unique<SyntheticClassificationSource>(c);
    },
    "Gaussian class blobs (classes, dim, train_samples, test_samples, separation)");

}  // namespace

SyntheticRegression make_synthetic_regression(const SyntheticRegressionSpec& spec, std::uint64_t seed) {
  SyntheticRegression out;
  Rng truth = Rng::derive(seed, Stream::kSynthetic, {kGroundTruth});
  arma::fmat w(spec.dim, 1);
  fill_normal(w, truth, 1.0 / std::sqrt(static_cast<double>(spec.dim)));
  out.true_model = w.col(0);
  out.data.train = regression_part(spec, out.true_model, spec.train_samples,
                                   Rng::derive(seed, Stream::kSynthetic, {kTrainPart}), "synthetic_regression/train");
  out.data.test = regression_part(spec, out.true_model, spec.test_samples,
                                  Rng::derive(seed, Stream::kSynthetic, {kTestPart}), "synthetic_regression/test");
  return out;
}

SyntheticClassification make_synthetic_classification(const SyntheticClassificationSpec& spec, std::uint64_t seed) {
  SyntheticClassification out;
  Rng truth = Rng::derive(seed, Stream::kSynthetic, {kGroundTruth});
  out.class_means.set_size(spec.dim, spec.classes);
  fill_normal(out.class_means, truth, spec.separation / std::sqrt(static_cast<double>(spec.dim)));
  out.data.train = classification_part(spec, out.class_means, spec.train_samples,
                                       Rng::derive(seed, Stream::kSynthetic, {kTrainPart}),
                                       "synthetic_classification/train");
  out.data.test = classification_part(spec, out.class_means, spec.test_samples,
                                      Rng::derive(seed, Stream::kSynthetic, {kTestPart}),
                                      "synthetic_classification/test");
  return out;
}

}  // namespace fedsim
