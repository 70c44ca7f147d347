// Data sources and partitions: each loader's documented format and errors,
// each partitioner's promised label and size statistics.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "core/base/config.h"
#include "core/data/data_source.h"
#include "core/base/errors.h"
#include "core/data/fashion_mnist.h"
#include "core/data/libsvm.h"
#include "core/data/partition.h"
#include "core/base/rng.h"
#include "core/data/synthetic.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;

// Runs `f`, expects an InputError whose message contains every one of `parts`.
void expect_input_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected an InputError";
  } catch (const InputError& e) {
    const std::string message = e.what();
    for (const auto& part : parts) EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
  }
}

// A scratch directory removed with the test.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            ("fedsim_data_test_" + std::to_string(::getpid()) + "_" + info->test_suite_name() + "_" + info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// ---------------------------------------------------------------------------
// Partitions

// A classification set with `class_sizes[c]` samples of class c, in random
// order. Partitioners read only labels and the sample count, so features are
// a single zero row.
Dataset labeled_set(const std::vector<std::size_t>& class_sizes, std::uint64_t seed = 1) {
  Dataset d;
  d.name = "labeled";
  d.num_classes = static_cast<std::uint32_t>(class_sizes.size());
  for (std::size_t c = 0; c < class_sizes.size(); ++c) d.labels.insert(d.labels.end(), class_sizes[c], c);
  Rng rng(seed);
  std::shuffle(d.labels.begin(), d.labels.end(), rng);
  d.features.zeros(1, d.labels.size());
  return d;
}

Dataset regression_set(std::size_t n) {
  Dataset d;
  d.name = "regression";
  d.features.zeros(1, n);
  d.targets.zeros(n);
  return d;
}

// The common guarantees of partition.h: valid indices, disjoint, covering, no
// empty client.
void expect_exact_cover(const std::vector<IndexView>& views, std::size_t num_clients, std::size_t samples) {
  ASSERT_EQ(views.size(), num_clients);
  std::vector<int> seen(samples, 0);
  for (std::size_t j = 0; j < views.size(); ++j) {
    EXPECT_GE(views[j].size(), 1u) << "client " << j << " is empty";
    for (std::uint32_t i : views[j]) {
      ASSERT_LT(i, samples) << "client " << j;
      ++seen[i];
    }
  }
  for (std::size_t i = 0; i < samples; ++i) ASSERT_EQ(seen[i], 1) << "sample " << i << " assigned " << seen[i] << " times";
}

std::vector<std::size_t> histogram(const Dataset& d, const IndexView& view) {
  std::vector<std::size_t> h(d.num_classes, 0);
  for (std::uint32_t i : view) ++h[d.labels[i]];
  return h;
}

// Pearson's statistic of a client's label counts against the global label
// distribution; for an IID draw of m samples it is about chi-square with
// (classes - 1) degrees of freedom.
double chi_square(const Dataset& d, const IndexView& view) {
  std::vector<std::size_t> global(d.num_classes, 0);
  for (std::uint32_t label : d.labels) ++global[label];
  const std::vector<std::size_t> local = histogram(d, view);
  double stat = 0;
  for (std::size_t c = 0; c < global.size(); ++c) {
    if (global[c] == 0) continue;
    const double expected = static_cast<double>(view.size()) * global[c] / static_cast<double>(d.size());
    stat += (local[c] - expected) * (local[c] - expected) / expected;
  }
  return stat;
}

double max_class_share(const Dataset& d, const IndexView& view) {
  const auto h = histogram(d, view);
  return static_cast<double>(*std::max_element(h.begin(), h.end())) / static_cast<double>(view.size());
}

std::size_t distinct_labels(const Dataset& d, const IndexView& view) {
  std::size_t n = 0;
  for (std::size_t count : histogram(d, view)) n += count > 0;
  return n;
}

std::vector<IndexView> split_with_seed(const Partitioner& p, const Dataset& d, std::size_t clients, std::uint64_t seed) {
  Rng rng = Rng::derive(seed, Stream::kPartition);
  return p.split(d, clients, rng);
}

std::unique_ptr<Partitioner> make_partitioner(const std::string& scheme, const std::string& yaml = "{}") {
  return PartitionerRegistry::instance().create("test", scheme, Config::parse_string(yaml.empty() ? "{}" : yaml));
}

const Dataset& ten_class_set() {
  static const Dataset d = labeled_set(std::vector<std::size_t>(10, 2000));
  return d;
}

TEST(IidPartition, EqualSizesAndExactCover) {
  for (std::size_t samples_extra : {0u, 3u, 97u}) {
    const Dataset odd = labeled_set({2000 + samples_extra, 1000, 500});
    const auto views = split_with_seed(IidPartitioner(), odd, 100, 5);
    expect_exact_cover(views, 100, odd.size());
    std::size_t lo = odd.size(), hi = 0;
    for (const auto& v : views) {
      lo = std::min(lo, v.size());
      hi = std::max(hi, v.size());
    }
    EXPECT_LE(hi - lo, 1u) << "samples " << odd.size();
  }
  // As many clients as samples: one each.
  const Dataset tiny = labeled_set({3, 4});
  expect_exact_cover(split_with_seed(IidPartitioner(), tiny, 7, 1), 7, 7);
}

