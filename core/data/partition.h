// How a training set is split across clients (the scenario's `partition:`
// map, `scheme:` names one of the partitioners below).
//
// Common guarantees: views are disjoint, hold valid indices, together cover
// the whole training set (no scheme drops a remainder), and every client gets
// at least one sample; a split with fewer samples than clients (or than the
// scheme needs) is an InputError. Within a view the order is random. All
// draws come from the Rng passed to split(), so a split is a pure function of
// (data set, number of clients, Rng state).
#pragma once

#include <cstddef>
#include <vector>

#include "core/data/data_source.h"

namespace fedsim {

// "iid": shuffle, then cut into num_clients consecutive pieces whose sizes
// differ by at most one.
class IidPartitioner final : public Partitioner {
 public:
  std::vector<IndexView> split(const Dataset& train, std::size_t num_clients, Rng& rng) const override;
};

// "dirichlet" (label skew, Hsu, Qi, Brown 2019): for each class, proportions
// across the clients ~ Dir(alpha, ..., alpha); the class's shuffled samples
// are cut at the cumulative proportions. Small alpha: each client sees few
// classes; large alpha: close to IID. Settings: alpha > 0 (default 0.5),
// min_samples >= 1 (default 1).
// Fix-up for min_samples: while some client holds fewer than min_samples, it
// takes one random sample from the client currently holding the most (ties:
// lowest client id). This moves at most num_clients * min_samples samples and
// leaves the large clients' label mix almost unchanged. Needs a
// classification set and num_clients * min_samples <= samples.
class DirichletPartitioner final : public Partitioner {
 public:
  DirichletPartitioner(double alpha, std::size_t min_samples) : alpha_(alpha), min_samples_(min_samples) {}
  std::vector<IndexView> split(const Dataset& train, std::size_t num_clients, Rng& rng) const override;

 private:
  double alpha_;
  std::size_t min_samples_;
};

// "shards" (pathological non-IID, McMahan et al. 2017): sort by label, cut
// into num_clients * shards_per_client shards, deal shards_per_client random
// shards to each client. Setting: shards_per_client >= 1 (default 2).
// Shards never straddle a label when there are at least as many shards as
// non-empty classes: each class is cut separately into near-equal shards, the
// number of shards per class chosen by the highest-averages rule with divisor
// s (Adams; not D'Hondt's s + 1): every class gets at least one, then each
// next shard goes to the class with the largest samples-per-shard, which
// minimises the largest shard. Then a client holds at most
// shards_per_client labels; with Fashion-MNIST, 100 clients and k = 2 this is
// exactly McMahan's 200 shards of 300. With fewer shards than classes, the
// label-sorted order is cut into near-equal consecutive shards instead.
// Needs a classification set and num_clients * shards_per_client <= samples.
class ShardsPartitioner final : public Partitioner {
 public:
  explicit ShardsPartitioner(std::size_t shards_per_client) : shards_per_client_(shards_per_client) {}
  std::vector<IndexView> split(const Dataset& train, std::size_t num_clients, Rng& rng) const override;

 private:
  std::size_t shards_per_client_;
};

// "power_law" (quantity skew): client sizes are unbalanced, their content
// IID. Each client draws a weight from a Pareto law with tail index
// `exponent` (P(weight > x) = x^-exponent, x >= 1; smaller = more unbalanced;
// default 1.5). Client i gets one sample plus its weight's share of the
// remaining samples - num_clients, rounded at the cumulative sums (so sizes
// sum to the set size exactly), from a shuffled order. Works for regression
// sets too.
class PowerLawPartitioner final : public Partitioner {
 public:
  explicit PowerLawPartitioner(double exponent) : exponent_(exponent) {}
  std::vector<IndexView> split(const Dataset& train, std::size_t num_clients, Rng& rng) const override;

 private:
  double exponent_;
};

}  // namespace fedsim
