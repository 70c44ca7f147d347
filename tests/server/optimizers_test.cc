// Optimizers in runs: the server's (FedOpt, on the aggregate as a
// pseudo-gradient), the clients' (local steps, state per client), FedSGD's
// gradients, the sparsity column, CHB's censoring in a run, and the checks
// of the scenario keys.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "clients/optimizer.h"
#include "core/base/errors.h"
#include "core/models/model.h"
#include "server/metrics.h"
#include "server/scenario.h"
#include "server/simulation.h"

namespace fedsim {
namespace {

const std::string kBase =
    "data: {source: synthetic_classification, train_samples: 600, test_samples: 100, dim: 12, classes: 4}\n"
    "partition: {scheme: dirichlet, alpha: 0.5}\n"
    "model: {name: softmax_regression}\n"
    "clients: 6\nclients_per_round: 6\nbatch_size: 0\n"
    "rounds: 6\nthreads: 2\noutput: {progress: false}\n";

std::string with(std::string yaml, const std::string& from, const std::string& to) {
  const std::size_t at = yaml.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return yaml.replace(at, from.size(), to);
}

// Full-batch gradients from every client, sample-weighted: the aggregate is
// the gradient of the whole training set, so the server's optimizer must
// follow the same optimizer run centrally on full gradients.
void expect_central_path(const std::string& yaml, const std::string& optimizer_yaml, double lr, int steps_per_round) {
  const Scenario sc = parse_scenario(yaml, "opt.yaml");
  Simulation sim(sc);
  const auto model = ModelRegistry::instance().create("", "softmax_regression", Config(), ModelInput{12, 4});
  auto optimizer = make_optimizer(Config::parse_string(optimizer_yaml));
  arma::fvec x = sim.model_params();
  std::vector<std::uint32_t> all(sim.data().train.size());
  for (std::uint32_t i = 0; i < all.size(); ++i) all[i] = i;
  arma::fvec grad;
  std::size_t rounds = 0;
  sim.run([&](const RoundMetrics& m) {
    for (int s = 0; s < steps_per_round; ++s) {
      model->loss_and_gradient(x, sim.data().train, all, grad);
      optimizer->step(x, grad, lr);
    }
    ++rounds;
    const float err = arma::abs(x - sim.model_params()).max();
    EXPECT_LT(err, 2e-5f * (1.0f + arma::abs(x).max())) << "round " << m.round;
  });
  EXPECT_EQ(rounds, 6u);
}

TEST(ServerOptimizer, FedSgdWithAdamIsCentralAdamOnFullGradients) {
  expect_central_path(kBase + "algorithm: {name: fedsgd}\nserver_learning_rate: 0.05\n"
                              "server_optimizer: {name: adam, beta1: 0.8, beta2: 0.9}\n",
                      "{name: adam, beta1: 0.8, beta2: 0.9}", 0.05, 1);
}

TEST(ServerOptimizer, FedSgdWithMomentumIsCentralHeavyBall) {
  expect_central_path(kBase + "algorithm: {name: fedsgd}\nserver_learning_rate: 0.2\n"
                              "server_optimizer: {name: momentum, beta: 0.7}\n",
                      "{name: momentum, beta: 0.7}", 0.2, 1);
}

TEST(ServerOptimizer, PseudoGradientOfDifferencesIsTheirNegatedMean) {
  // FedPAQ, one full-batch local step at rate 1: the mean difference is -grad,
  // so server Yogi on it is Yogi on the full gradient with the server's rate.
  expect_central_path(kBase + "local_steps: 1\nlearning_rate: 1\nserver_learning_rate: 0.1\n"
                              "server_optimizer: {name: yogi, eps: 0.001}\n",
                      "{name: yogi, eps: 0.001}", 0.1, 1);
}

TEST(ClientOptimizer, StateStaysWithTheClientAcrossRounds) {
  // One client holding all the data, server rate 1: the global model is the
  // client's, and its momentum carries over from round to round.
  const std::string yaml = with(kBase + "local_steps: 3\nlearning_rate: 0.1\nclient_optimizer: {name: momentum, beta: 0.6}\n",
                                "clients: 6\nclients_per_round: 6", "clients: 1\nclients_per_round: 1");
  expect_central_path(yaml, "{name: momentum, beta: 0.6}", 0.1, 3);
}

RunSummary run(const std::string& yaml, arma::fvec* model = nullptr) {
  const Scenario sc = parse_scenario(yaml, "opt.yaml");
  Simulation sim(sc);
  RunSummary r = sim.run();
  if (model) *model = sim.model_params();
  return r;
}

TEST(ClientOptimizer, FreshMomentumForOneStepIsSgdBitForBit) {
  arma::fvec plain, reset, kept;
  const std::string b = with(kBase + "local_steps: 1\nlearning_rate: 0.2\n", "clients_per_round: 6\nbatch_size: 0",
                             "clients_per_round: 3\nbatch_size: 16");
  run(b, &plain);
  run(b + "client_optimizer: {name: momentum, reset_each_round: true}\n", &reset);
  run(b + "client_optimizer: {name: momentum}\n", &kept);
  EXPECT_TRUE(arma::all(plain == reset));
  EXPECT_GT(arma::abs(plain - kept).max(), 0.0f);
}

TEST(ServerOptimizer, ExplicitSgdIsTheDefaultBitForBit) {
  arma::fvec a, b;
  run(kBase + "local_steps: 2\n", &a);
  run(kBase + "local_steps: 2\nserver_optimizer: {name: sgd}\nclient_optimizer: {name: sgd}\n", &b);
  EXPECT_TRUE(arma::all(a == b));
}

TEST(ServerOptimizer, SameMetricsWithOneAndTwoThreads) {
  const std::string y2 = with(kBase + "local_steps: 2\nserver_optimizer: {name: amsgrad}\nclient_optimizer: {name: adam}\n",
                              "clients_per_round: 6\nbatch_size: 0", "clients_per_round: 3\nbatch_size: 8");
  const std::string y1 = with(y2, "threads: 2", "threads: 1");
  arma::fvec a, b;
  const RunSummary ra = run(y1, &a);
  const RunSummary rb = run(y2, &b);
  EXPECT_TRUE(arma::all(a == b));
  ASSERT_EQ(ra.rounds.size(), rb.rounds.size());
  for (std::size_t i = 0; i < ra.rounds.size(); ++i) EXPECT_EQ(ra.rounds[i].test_loss, rb.rounds[i].test_loss);
}

TEST(Sparsity, ColumnCountsExactZerosOfTheGlobalModel) {
  // Dual averaging with an L1 weight above every averaged gradient: all zeros.
  const RunSummary all_zero =
      run(kBase + "algorithm: {name: fedsgd}\nserver_optimizer: {name: adagrad, form: rda, l1: 100}\n");
  for (const RoundMetrics& m : all_zero.rounds) EXPECT_EQ(m.sparsity, 1.0);
  const RunSummary dense = run(kBase + "algorithm: {name: fedsgd}\nserver_optimizer: {name: adagrad}\n");
  for (const RoundMetrics& m : dense.rounds) EXPECT_LT(m.sparsity, 0.5);
  const RunSummary some = run(kBase + "algorithm: {name: fedsgd}\nserver_optimizer: {name: adagrad, form: rda, l1: 0.05}\n");
  EXPECT_GT(some.rounds.back().sparsity, 0.0);
  EXPECT_LT(some.rounds.back().sparsity, 1.0);
  const auto cols = MetricsWriter::columns({});
  EXPECT_NE(std::find(cols.begin(), cols.end(), "sparsity"), cols.end());
}

TEST(Chb, CensorsWhenTheGradientChangesLessThanTheModelMoves) {
  const std::string base = with(kBase, "rounds: 6", "rounds: 20") + "algorithm: {name: fedsgd}\nserver_learning_rate: 0.5\n"
                                   "server_optimizer: {name: momentum, beta: 0.5}\n";
  const RunSummary never = run(base + "uplink: [{chb_censoring: {threshold: 0}}]\n");
  const RunSummary censored = run(base + "uplink: [{chb_censoring: {threshold: 5}}]\n");
  std::uint64_t skipped = 0;
  for (const RoundMetrics& m : never.rounds) EXPECT_EQ(m.censored, 0u);
  for (const RoundMetrics& m : censored.rounds) skipped += m.censored;
  EXPECT_GT(skipped, 0u);
  EXPECT_EQ(censored.rounds.front().censored, 0u);  // no movement known in the first round
  EXPECT_LT(censored.bytes_up, never.bytes_up);
}

void expect_input_error(const std::string& yaml, const std::string& needle) {
  try {
    const Scenario sc = parse_scenario(yaml, "bad.yaml");
    Simulation sim(sc);
    ADD_FAILURE() << "accepted:\n" << yaml;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(OptimizerKeys, BadSettingsAreClearErrors) {
  expect_input_error(kBase + "server_optimizer: {name: adam, beta1: 1.0}\n", "server_optimizer.beta1");
  expect_input_error(kBase + "client_optimizer: {name: momentum, beta: 2}\n", "client_optimizer.beta");
  expect_input_error(kBase + "server_optimizer: {name: adam, betta: 0.5}\n", "betta");
  expect_input_error(kBase + "server_optimizer: {name: lbfgs}\n", "lbfgs");
  expect_input_error(kBase + "algorithm: {name: fedsgd}\nlocal_steps: 3\n", "local_steps");
  expect_input_error(kBase + "algorithm: {name: fedsgd}\nclient_optimizer: {name: adam}\n", "client_optimizer");
  expect_input_error(kBase + "algorithm: {name: fedvote}\nuplink: [fedvote_binary]\nserver_optimizer: {name: adam}\n",
                     "server_optimizer");
  expect_input_error(kBase + "uplink: [error_feedback, chb_censoring, sign]\n", "first stage");
}

}  // namespace
}  // namespace fedsim
