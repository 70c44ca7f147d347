#include "core/data/procedural.h"

#include <cmath>
#include <memory>

#include "core/base/rng.h"
#include "core/data/data_source.h"

namespace fedsim {
namespace {

// Parts of Stream::kSynthetic; 0 and 2 as in core/data/synthetic.cc.
enum Part : std::uint64_t { kGroundTruth = 0, kTestPart = 2, kClientPart = 3, kSamplesPart = 4 };

void fill_normal(float* p, std::size_t n, Rng& rng, double stddev) {
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<float>(stddev * rng.normal());
}

// Class means (classification, dim x classes) or w* (regression, dim x 1),
// drawn as synthetic.cc draws them.
arma::fmat ground_truth(const ProceduralSpec& spec, std::uint64_t seed) {
  Rng truth = Rng::derive(seed, Stream::kSynthetic, {kGroundTruth});
  const double dim = static_cast<double>(spec.dim);
  arma::fmat g(spec.dim, spec.classification ? spec.classes : 1);
  fill_normal(g.memptr(), g.n_elem, truth, (spec.classification ? spec.separation : 1.0) / std::sqrt(dim));
  return g;
}

// n samples; shift (dim, may be empty: none); home < classes: the label skew's class.
Dataset generate(const ProceduralSpec& spec, const arma::fmat& truth, std::size_t n, const arma::fvec& shift,
                 std::size_t home, double skew, Rng rng, const char* name) {
  Dataset d;
  d.name = name;
  d.features.set_size(spec.dim, n);
  if (spec.classification) {
    d.num_classes = static_cast<std::uint32_t>(spec.classes);
    d.labels.resize(n);
  } else {
    d.targets.set_size(n);
  }
  for (std::size_t i = 0; i < n; ++i) {
    float* x = d.features.colptr(i);
    if (spec.classification) {
      const bool at_home = rng.bernoulli(skew);
      const std::size_t label = at_home ? home : static_cast<std::size_t>(rng.below(spec.classes));
      d.labels[i] = static_cast<std::uint32_t>(label);
      fill_normal(x, spec.dim, rng, 1.0);
      const float* mu = truth.colptr(label);
      for (std::size_t j = 0; j < spec.dim; ++j) x[j] += mu[j];
    } else {
      fill_normal(x, spec.dim, rng, 1.0);
    }
    if (!shift.is_empty())
      for (std::size_t j = 0; j < spec.dim; ++j) x[j] += shift[j];
    if (!spec.classification) {
      double y = 0.0;
      const float* w = truth.colptr(0);
      for (std::size_t j = 0; j < spec.dim; ++j) y += static_cast<double>(w[j]) * x[j];
      d.targets[i] = static_cast<float>(y + spec.noise * rng.normal());
    }
  }
  return d;
}

constexpr std::int64_t kMaxSamples = std::int64_t{1} << 31;
constexpr std::int64_t kMaxDim = std::int64_t{1} << 24;
constexpr std::int64_t kMaxSamplesPerClient = 1'000'000;

class ProceduralSource final : public DataSource {
 public:
  ProceduralSource(const Config& c, bool classification) {
    spec_.classification = classification;
    if (classification) {
      spec_.classes = static_cast<std::size_t>(c.get_int("classes", 10, 2, 100000));
      spec_.separation = c.get_double("separation", 3.0, 0.0, 1e6);
      spec_.label_skew = c.get_double("label_skew", 0.5, 0.0, 1.0);
    } else {
      spec_.noise = c.get_double("noise", 0.1, 0.0, 1e6);
    }
    spec_.dim = static_cast<std::size_t>(c.get_int("dim", classification ? 20 : 100, 1, kMaxDim));
    spec_.samples_per_client =
        static_cast<std::size_t>(c.get_int("samples_per_client", 32, 1, kMaxSamplesPerClient));
    spec_.test_samples = static_cast<std::size_t>(c.get_int("test_samples", 2000, 1, kMaxSamples));
    spec_.feature_shift = c.get_double("feature_shift", 0.5, 0.0, 1e6);
  }
  DataSplit load(std::uint64_t seed) const override { return procedural_split(spec_, seed); }
  bool procedural() const override { return true; }
  std::size_t samples_per_client() const override { return spec_.samples_per_client; }
  Dataset client_samples(std::uint64_t seed, std::uint32_t client, std::size_t count) const override {
    return procedural_client_samples(spec_, seed, client, count);
  }

 private:
  ProceduralSpec spec_;
};

FEDSIM_REGISTER(
    DataSourceRegistry, "procedural_classification",
    [](const Config& c) -> std::unique_ptr<DataSource> { return std::make_unique<ProceduralSource>(c, true); },
    "per-client Gaussian blobs generated when sampled, nothing stored (classes, dim, samples_per_client, "
    "test_samples, separation, label_skew, feature_shift)");
FEDSIM_REGISTER(
    DataSourceRegistry, "procedural_regression",
    [](const Config& c) -> std::unique_ptr<DataSource> { return std::make_unique<ProceduralSource>(c, false); },
    "per-client ZipML regression generated when sampled, nothing stored (dim, samples_per_client, test_samples, "
    "noise, feature_shift)");

}  // namespace

DataSplit procedural_split(const ProceduralSpec& spec, std::uint64_t seed) {
  DataSplit out;
  const arma::fmat truth = ground_truth(spec, seed);
  out.train.name = spec.classification ? "procedural_classification/train" : "procedural_regression/train";
  out.train.features.set_size(spec.dim, 0);
  out.train.num_classes = spec.classification ? static_cast<std::uint32_t>(spec.classes) : 0;
  out.test = generate(spec, truth, spec.test_samples, arma::fvec(), 0, 0.0,
                      Rng::derive(seed, Stream::kSynthetic, {kTestPart}),
                      spec.classification ? "procedural_classification/test" : "procedural_regression/test");
  return out;
}

Dataset procedural_client_samples(const ProceduralSpec& spec, std::uint64_t seed, std::uint32_t client,
                                  std::size_t count) {
  const arma::fmat truth = ground_truth(spec, seed);
  Rng who = Rng::derive(seed, Stream::kSynthetic, {kClientPart, client});
  const std::size_t home = spec.classification ? static_cast<std::size_t>(who.below(spec.classes)) : 0;
  arma::fvec shift(spec.dim);
  fill_normal(shift.memptr(), spec.dim, who, spec.feature_shift / std::sqrt(static_cast<double>(spec.dim)));
  return generate(spec, truth, count, shift, home, spec.label_skew,
                  Rng::derive(seed, Stream::kSynthetic, {kSamplesPart, client}),
                  spec.classification ? "procedural_classification/client" : "procedural_regression/client");
}

}  // namespace fedsim
