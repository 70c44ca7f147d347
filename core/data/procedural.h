// Procedural data for large populations (issue 11): each client's samples
// are generated from (seed, client) when the client is sampled, and nothing
// is stored, so 10^8 clients need no 10^8-client data set
// (DataSource::procedural).
//
// Data source "procedural_classification": the Gaussian class blobs of
// synthetic_classification (the same class means for the same seed and
// settings) with per-client heterogeneity:
//   label skew:    client c has a home class h_c uniform over the classes; a
//                  sample's label is h_c with probability label_skew, else
//                  uniform over the classes;
//   feature shift: client c adds delta_c ~ N(0, feature_shift^2 / dim I_dim)
//                  (so ||delta_c|| is about feature_shift) to all its features;
//   features:      mu_label + delta_c + N(0, I_dim).
// The test set is the population's average client: uniform labels, no shift.
// Settings: classes (default 10, in [2, 100000]), dim (20), samples_per_client
// (32, in [1, 10^6]), test_samples (2000), separation (3.0), label_skew (0.5,
// in [0, 1]), feature_shift (0.5, >= 0).
//
// Data source "procedural_regression": ZipML's dense synthetic regression
// (Zhang et al. 2017; the w* of synthetic_regression for the same seed and
// dim) with a per-client feature shift: features a ~ N(delta_c, I_dim),
// delta_c as above, targets y = w*^T a + noise N(0, 1). The test set has no
// shift. Settings: dim (100), samples_per_client (32), test_samples (2000),
// noise (0.1, >= 0), feature_shift (0.5).
//
// Randomness: Rng::derive(seed, Stream::kSynthetic, {part}) with part 0 for
// the ground truth and 2 for the test set (as in core/data/synthetic.h), and
// {kClientPart, c} for client c's home class and shift, {kSamplesPart, c} for
// its samples, drawn one sample after the other: a client's first m samples
// are the same whatever count >= m is asked for (data_weight keeps a prefix).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/data/dataset.h"

namespace fedsim {

struct ProceduralSpec {
  bool classification = true;
  std::size_t classes = 10;   // classification only
  std::size_t dim = 20;
  std::size_t samples_per_client = 32;
  std::size_t test_samples = 2000;
  double separation = 3.0;     // classification: expected norm of a class mean
  double label_skew = 0.5;     // classification: probability of the client's home class
  double noise = 0.1;          // regression: target noise standard deviation
  double feature_shift = 0.5;  // expected norm of a client's feature shift
};

// The test set (and, with train empty but dim x 0 features, the shape).
DataSplit procedural_split(const ProceduralSpec& spec, std::uint64_t seed);
// Client `client`'s first `count` samples.
Dataset procedural_client_samples(const ProceduralSpec& spec, std::uint64_t seed, std::uint32_t client,
                                  std::size_t count);

}  // namespace fedsim