TEST(IidPartition, LabelHistogramsMatchTheGlobalOne) {
  const Dataset& d = ten_class_set();
  const auto views = split_with_seed(IidPartitioner(), d, 100, 11);
  expect_exact_cover(views, 100, d.size());
  // chi-square(9): mean 9, P(> 40) ~ 5e-6 per client.
  double sum = 0, worst = 0;
  for (const auto& v : views) {
    const double stat = chi_square(d, v);
    sum += stat;
    worst = std::max(worst, stat);
  }
  EXPECT_LT(worst, 40.0);
  EXPECT_NEAR(sum / 100, 9.0, 2.0);
}

TEST(IidPartition, FewerSamplesThanClientsIsAnInputError) {
  const Dataset d = labeled_set({2, 2});
  expect_input_error([&] { split_with_seed(IidPartitioner(), d, 5, 1); }, {"iid", "5"});
  expect_input_error([&] { split_with_seed(IidPartitioner(), d, 0, 1); }, {"iid", "client"});
}

TEST(DirichletPartition, SmallAlphaIsSkewedLargeAlphaIsNearIid) {
  const Dataset& d = ten_class_set();
  const auto skewed = split_with_seed(DirichletPartitioner(0.1, 1), d, 100, 3);
  const auto near_iid = split_with_seed(DirichletPartitioner(1000, 1), d, 100, 3);
  expect_exact_cover(skewed, 100, d.size());
  expect_exact_cover(near_iid, 100, d.size());

  double skewed_share = 0, skewed_labels = 0;
  for (const auto& v : skewed) {
    skewed_share += max_class_share(d, v) / 100;
    // Labels making up 95% of the client's samples.
    auto h = histogram(d, v);
    std::sort(h.rbegin(), h.rend());
    std::size_t covered = 0, needed = 0;
    while (covered < 0.95 * v.size()) covered += h[needed++];
    skewed_labels += static_cast<double>(needed) / 100;
  }
  EXPECT_GT(skewed_share, 0.6);
  EXPECT_LT(skewed_labels, 4.0);

  double iid_share = 0, iid_chi = 0, worst_chi = 0;
  for (const auto& v : near_iid) {
    iid_share += max_class_share(d, v) / 100;
    const double stat = chi_square(d, v);
    iid_chi += stat / 100;
    worst_chi = std::max(worst_chi, stat);
    EXPECT_EQ(distinct_labels(d, v), 10u);
    // Dir(1000) proportions are within a few percent of 1/100.
    EXPECT_NEAR(static_cast<double>(v.size()), 200.0, 30.0);
  }
  EXPECT_LT(iid_share, 0.2);
  // At least as close to the global histogram as an IID split (chi-square(9),
  // mean 9). Cutting each class at nearly equal proportions even makes the
  // split close to stratified: the statistic is far below 9.
  EXPECT_LT(iid_chi, 9.0);
  EXPECT_LT(worst_chi, 40.0);
}

TEST(DirichletPartition, MaxClassShareDecreasesWithAlpha) {
  const Dataset& d = ten_class_set();
  double previous = 1.1;
  for (double alpha : {0.05, 0.2, 1.0, 5.0, 50.0, 1000.0}) {
    double share = 0;
    for (std::uint64_t seed = 1; seed <= 3; ++seed)
      for (const auto& v : split_with_seed(DirichletPartitioner(alpha, 1), d, 100, seed)) share += max_class_share(d, v);
    share /= 300;
    EXPECT_LT(share, previous) << "alpha " << alpha;
    previous = share;
  }
  EXPECT_GT(previous, 0.1);  // the floor: 10 equally frequent classes
}

TEST(DirichletPartition, MinSamplesHoldsEvenForTinyAlpha) {
  const Dataset& d = ten_class_set();
  for (double alpha : {1e-6, 0.01, 0.1}) {
    const auto views = split_with_seed(DirichletPartitioner(alpha, 50), d, 100, 9);
    expect_exact_cover(views, 100, d.size());
    for (const auto& v : views) EXPECT_GE(v.size(), 50u) << "alpha " << alpha;
  }
  // The tightest case: every client gets exactly min_samples.
  const auto exact = split_with_seed(DirichletPartitioner(0.1, 200), d, 100, 9);
  expect_exact_cover(exact, 100, d.size());
  for (const auto& v : exact) EXPECT_EQ(v.size(), 200u);
}

TEST(DirichletPartition, RejectsRegressionSetsAndTooFewSamples) {
  expect_input_error([] { split_with_seed(DirichletPartitioner(0.5, 1), regression_set(100), 10, 1); },
                     {"dirichlet", "classification"});
  expect_input_error([] { split_with_seed(DirichletPartitioner(0.5, 11), labeled_set({50, 50}), 10, 1); },
                     {"dirichlet", "110", "100"});
}

TEST(ShardsPartition, McMahanSplitGivesEachClientTwoLabelShards) {
  // Fashion-MNIST proportions, scaled down: 10 classes of 600, 100 clients,
  // 2 shards each -> 20 shards of 30 per class.
  const Dataset d = labeled_set(std::vector<std::size_t>(10, 600));
  const auto views = split_with_seed(ShardsPartitioner(2), d, 100, 4);
  expect_exact_cover(views, 100, d.size());
  std::size_t exactly_two = 0;
  for (const auto& v : views) {
    EXPECT_EQ(v.size(), 60u);
    const std::size_t labels = distinct_labels(d, v);
    EXPECT_LE(labels, 2u);
    exactly_two += labels == 2;
    for (std::size_t count : histogram(d, v)) EXPECT_EQ(count % 30, 0u) << "a shard straddles a label";
  }
  // Both shards of one class: probability 19/199 per client.
  EXPECT_GE(exactly_two, 80u);
}

