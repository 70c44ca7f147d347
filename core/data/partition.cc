#include "core/data/partition.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <memory>
#include <queue>
#include <set>
#include <string>
#include <utility>

#include "core/base/errors.h"

namespace fedsim {
namespace {

void shuffle(std::vector<std::uint32_t>& v, Rng& rng) {
  for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
}

std::vector<std::uint32_t> all_indices(const Dataset& train) {
  std::vector<std::uint32_t> idx(train.size());
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<std::uint32_t>(i);
  return idx;
}

void require(bool ok, const std::string& scheme, const std::string& what) {
  if (!ok) throw InputError("partition '" + scheme + "': " + what);
}

void require_clients(const Dataset& train, std::size_t num_clients, std::size_t samples_needed,
                     const std::string& scheme, const std::string& why) {
  require(num_clients > 0, scheme, "needs at least one client");
  require(train.size() >= samples_needed, scheme,
          why + " needs at least " + std::to_string(samples_needed) + " training samples, the training set has " +
              std::to_string(train.size()));
}

void require_classification(const Dataset& train, const std::string& scheme) {
  require(train.is_classification() && train.labels.size() == train.size(), scheme,
          "needs a classification data set (it splits by label); '" + train.name + "' has no labels");
}

// Sample indices of each class, each list shuffled.
std::vector<std::vector<std::uint32_t>> shuffled_by_class(const Dataset& train, Rng& rng) {
  std::vector<std::vector<std::uint32_t>> by_class(train.num_classes);
  for (std::size_t i = 0; i < train.size(); ++i) {
    assert(train.labels[i] < train.num_classes);
    by_class[train.labels[i]].push_back(static_cast<std::uint32_t>(i));
  }
  for (auto& c : by_class) shuffle(c, rng);
  return by_class;
}

// Cuts `order` into `pieces` consecutive runs whose sizes differ by at most one.
std::vector<IndexView> cut_even(const std::vector<std::uint32_t>& order, std::size_t pieces) {
  std::vector<IndexView> out(pieces);
  const std::size_t n = order.size();
  for (std::size_t p = 0; p < pieces; ++p) {
    const std::size_t begin = p * n / pieces;
    const std::size_t end = (p + 1) * n / pieces;
    out[p].assign(order.begin() + static_cast<std::ptrdiff_t>(begin), order.begin() + static_cast<std::ptrdiff_t>(end));
  }
  return out;
}

// Rounds the cumulative sums of `weights` (normalised to `total`), so the
// parts are non-negative and sum to `total` exactly.
std::vector<std::size_t> apportion(const std::vector<double>& weights, std::size_t total) {
  double sum = 0;
  for (double w : weights) sum += w;
  std::vector<std::size_t> parts(weights.size(), 0);
  double acc = 0;
  std::size_t previous = 0;
  for (std::size_t j = 0; j < weights.size(); ++j) {
    acc += weights[j];
    std::size_t boundary = j + 1 == weights.size()
                               ? total
                               : static_cast<std::size_t>(std::floor(acc / sum * static_cast<double>(total) + 0.5));
    boundary = std::clamp(boundary, previous, total);
    parts[j] = boundary - previous;
    previous = boundary;
  }
  return parts;
}

}  // namespace

std::vector<IndexView> IidPartitioner::split(const Dataset& train, std::size_t num_clients, Rng& rng) const {
  require_clients(train, num_clients, num_clients, "iid", std::to_string(num_clients) + " clients");
  std::vector<std::uint32_t> order = all_indices(train);
  shuffle(order, rng);
  return cut_even(order, num_clients);
}

std::vector<IndexView> DirichletPartitioner::split(const Dataset& train, std::size_t num_clients, Rng& rng) const {
  require_classification(train, "dirichlet");
  require_clients(train, num_clients, num_clients * min_samples_, "dirichlet",
                  std::to_string(num_clients) + " clients x min_samples " + std::to_string(min_samples_));
  std::vector<IndexView> views(num_clients);
  std::vector<double> proportions(num_clients);
  for (const auto& members : shuffled_by_class(train, rng)) {
    if (members.empty()) continue;
    double sum = 0;
    for (auto& p : proportions) sum += (p = rng.gamma(alpha_));
    // For tiny alpha every Gamma draw can underflow to 0: the limit of
    // Dir(alpha) as alpha -> 0 puts all mass on one uniformly chosen client.
    if (!(sum > 0) || !std::isfinite(sum)) {
      std::fill(proportions.begin(), proportions.end(), 0.0);
      proportions[rng.below(num_clients)] = 1.0;
    }
    const std::vector<std::size_t> counts = apportion(proportions, members.size());
    std::size_t next = 0;
    for (std::size_t j = 0; j < num_clients; ++j)
      for (std::size_t k = 0; k < counts[j]; ++k) views[j].push_back(members[next++]);
  }

  // Fix-up (see the header): the needy take from the currently largest client.
  // Ordered by size, then by reversed id, so *rbegin() is the largest client
  // with the lowest id.
  std::set<std::pair<std::size_t, std::size_t>> by_size;
  for (std::size_t j = 0; j < num_clients; ++j) by_size.emplace(views[j].size(), num_clients - 1 - j);
  for (std::size_t j = 0; j < num_clients; ++j) {
    while (views[j].size() < min_samples_) {
      const std::size_t donor = num_clients - 1 - by_size.rbegin()->second;
      assert(donor != j && views[donor].size() > min_samples_);
      by_size.erase({views[donor].size(), num_clients - 1 - donor});
      by_size.erase({views[j].size(), num_clients - 1 - j});
      IndexView& from = views[donor];
      std::swap(from[rng.below(from.size())], from.back());
      views[j].push_back(from.back());
      from.pop_back();
      by_size.emplace(from.size(), num_clients - 1 - donor);
      by_size.emplace(views[j].size(), num_clients - 1 - j);
    }
  }
  for (auto& v : views) shuffle(v, rng);
  return views;
}

std::vector<IndexView> ShardsPartitioner::split(const Dataset& train, std::size_t num_clients, Rng& rng) const {
  require_classification(train, "shards");
  const std::size_t k = shards_per_client_;
  const std::size_t num_shards = num_clients * k;
  require_clients(train, num_clients, num_shards, "shards",
                  std::to_string(num_clients) + " clients x shards_per_client " + std::to_string(k));

  const std::vector<std::vector<std::uint32_t>> by_class = shuffled_by_class(train, rng);
  std::size_t nonempty = 0;
  for (const auto& c : by_class) nonempty += !c.empty();

  std::vector<IndexView> shards;
  shards.reserve(num_shards);
  if (num_shards >= nonempty) {
    // Highest averages, Adams: one shard per non-empty class, then each further
    // shard to the class with the most samples per shard (ties: lowest label).
    std::vector<std::size_t> shard_count(by_class.size(), 0);
    auto fewer_per_shard = [&](std::size_t a, std::size_t b) {
      const std::uint64_t lhs = std::uint64_t{by_class[a].size()} * shard_count[b];
      const std::uint64_t rhs = std::uint64_t{by_class[b].size()} * shard_count[a];
      return lhs != rhs ? lhs < rhs : a > b;
    };
    std::priority_queue<std::size_t, std::vector<std::size_t>, decltype(fewer_per_shard)> queue(fewer_per_shard);
    for (std::size_t c = 0; c < by_class.size(); ++c) {
      if (by_class[c].empty()) continue;
      shard_count[c] = 1;
      queue.push(c);
    }
    for (std::size_t given = nonempty; given < num_shards; ++given) {
      const std::size_t c = queue.top();
      queue.pop();
      ++shard_count[c];
      assert(shard_count[c] <= by_class[c].size());
      queue.push(c);
    }
    for (std::size_t c = 0; c < by_class.size(); ++c)
      for (auto& s : cut_even(by_class[c], shard_count[c])) shards.push_back(std::move(s));
  } else {
    std::vector<std::uint32_t> sorted;
    sorted.reserve(train.size());
    for (const auto& c : by_class) sorted.insert(sorted.end(), c.begin(), c.end());
    shards = cut_even(sorted, num_shards);
  }
  assert(shards.size() == num_shards);

  std::vector<std::uint32_t> deal(num_shards);
  for (std::size_t s = 0; s < num_shards; ++s) deal[s] = static_cast<std::uint32_t>(s);
  shuffle(deal, rng);
  std::vector<IndexView> views(num_clients);
  for (std::size_t j = 0; j < num_clients; ++j) {
    for (std::size_t s = 0; s < k; ++s) {
      const IndexView& shard = shards[deal[j * k + s]];
      views[j].insert(views[j].end(), shard.begin(), shard.end());
    }
    shuffle(views[j], rng);
  }
  return views;
}

std::vector<IndexView> PowerLawPartitioner::split(const Dataset& train, std::size_t num_clients, Rng& rng) const {
  require_clients(train, num_clients, num_clients, "power_law", std::to_string(num_clients) + " clients");
  // Pareto(x_min = 1, tail index a): x = u^(-1/a), u in (0, 1]. Drawn as
  // logarithms and scaled by the largest, so a small exponent cannot overflow.
  std::vector<double> weights(num_clients);
  double largest = 0;
  for (auto& w : weights) {
    w = -std::log(1.0 - rng.uniform()) / exponent_;
    largest = std::max(largest, w);
  }
  for (auto& w : weights) w = std::exp(w - largest);
  const std::vector<std::size_t> extra = apportion(weights, train.size() - num_clients);

  std::vector<std::uint32_t> order = all_indices(train);
  shuffle(order, rng);
  std::vector<IndexView> views(num_clients);
  std::size_t next = 0;
  for (std::size_t j = 0; j < num_clients; ++j) {
    const std::size_t size = 1 + extra[j];
    views[j].assign(order.begin() + static_cast<std::ptrdiff_t>(next),
                    order.begin() + static_cast<std::ptrdiff_t>(next + size));
    next += size;
  }
  return views;
}

namespace {

constexpr std::int64_t kMaxCount = std::int64_t{1} << 32;

FEDSIM_REGISTER(
    PartitionerRegistry, "iid",
    [](const Config&) -> std::unique_ptr<Partitioner> { return std::make_unique<IidPartitioner>(); },
    "shuffle, equal sizes (+-1)");
FEDSIM_REGISTER(
    PartitionerRegistry, "dirichlet",
    [](const Config& c) -> std::unique_ptr<Partitioner> {
      const double alpha = c.get_double("alpha", 0.5, 1e-6, 1e6);
      const auto min_samples = static_cast<std::size_t>(c.get_int("min_samples", 1, 1, kMaxCount));
      return std::make_unique<DirichletPartitioner>(alpha, min_samples);
    },
    "label skew: per class, client proportions ~ Dir(alpha) (alpha, min_samples)");
FEDSIM_REGISTER(
    PartitionerRegistry, "shards",
    [](const Config& c) -> std::unique_ptr<Partitioner> {
      return std::make_unique<ShardsPartitioner>(
          static_cast<std::size_t>(c.get_int("shards_per_client", 2, 1, 1 << 20)));
    },
    "sort by label, deal shards_per_client label shards to each client (McMahan et al.)");
FEDSIM_REGISTER(
    PartitionerRegistry, "power_law",
    [](const Config& c) -> std::unique_ptr<Partitioner> {
      return std::make_unique<PowerLawPartitioner>(c.get_double("exponent", 1.5, 1e-3, 1e3));
    },
    "unbalanced sizes ~ Pareto(exponent), IID content");

}  // namespace
}  // namespace fedsim
