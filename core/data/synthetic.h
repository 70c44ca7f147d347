// Generated data sets: fast, dependency-free, with a known ground truth.
//
// Data source "synthetic_regression" (ZipML's dense synthetic regression,
// Zhang et al. 2017): features a ~ N(0, I_dim), a true model
// w* ~ N(0, I_dim / dim) (so that Var(w*^T a) is about 1), targets
// y = w*^T a + noise * N(0, 1). Settings: train_samples (default 10000),
// test_samples (2000), dim (100), noise (standard deviation, 0.1).
//
// Data source "synthetic_classification": Gaussian class blobs. Class means
// mu_k ~ N(0, separation^2 / dim * I_dim) (so ||mu_k|| is about `separation`),
// labels uniform over the classes, features mu_label + N(0, I_dim).
// Settings: classes (default 10), dim (20), train_samples (10000),
// test_samples (2000), separation (3.0).
//
// Randomness: Rng::derive(seed, Stream::kSynthetic, {part}) with part 0 for
// the ground truth (w* or the class means), 1 for the training set, 2 for the
// test set; so changing a sample count does not change the ground truth or
// the other set.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/data/dataset.h"

namespace fedsim {

struct SyntheticRegressionSpec {
  std::size_t train_samples = 10000;
  std::size_t test_samples = 2000;
  std::size_t dim = 100;
  double noise = 0.1;  // standard deviation of the additive target noise
  // Features: standard normal, or log-normal exp(sigma N(0, 1)) when
  // lognormal_sigma > 0 (skewed, all positive: where ZipML's data-optimal
  // markers beat uniform levels).
  double lognormal_sigma = 0.0;
};

struct SyntheticRegression {
  DataSplit data;
  arma::fvec true_model;  // w*
};

SyntheticRegression make_synthetic_regression(const SyntheticRegressionSpec& spec, std::uint64_t seed);

struct SyntheticClassificationSpec {
  std::size_t classes = 10;
  std::size_t dim = 20;
  std::size_t train_samples = 10000;
  std::size_t test_samples = 2000;
  double separation = 3.0;  // expected norm of a class mean, in units of the within-class std
};

struct SyntheticClassification {
  DataSplit data;
  arma::fmat class_means;  // dim x classes
};

SyntheticClassification make_synthetic_classification(const SyntheticClassificationSpec& spec, std::uint64_t seed);

}  // namespace fedsim