TEST(ShardsPartition, UnevenClassesNeverStraddleALabel) {
  const Dataset d = labeled_set({1000, 500, 300, 100, 50, 30, 10, 5, 3, 2, 0});
  for (std::size_t k : {1u, 3u, 5u}) {
    const auto views = split_with_seed(ShardsPartitioner(k), d, 20, 8);
    expect_exact_cover(views, 20, d.size());
    for (const auto& v : views) EXPECT_LE(distinct_labels(d, v), k);
  }
}

TEST(ShardsPartition, ShardCountsMinimiseTheLargestShard) {
  // With one shard per client, the clients holding a class are its shards.
  // partition.h: every class gets one shard, then each next shard goes to the
  // class with the most samples per shard. That is the highest-averages rule
  // with divisor s (Adams), whose allocation minimises the largest
  // samples-per-shard; D'Hondt (divisor s + 1) would give class 0 eight
  // shards and leave class 1 at 500 / 3.
  const std::vector<std::size_t> sizes = {1000, 500, 300, 100, 50, 30, 10, 5, 3, 2};
  const std::size_t num_shards = 20;
  const Dataset d = labeled_set(sizes);
  const auto views = split_with_seed(ShardsPartitioner(1), d, num_shards, 3);
  expect_exact_cover(views, num_shards, d.size());
  std::vector<std::size_t> shards_of(sizes.size(), 0);
  for (const auto& v : views) {
    ASSERT_EQ(distinct_labels(d, v), 1u);
    ++shards_of[d.labels[v.front()]];
  }
  double largest = 0;
  for (std::size_t c = 0; c < sizes.size(); ++c) largest = std::max(largest, double(sizes[c]) / shards_of[c]);
  // The smallest achievable largest samples-per-shard: the least T = v / s
  // with sum_c ceil(v_c / T) <= num_shards.
  double best = 1e300;
  for (std::size_t v : sizes)
    for (std::size_t s = 1; s <= num_shards; ++s) {
      const double t = double(v) / s;
      std::size_t needed = 0;
      for (std::size_t w : sizes) needed += static_cast<std::size_t>(std::ceil(double(w) / t - 1e-9));
      if (needed <= num_shards) best = std::min(best, t);
    }
  EXPECT_DOUBLE_EQ(largest, best);
  EXPECT_EQ(shards_of, (std::vector<std::size_t>{7, 4, 2, 1, 1, 1, 1, 1, 1, 1}));
}

TEST(ShardsPartition, FewerShardsThanClassesCutsTheSortedOrder) {
  // 4 shards, 10 classes: near-equal consecutive runs of the label-sorted set,
  // so each client holds a contiguous range of labels.
  const Dataset d = labeled_set(std::vector<std::size_t>(10, 101));
  const auto views = split_with_seed(ShardsPartitioner(1), d, 4, 6);
  expect_exact_cover(views, 4, d.size());
  std::size_t labels_held = 0;
  for (const auto& v : views) {
    EXPECT_NEAR(static_cast<double>(v.size()), 1010.0 / 4, 0.5);
    const auto h = histogram(d, v);
    const auto first = std::find_if(h.begin(), h.end(), [](std::size_t n) { return n > 0; });
    const auto last = std::find_if(h.rbegin(), h.rend(), [](std::size_t n) { return n > 0; }).base();
    EXPECT_TRUE(std::all_of(first, last, [](std::size_t n) { return n > 0; })) << "labels not contiguous";
    labels_held += static_cast<std::size_t>(last - first);
  }
  // Runs only share the label at their boundary.
  EXPECT_LE(labels_held, 10u + 3u);
}

TEST(ShardsPartition, RejectsRegressionSetsAndTooFewSamples) {
  expect_input_error([] { split_with_seed(ShardsPartitioner(2), regression_set(100), 10, 1); },
                     {"shards", "classification"});
  expect_input_error([] { split_with_seed(ShardsPartitioner(3), labeled_set({10, 10}), 10, 1); },
                     {"shards", "30", "20"});
}

TEST(PowerLawPartition, SizesFollowTheParetoTail) {
  const Dataset d = labeled_set(std::vector<std::size_t>(10, 20000));
  for (double exponent : {1.5, 3.0}) {
    // Pareto tail index by maximum likelihood, pooled over splits: each
    // split's weights are known up to a scale, so measure them against that
    // split's smallest (x_min = the minimum, n - 1 effective draws).
    double log_sum = 0, draws = 0, ratio_sum = 0;
    for (std::uint64_t seed = 1; seed <= 10; ++seed) {
      const auto views = split_with_seed(PowerLawPartitioner(exponent), d, 100, seed);
      expect_exact_cover(views, 100, d.size());
      std::vector<std::size_t> sizes;
      for (const auto& v : views) sizes.push_back(v.size());
      std::sort(sizes.begin(), sizes.end());
      EXPECT_GE(sizes.front(), 1u);  // the documented minimum
      // Client size = 1 + its weight's share of the rest.
      for (std::size_t size : sizes) log_sum += std::log(static_cast<double>(size - 1) / (sizes.front() - 1));
      draws += static_cast<double>(sizes.size() - 1);
      ratio_sum += static_cast<double>(sizes.back()) / static_cast<double>(sizes[50]);
    }
    // 990 effective draws: standard error exponent / sqrt(990).
    EXPECT_NEAR(draws / log_sum, exponent, 0.15 * exponent);
    // Largest / median of 100 Pareto(a) draws: about (100 / 2)^(1/a)
    // (13.6 for 1.5, 3.7 for 3).
    EXPECT_GT(ratio_sum / 10, exponent < 2 ? 7.0 : 2.5);
  }
}

