// End-to-end runs of tiny scenarios: FedPAQ's special cases, determinism.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/models/model.h"
#include "server/metrics.h"
#include "server/scenario.h"
#include "core/base/errors.h"
#include "server/simulation.h"

namespace fedsim {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// FedPAQ with tau = 1, r = n, full local batches and sample-weighted
// averaging is exactly gradient descent on the whole training set.
TEST(FedPaq, OneFullBatchStepWithAllClientsIsCentralizedGradientDescent) {
  const std::string yaml =
      "data: {source: synthetic_classification, train_samples: 600, test_samples: 100, dim: 12, classes: 4}\n"
      "partition: {scheme: dirichlet, alpha: 0.5}\n"
      "model: {name: softmax_regression}\n"
      "clients: 6\nclients_per_round: 6\nlocal_steps: 1\nbatch_size: 0\nlearning_rate: 0.3\n"
      "rounds: 8\nthreads: 2\noutput: {progress: false}\n";
  const Scenario sc = parse_scenario(yaml, "gd.yaml");
  Simulation sim(sc);
  const auto model = ModelRegistry::instance().create("", "softmax_regression", Config(), ModelInput{12, 4});
  arma::fvec x = sim.model_params();
  std::vector<std::uint32_t> all(sim.data().train.size());
  for (std::uint32_t i = 0; i < all.size(); ++i) all[i] = i;
  arma::fvec grad;
  std::size_t steps = 0;
  sim.run([&](const RoundMetrics& m) {
    model->loss_and_gradient(x, sim.data().train, all, grad);
    x -= 0.3f * grad;
    ++steps;
    const float err = arma::abs(x - sim.model_params()).max();
    EXPECT_LT(err, 1e-5f * (1.0f + arma::abs(x).max())) << "round " << m.round;
  });
  EXPECT_EQ(steps, 8u);
}

TEST(Determinism, SameSeedSameMetricsWithOneAndTwoThreads) {
  const std::string yaml =
      "data: {source: synthetic_classification, train_samples: 2000, test_samples: 200, dim: 16, classes: 5}\n"
      "partition: {scheme: dirichlet, alpha: 0.3}\n"
      "model: {name: mlp, hidden: [8]}\n"
      "clients: 40\nclients_per_round: 10\nlocal_steps: 3\nbatch_size: 8\n"
      "rounds: 6\neval_every: 2\noutput: {progress: false}\n"
      "uplink: [error_feedback, {qsgd: {levels: 4, bucket: 64}}]\n";
  const auto dir = std::filesystem::temp_directory_path() / "fedsim_determinism";
  std::string files[2];
  for (int t = 0; t < 2; ++t) {
    const std::string out = (dir / std::to_string(t)).string();
    Scenario sc = parse_scenario(yaml, "det.yaml", {"threads=" + std::to_string(t + 1)});
    Simulation sim(sc);
    MetricsWriter writer(out, {"default"});
    sim.run([&](const RoundMetrics& m) { writer.write(m); });
    files[t] = read_file(out + "/metrics.csv");
  }
  EXPECT_FALSE(files[0].empty());
  EXPECT_EQ(files[0], files[1]);
}

TEST(Determinism, DifferentSeedsDiffer) {
  const std::string yaml =
      "data: {source: synthetic_classification, train_samples: 1000, test_samples: 200, dim: 8, classes: 3}\n"
      "model: {name: softmax_regression}\nclients: 20\nclients_per_round: 5\nrounds: 3\noutput: {progress: false}\n";
  Scenario a = parse_scenario(yaml, "a.yaml", {"seed=1"});
  Scenario b = parse_scenario(yaml, "b.yaml", {"seed=2"});
  Simulation sa(a), sb(b);
  sa.run();
  sb.run();
  EXPECT_GT(arma::abs(sa.model_params() - sb.model_params()).max(), 0.0f);
}

TEST(Metrics, CsvHasStableColumns) {
  const auto cols = MetricsWriter::columns({});
  const std::vector<std::string> first{"round", "sim_time_s", "test_accuracy", "test_loss", "train_loss",
                                       "bytes_up", "bytes_down", "clients"};
  ASSERT_GE(cols.size(), first.size());
  for (std::size_t i = 0; i < first.size(); ++i) EXPECT_EQ(cols[i], first[i]);
}

TEST(Messages, BytesCountedAreSerializedSizes) {
  // float32 uplink: each UpdateUp carries 4 bytes per parameter plus a small header.
  const std::string yaml =
      "data: {source: synthetic_classification, train_samples: 500, test_samples: 100, dim: 10, classes: 2}\n"
      "model: {name: softmax_regression}\nclients: 5\nclients_per_round: 5\nrounds: 1\noutput: {progress: false}\n";
  Scenario sc = parse_scenario(yaml, "m.yaml");
  Simulation sim(sc);
  const RunSummary r = sim.run();
  const std::uint64_t payload = 4 * sim.num_params();
  EXPECT_GT(r.bytes_up, 5 * payload);
  EXPECT_LT(r.bytes_up, 5 * (payload + 40));
  EXPECT_GT(r.bytes_down, 5 * payload);
  EXPECT_LT(r.bytes_down, 5 * (payload + 40));
}

TEST(Population, DataWeightShrinksAClassLocalData) {
  // 600 samples over 12 IID clients: 50 each; the light class keeps ceil(50 / 4).
  const std::string yaml =
      "data: {source: synthetic_classification, train_samples: 600, test_samples: 100, dim: 6, classes: 3}\n"
      "clients: 12\nclients_per_round: 12\nrounds: 1\nlocal_steps: 1\nbatch_size: 0\nthreads: 1\n"
      "output: {progress: false}\n"
      "population:\n"
      "  - {name: heavy, fraction: 0.5}\n"
      "  - {name: light, fraction: 0.5, data_weight: 0.25}\n";
  const Scenario sc = parse_scenario(yaml, "w.yaml");
  Simulation sim(sc);
  sim.run();
  ASSERT_EQ(sim.trace().size(), 12u);
  const double per_sample = sim.trace()[0].macs / 50.0;
  for (const ArrivalRecord& a : sim.trace())
    EXPECT_DOUBLE_EQ(a.macs, per_sample * (a.client < 6 ? 50.0 : 13.0)) << "client " << a.client;
}

TEST(Simulation, DivergedTrainingIsAClearErrorNotACrash) {
  const std::string yaml =
      "data: {source: synthetic_regression, train_samples: 400, test_samples: 50, dim: 6}\n"
      "model: {name: linear_regression}\n"
      "clients: 8\nclients_per_round: 4\nrounds: 5\nlocal_steps: 20\nlearning_rate: 1e5\nthreads: 2\n"
      "output: {progress: false}\n";
  const Scenario sc = parse_scenario(yaml, "diverge.yaml");
  Simulation sim(sc);
  try {
    sim.run();
    FAIL() << "a diverged run must not finish";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("diverge.yaml: client ", 0), 0u) << what;
    EXPECT_NE(what.find("lower learning_rate"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace fedsim