TEST(PowerLawPartition, ContentIsIidAndRegressionSetsWork) {
  const Dataset& d = ten_class_set();
  const auto views = split_with_seed(PowerLawPartitioner(1.5), d, 50, 2);
  for (const auto& v : views)
    if (v.size() >= 200) {
      EXPECT_LT(chi_square(d, v), 40.0);
    }
  const Dataset r = regression_set(1000);
  expect_exact_cover(split_with_seed(PowerLawPartitioner(0.5), r, 1000, 2), 1000, 1000);
  expect_exact_cover(split_with_seed(PowerLawPartitioner(0.5), r, 30, 2), 30, 1000);
}

TEST(Partition, SameSeedSameSplitDifferentSeedDifferentSplit) {
  const Dataset& d = ten_class_set();
  for (const char* scheme : {"iid", "dirichlet", "shards", "power_law"}) {
    const auto p = make_partitioner(scheme);
    const auto a = split_with_seed(*p, d, 50, 21);
    const auto b = split_with_seed(*p, d, 50, 21);
    const auto c = split_with_seed(*p, d, 50, 22);
    EXPECT_EQ(a, b) << scheme;
    EXPECT_NE(a, c) << scheme;
  }
}

TEST(Partition, RegistryReadsSettingsAndReportsBadValues) {
  const Dataset& d = ten_class_set();
  const auto shards = make_partitioner("shards", "shards_per_client: 1\n");
  for (const auto& v : split_with_seed(*shards, d, 100, 1)) EXPECT_EQ(distinct_labels(d, v), 1u);
  const auto dirichlet = make_partitioner("dirichlet", "alpha: 0.01\nmin_samples: 150\n");
  for (const auto& v : split_with_seed(*dirichlet, d, 100, 1)) EXPECT_GE(v.size(), 150u);

  expect_input_error([] { make_partitioner("dirichlet", "min_samples: 2\nalpha: 0\n"); },
                     {"<string>:2: alpha", "expected a number", "found '0'"});
  expect_input_error([] { make_partitioner("shards", "shards_per_client: two\n"); },
                     {"<string>:1: shards_per_client", "expected an integer", "found 'two'"});
  expect_input_error([] { make_partitioner("power_law", "exponent: -1\n"); }, {"<string>:1: exponent"});
  expect_input_error([] { make_partitioner("stratified"); }, {"unknown name 'stratified'", "dirichlet", "iid"});
}

// ---------------------------------------------------------------------------
// Fashion-MNIST

// The real files, loaded once (skips when the package is not installed).
class FashionMnist : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(kFashionMnistDefaultPath)) return;
    const auto start = std::chrono::steady_clock::now();
    data_ = new DataSplit(load_fashion_mnist(kFashionMnistDefaultPath));
    load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << "[ timing   ] Fashion-MNIST full load: " << load_seconds_ << " s\n";
  }
  static void TearDownTestSuite() {
    delete data_;
    data_ = nullptr;
  }
  void SetUp() override {
    if (data_ == nullptr) GTEST_SKIP() << kFashionMnistDefaultPath << " absent (package dataset-fashion-mnist)";
  }

  static DataSplit* data_;
  static double load_seconds_;
};
DataSplit* FashionMnist::data_ = nullptr;
double FashionMnist::load_seconds_ = 0;

TEST_F(FashionMnist, ShapesAndClassCounts) {
  const Dataset& train = data_->train;
  const Dataset& test = data_->test;
  EXPECT_EQ(train.size(), 60000u);
  EXPECT_EQ(test.size(), 10000u);
  EXPECT_EQ(train.dim(), 784u);
  EXPECT_EQ(test.dim(), 784u);
  EXPECT_EQ(train.num_classes, 10u);
  EXPECT_EQ(test.num_classes, 10u);
  ASSERT_EQ(train.labels.size(), 60000u);
  ASSERT_EQ(test.labels.size(), 10000u);
  std::vector<std::size_t> train_counts(10), test_counts(10);
  for (auto l : train.labels) {
    ASSERT_LT(l, 10u);
    ++train_counts[l];
  }
  for (auto l : test.labels) {
    ASSERT_LT(l, 10u);
    ++test_counts[l];
  }
  for (int c = 0; c < 10; ++c) {
    EXPECT_EQ(train_counts[c], 6000u) << "class " << c;
    EXPECT_EQ(test_counts[c], 1000u) << "class " << c;
  }
}

TEST_F(FashionMnist, PixelsAreScaledToTheUnitInterval) {
  for (const Dataset* d : {&data_->train, &data_->test}) {
    EXPECT_EQ(d->features.min(), 0.0f);
    EXPECT_EQ(d->features.max(), 1.0f);
    // Every value is some byte / 255.
    std::size_t off_grid = 0;
    for (float v : d->features) off_grid += std::fabs(v * 255.0f - std::round(v * 255.0f)) > 1e-3f;
    EXPECT_EQ(off_grid, 0u);
    // Mean pixel of Fashion-MNIST is about 0.286.
    EXPECT_NEAR(arma::mean(arma::vectorise(d->features)), 0.286, 0.01);
  }
}

TEST_F(FashionMnist, LoadIsFastAndPrefixLimitsMatch) {
  // Reported, not asserted (timed assertions flake on shared machines).
  RecordProperty("load_seconds", std::to_string(load_seconds_));
  const auto source = DataSourceRegistry::instance().create(
      "test", "fashion_mnist", Config::parse_string("train_samples: 1000\ntest_samples: 10\n"));
  const DataSplit small = source->load(0);
  ASSERT_EQ(small.train.size(), 1000u);
  ASSERT_EQ(small.test.size(), 10u);
  EXPECT_TRUE(arma::approx_equal(small.train.features, data_->train.features.cols(0, 999), "absdiff", 0.0f));
  EXPECT_TRUE(std::equal(small.test.labels.begin(), small.test.labels.end(), data_->test.labels.begin()));
}

TEST(FashionMnistFiles, MissingDirectoryNamesThePathAndThePackage) {
  expect_input_error([] { load_fashion_mnist("/nonexistent/fmnist-dir"); },
                     {"/nonexistent/fmnist-dir/train-images-idx3-ubyte.gz", "dataset-fashion-mnist"});
}

// Writes small gzip'd idx files; each test corrupts one aspect.
struct IdxSpec {
  std::uint32_t image_magic = 0x803, label_magic = 0x801;
  std::uint32_t image_count = 20, label_count = 20;
  std::uint32_t rows = 28, cols = 28;
  std::size_t images_written = 20, labels_written = 20;
  std::uint8_t bad_label = 0;  // nonzero: written as the last label
  std::size_t trailing_bytes = 0;
};

void put_u32(std::string& s, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>((v >> shift) & 0xff));
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  gzclose(f);
}

std::string image_bytes(const IdxSpec& s) {
  std::string b;
  put_u32(b, s.image_magic);
  put_u32(b, s.image_count);
  put_u32(b, s.rows);
  put_u32(b, s.cols);
  for (std::size_t i = 0; i < s.images_written * 784; ++i) b.push_back(static_cast<char>((i * 7) % 256));
  b.append(s.trailing_bytes, '\0');
  return b;
}

std::string label_bytes(const IdxSpec& s) {
  std::string b;
  put_u32(b, s.label_magic);
  put_u32(b, s.label_count);
  for (std::size_t i = 0; i < s.labels_written; ++i) b.push_back(static_cast<char>(i % 10));
  if (s.bad_label != 0) b.back() = static_cast<char>(s.bad_label);
  return b;
}

void write_idx_set(const TempDir& dir, const IdxSpec& train) {
  IdxSpec test;
  test.image_count = test.label_count = 10;
  test.images_written = test.labels_written = 10;
  write_gz(dir.file("train-images-idx3-ubyte.gz"), image_bytes(train));
  write_gz(dir.file("train-labels-idx1-ubyte.gz"), label_bytes(train));
  write_gz(dir.file("t10k-images-idx3-ubyte.gz"), image_bytes(test));
  write_gz(dir.file("t10k-labels-idx1-ubyte.gz"), label_bytes(test));
}

TEST(FashionMnistFiles, ReadsAWellFormedSmallSet) {
  TempDir dir;
  write_idx_set(dir, IdxSpec{});
  const DataSplit s = load_fashion_mnist(dir.str());
  ASSERT_EQ(s.train.size(), 20u);
  ASSERT_EQ(s.test.size(), 10u);
  EXPECT_EQ(s.train.labels[13], 3u);
  // Column i holds image i in row-major pixel order, scaled by 1/255.
  for (std::size_t i : {0u, 1u, 783u, 784u, 5000u, 15679u})
    EXPECT_FLOAT_EQ(s.train.features(i % 784, i / 784), static_cast<float>((i * 7) % 256) / 255.0f) << i;
}

TEST(FashionMnistFiles, CorruptFilesAreInputErrors) {
  const std::string images = "train-images-idx3-ubyte.gz", labels = "train-labels-idx1-ubyte.gz";
  struct Case {
    const char* name;
    std::function<void(IdxSpec&)> corrupt;
    std::vector<std::string> message;
  };
  const std::vector<Case> cases = {
      {"bad image magic", [](IdxSpec& s) { s.image_magic = 0x1234; }, {images, "magic"}},
      {"bad label magic", [](IdxSpec& s) { s.label_magic = 0x803; }, {labels, "magic"}},
      {"wrong image size", [](IdxSpec& s) { s.rows = 27; }, {images, "27x28"}},
      {"count mismatch", [](IdxSpec& s) { s.label_count = s.labels_written = 19; }, {images, "19 labels"}},
      {"truncated pixels", [](IdxSpec& s) { s.images_written = 19; }, {images, "truncated"}},
      {"truncated labels", [](IdxSpec& s) { s.labels_written = 12; }, {labels, "truncated"}},
      {"label out of range", [](IdxSpec& s) { s.bad_label = 10; }, {labels, "label 10"}},
      {"trailing bytes", [](IdxSpec& s) { s.trailing_bytes = 5; }, {images, "after the data"}},
      {"zero items", [](IdxSpec& s) { s.image_count = s.label_count = s.images_written = s.labels_written = 0; },
       {images, "no images"}},
      // A hostile header must not make the loader allocate what it claims.
      {"huge counts", [](IdxSpec& s) { s.image_count = s.label_count = 0xffffffffu; }, {"truncated"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    TempDir dir;
    IdxSpec spec;
    c.corrupt(spec);
    write_idx_set(dir, spec);
    expect_input_error([&] { load_fashion_mnist(dir.str()); }, c.message);
  }
}

TEST(FashionMnistFiles, DamagedGzipStreamsAreInputErrors) {
  TempDir dir;
  write_idx_set(dir, IdxSpec{});
  const std::string path = dir.file("train-images-idx3-ubyte.gz");
  std::string good;
  {
    std::ifstream in(path, std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(in), {});
  }
  // Cut mid-stream, cut only the CRC/size trailer, flip bits in the deflate
  // data, replace by garbage.
  std::string flipped = good;
  for (std::size_t i = 20; i < 40; ++i) flipped[i] ^= 0x5a;
  std::string stale_crc = good;
  stale_crc[good.size() - 6] ^= 0x01;
  const std::vector<std::pair<const char*, std::string>> damaged = {
      {"cut in half", good.substr(0, good.size() / 2)},
      {"trailer cut", good.substr(0, good.size() - 8)},
      {"size field cut", good.substr(0, good.size() - 3)},
      {"bits flipped", flipped},
      {"wrong crc", stale_crc},
      {"garbage", std::string(100, '\x7f')},
      {"empty", std::string()},
  };
  for (const auto& [name, bytes] : damaged) {
    SCOPED_TRACE(name);
    write_text(path, bytes);
    expect_input_error([&] { load_fashion_mnist(dir.str()); }, {path});
  }
}

// ---------------------------------------------------------------------------
// LIBSVM

DataSplit parse(const std::string& train, const std::string& test, LibsvmOptions options = {}) {
  std::istringstream train_in(train), test_in(test);
  return parse_libsvm(train_in, test_in, options, "train.svm", "test.svm");
}

TEST(Libsvm, ParsesSparseRowsAndMapsLabels) {
  const std::string train =
      "# a comment\n"
      "+1 1:0.5 3:-2\n"
      "\n"
      "-1 2:1e-3 4:4\r\n"
      "+1\t1:1   5:2.5  \n";
  const std::string test = "-1 6:7\n3 1:1\n";
  const DataSplit s = parse(train, test);
  ASSERT_EQ(s.train.size(), 3u);
  ASSERT_EQ(s.test.size(), 2u);
  EXPECT_EQ(s.train.dim(), 6u);  // the largest index of either file
  EXPECT_EQ(s.test.dim(), 6u);
  // Labels -1, +1, 3 of both files -> 0, 1, 2.
  EXPECT_EQ(s.train.num_classes, 3u);
  EXPECT_EQ(s.test.num_classes, 3u);
  EXPECT_EQ(s.train.labels, (std::vector<std::uint32_t>{1, 0, 1}));
  EXPECT_EQ(s.test.labels, (std::vector<std::uint32_t>{0, 2}));
  arma::fmat expected_train(6, 3, arma::fill::zeros);
  expected_train(0, 0) = 0.5f;
  expected_train(2, 0) = -2.0f;
  expected_train(1, 1) = 1e-3f;
  expected_train(3, 1) = 4.0f;
  expected_train(0, 2) = 1.0f;
  expected_train(4, 2) = 2.5f;
  EXPECT_TRUE(arma::approx_equal(s.train.features, expected_train, "absdiff", 0.0f));
  EXPECT_EQ(s.test.features(5, 0), 7.0f);
  EXPECT_EQ(s.test.features(0, 1), 1.0f);
  EXPECT_EQ(arma::accu(arma::abs(s.test.features)), 8.0f);
}

TEST(Libsvm, RegressionTargetsAndExplicitDim) {
  LibsvmOptions options;
  options.classification = false;
  options.dim = 10;
  const DataSplit s = parse("2.5 1:1\n-0.25 3:1\n7\n", "1e2 10:1\n", options);
  EXPECT_FALSE(s.train.is_classification());
  EXPECT_EQ(s.train.dim(), 10u);
  ASSERT_EQ(s.train.targets.n_elem, 3u);
  EXPECT_EQ(s.train.targets[0], 2.5f);
  EXPECT_EQ(s.train.targets[1], -0.25f);
  EXPECT_EQ(s.train.targets[2], 7.0f);
  EXPECT_EQ(s.test.targets[0], 100.0f);
  EXPECT_EQ(s.test.features(9, 0), 1.0f);
}

TEST(Libsvm, MalformedLinesNameFileAndLine) {
  const std::string ok = "1 1:1\n";
  struct Case {
    std::string train;
    std::vector<std::string> message;
  };
  const std::vector<Case> cases = {
      {"1 1:1\n# c\n\nabc 1:2\n", {"train.svm:4:", "label"}},
      {"1 1:1\n1 3\n", {"train.svm:2:", "index:value", "'3'"}},
      {"1 1:x\n", {"train.svm:1:", "'x'"}},
      {"1 1:\n", {"train.svm:1:", "value of feature 1"}},
      {"1 :2\n", {"train.svm:1:", "feature index"}},
      {"1 -1:2\n", {"train.svm:1:", "feature index '-1'"}},
      {"1 1:nan\n", {"train.svm:1:", "'nan'"}},
      {"1 1:1e999\n", {"train.svm:1:", "1e999"}},
      {"1 1:1 2:2 # trailing comment\n", {"train.svm:1:", "index:value"}},
      {"1 99999999999999999999999:1\n", {"train.svm:1:", "feature index"}},
      {"1 20000000:1\n", {"train.svm:1:", "exceeds"}},
      {"", {"train.svm", "no samples"}},
      {"# only a comment\n\n", {"train.svm", "no samples"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.train);
    expect_input_error([&] { parse(c.train, ok); }, c.message);
  }
  // The test file's errors name the test file.
  expect_input_error([&] { parse(ok, "1 1:1\n1 2:1 2:1\n"); }, {"test.svm:2:"});
}

TEST(Libsvm, IndicesMustBeOneBasedAndStrictlyIncreasing) {
  expect_input_error([] { parse("1 0:1\n", "1 1:1\n"); }, {"train.svm:1:", "index 0", "1-based"});
  expect_input_error([] { parse("1 1:1\n1 2:1 2:3\n", "1 1:1\n"); },
                     {"train.svm:2:", "index 2 after index 2", "strictly increasing"});
  expect_input_error([] { parse("1 1:1\n1 3:1 2:3\n", "1 1:1\n"); },
                     {"train.svm:2:", "index 2 after index 3", "strictly increasing"});
  LibsvmOptions options;
  options.dim = 4;
  expect_input_error([&] { parse("1 5:1\n", "1 1:1\n", options); }, {"train.svm:1:", "dim 4"});
}

TEST(Libsvm, FilesThroughTheRegistry) {
  TempDir dir;
  write_text(dir.file("a.train"), "0 1:1\n1 2:1\n");
  write_text(dir.file("a.test"), "1 2:3\n");
  const auto source = DataSourceRegistry::instance().create(
      "test", "libsvm",
      Config::parse_string("train: " + dir.file("a.train") + "\ntest: " + dir.file("a.test") + "\ntask: regression\n"));
  const DataSplit s = source->load(0);
  EXPECT_EQ(s.train.size(), 2u);
  EXPECT_EQ(s.test.targets[0], 1.0f);
  EXPECT_EQ(s.test.features(1, 0), 3.0f);
  expect_input_error([&] { load_libsvm(dir.file("missing"), dir.file("a.test"), {}); }, {dir.file("missing")});
  expect_input_error([&] { load_libsvm(dir.file("a.train"), dir.file("gone"), {}); }, {dir.file("gone")});
  write_text(dir.file("bad.test"), "1 2:3\n\n1 x:1\n");
  expect_input_error([&] { load_libsvm(dir.file("a.train"), dir.file("bad.test"), {}); },
                     {dir.file("bad.test") + ":3:"});
}

// ---------------------------------------------------------------------------
// Synthetic regression (ZipML)

TEST(SyntheticRegression, FeaturesAreStandardGaussian) {
  SyntheticRegressionSpec spec;  // 10000 x 100
  const auto r = make_synthetic_regression(spec, 17);
  const arma::fmat& a = r.data.train.features;
  ASSERT_EQ(a.n_rows, 100u);
  ASSERT_EQ(a.n_cols, 10000u);
  const arma::vec all = arma::conv_to<arma::vec>::from(arma::vectorise(a));
  // 1e6 draws: standard errors 0.001 (mean) and 0.0014 (variance).
  EXPECT_NEAR(arma::mean(all), 0.0, 0.005);
  EXPECT_NEAR(arma::var(all), 1.0, 0.01);
  // Fourth moment of N(0, 1) is 3 (a uniform or Rademacher would fail).
  EXPECT_NEAR(arma::mean(arma::vec(arma::pow(all, 4))), 3.0, 0.05);
  // Coordinates are uncorrelated.
  const arma::mat cov = arma::cov(arma::conv_to<arma::mat>::from(a.rows(0, 9)).t());
  EXPECT_LT(arma::abs(cov - arma::diagmat(cov)).max(), 0.05);
  // ||w*||^2 ~ chi-square(100) / 100.
  EXPECT_NEAR(arma::dot(r.true_model, r.true_model), 1.0, 0.5);
}

TEST(SyntheticRegression, TargetsAreTheLinearModelPlusConfiguredNoise) {
  for (double noise : {0.0, 0.1, 0.5, 2.0}) {
    SyntheticRegressionSpec spec;
    spec.dim = 50;
    spec.noise = noise;
    const auto r = make_synthetic_regression(spec, 3);
    for (const Dataset* d : {&r.data.train, &r.data.test}) {
      const arma::vec clean = arma::conv_to<arma::vec>::from(d->features.t() * r.true_model);
      const arma::vec residual = arma::conv_to<arma::vec>::from(d->targets) - clean;
      const double n = static_cast<double>(d->size());
      EXPECT_NEAR(arma::mean(residual), 0.0, 5 * noise / std::sqrt(n) + 1e-5) << "noise " << noise;
      // Var of a sample variance: 2 sigma^4 / n; float rounding adds ~1e-12.
      EXPECT_NEAR(arma::var(residual), noise * noise, 5 * noise * noise * std::sqrt(2 / n) + 1e-9)
          << "noise " << noise;
      // The signal w*^T a has variance ||w*||^2.
      EXPECT_NEAR(arma::var(clean), arma::dot(r.true_model, r.true_model), 0.1);
    }
  }
}

TEST(SyntheticRegression, DeterministicWithSeedAndCountIndependent) {
  SyntheticRegressionSpec spec;
  spec.train_samples = 500;
  spec.test_samples = 200;
  spec.dim = 20;
  const auto a = make_synthetic_regression(spec, 5);
  const auto b = make_synthetic_regression(spec, 5);
  const auto c = make_synthetic_regression(spec, 6);
  EXPECT_TRUE(arma::approx_equal(a.data.train.features, b.data.train.features, "absdiff", 0.0f));
  EXPECT_TRUE(arma::approx_equal(a.data.train.targets, b.data.train.targets, "absdiff", 0.0f));
  EXPECT_TRUE(arma::approx_equal(a.data.test.targets, b.data.test.targets, "absdiff", 0.0f));
  EXPECT_FALSE(arma::approx_equal(a.true_model, c.true_model, "absdiff", 0.0f));
  EXPECT_FALSE(arma::approx_equal(a.data.train.features, c.data.train.features, "absdiff", 0.0f));
  // Documented: a sample count changes neither the ground truth nor the other set.
  spec.train_samples = 800;
  const auto more = make_synthetic_regression(spec, 5);
  EXPECT_TRUE(arma::approx_equal(a.true_model, more.true_model, "absdiff", 0.0f));
  EXPECT_TRUE(arma::approx_equal(a.data.test.features, more.data.test.features, "absdiff", 0.0f));
  EXPECT_TRUE(arma::approx_equal(a.data.train.features, more.data.train.features.cols(0, 499), "absdiff", 0.0f));
  // Train and test are different draws.
  EXPECT_FALSE(arma::approx_equal(a.data.train.features.cols(0, 199), a.data.test.features, "absdiff", 0.0f));
}

TEST(SyntheticRegression, RegistrySourceReadsItsSettings) {
  const auto source = DataSourceRegistry::instance().create(
      "test", "synthetic_regression", Config::parse_string("train_samples: 300\ntest_samples: 40\ndim: 7\nnoise: 0\n"));
  const DataSplit s = source->load(9);
  EXPECT_EQ(s.train.size(), 300u);
  EXPECT_EQ(s.test.size(), 40u);
  EXPECT_EQ(s.train.dim(), 7u);
  EXPECT_FALSE(s.train.is_classification());
  SyntheticRegressionSpec spec{300, 40, 7, 0.0};
  EXPECT_TRUE(arma::approx_equal(s.train.targets, make_synthetic_regression(spec, 9).data.train.targets, "absdiff", 0.0f));
  expect_input_error(
      [] {
        DataSourceRegistry::instance().create("test", "synthetic_regression", Config::parse_string("dim: 0\n"));
      },
      {"<string>:1: dim"});
}

// features: lognormal gives exp(sigma z) of the Gaussian features z of the
// same seed (positive, log-mean 0, log-std sigma), targets w*^T a + noise.
TEST(SyntheticRegression, LogNormalFeaturesAreTheExponentOfTheGaussianOnes) {
  const auto gaussian = DataSourceRegistry::instance()
                            .create("test", "synthetic_regression",
                                    Config::parse_string("train_samples: 2000\ntest_samples: 10\ndim: 5\nnoise: 0\n"))
                            ->load(3);
  const auto lognormal =
      DataSourceRegistry::instance()
          .create("test", "synthetic_regression",
                  Config::parse_string("train_samples: 2000\ntest_samples: 10\ndim: 5\nnoise: 0\nfeatures: lognormal\nsigma: 1.5\n"))
          ->load(3);
  const arma::fmat& z = gaussian.train.features;
  const arma::fmat& a = lognormal.train.features;
  ASSERT_EQ(a.n_rows, 5u);
  for (std::size_t i = 0; i < a.n_elem; ++i) EXPECT_EQ(a[i], static_cast<float>(std::exp(1.5 * z[i]))) << i;
  const arma::fvec log_a = arma::vectorise(arma::log(a));
  EXPECT_NEAR(arma::mean(log_a), 0.0, 0.1);
  EXPECT_NEAR(arma::stddev(log_a), 1.5, 0.05);
  const auto truth = make_synthetic_regression(SyntheticRegressionSpec{2000, 10, 5, 0.0}, 3).true_model;
  EXPECT_LT(arma::abs(lognormal.train.targets - (truth.t() * a).t()).max(), 1e-4f);
  expect_input_error(
      [] {
        DataSourceRegistry::instance().create("test", "synthetic_regression",
                                              Config::parse_string("features: lognormal\nsigma: 9\n"));
      },
      {"<string>:2: sigma"});
}

TEST(SyntheticClassification, BalancedLabelsAroundTheClassMeans) {
  SyntheticClassificationSpec spec;  // 10 classes, dim 20, 10000 samples
  const auto r = make_synthetic_classification(spec, 4);
  const Dataset& d = r.data.train;
  ASSERT_EQ(d.num_classes, 10u);
  std::vector<std::size_t> counts(10, 0);
  for (auto l : d.labels) {
    ASSERT_LT(l, 10u);
    ++counts[l];
  }
  for (std::size_t c = 0; c < 10; ++c) {
    EXPECT_NEAR(static_cast<double>(counts[c]), 1000.0, 150.0);
    arma::uvec members(counts[c]);
    std::size_t k = 0;
    for (std::size_t i = 0; i < d.size(); ++i)
      if (d.labels[i] == c) members[k++] = i;
    const arma::fvec centre = arma::mean(d.features.cols(members), 1);
    EXPECT_LT(arma::norm(centre - r.class_means.col(c)), 0.5) << "class " << c;  // sqrt(20/1000) = 0.14 expected
  }
  EXPECT_NEAR(arma::mean(arma::sqrt(arma::sum(arma::square(r.class_means), 0))), 3.0, 0.75);
}

}  // namespace
}  // namespace fedsim
