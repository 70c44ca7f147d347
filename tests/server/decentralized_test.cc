// Decentralized learning: graphs and mixing matrices, gossip's average,
// DPSVRG's deterministic recursion with full gradients, accounting, and the
// checks of the scenario keys.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/base/errors.h"
#include "core/compression/pipeline.h"
#include "core/models/model.h"
#include "server/decentralized.h"
#include "server/scenario.h"
#include "server/simulation.h"

namespace fedsim {
namespace {

Topology graph(const std::string& yaml, std::size_t n, const std::string& file = "t.yaml") {
  return build_topology(Config::parse_string(yaml, file), n, 1, file);
}

TEST(Topology, MetropolisHastingsIsSymmetricAndDoublyStochastic) {
  for (const auto& [yaml, n] : std::vector<std::pair<std::string, std::size_t>>{
           {"{topology: ring}", 7}, {"{topology: torus}", 12}, {"{topology: {torus: {rows: 3}}}", 15},
           {"{topology: complete}", 5}, {"{topology: {erdos_renyi: {p: 0.4}}}", 20}}) {
    const Topology t = graph(yaml, n);
    EXPECT_EQ(check_doubly_stochastic(t.mixing, t.neighbours, 1e-12), "") << yaml;
    EXPECT_TRUE(t.mixing.is_symmetric()) << yaml;
    EXPECT_GE(t.mixing.min(), 0.0) << yaml;
    EXPECT_NEAR(arma::accu(t.mixing), static_cast<double>(n), 1e-12);
  }
  EXPECT_EQ(graph("{topology: ring}", 7).num_edges(), 7u);
  EXPECT_EQ(graph("{topology: complete}", 5).num_edges(), 10u);
  EXPECT_EQ(graph("{topology: {torus: {rows: 3}}}", 15).num_edges(), 30u);
  // Ring: every degree 2, so W_ij = 1/3 on edges and W_ii = 1/3.
  const Topology ring = graph("{topology: ring}", 7);
  EXPECT_DOUBLE_EQ(ring.mixing(0, 1), 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(ring.mixing(0, 6), 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(ring.mixing(0, 0), 1.0 / 3.0);
}

TEST(Topology, DisconnectedGraphIsAnInputError) {
  try {
    graph("{topology: {erdos_renyi: {p: 0}}}", 5);
    ADD_FAILURE();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("connected"), std::string::npos) << e.what();
  }
  const auto dir = std::filesystem::temp_directory_path() / "fedsim_topology_test";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "two_parts.txt") << "# two triangles\n0 1\n1 2\n2 0\n3 4\n4 5\n5 3\n";
  EXPECT_THROW(graph("{topology: {edge_list: {file: two_parts.txt}}}", 6, (dir / "s.yaml").string()), InputError);
  std::ofstream(dir / "bad.txt") << "0 1\n1 9\n";
  try {
    graph("{topology: {edge_list: {file: bad.txt}}}", 6, (dir / "s.yaml").string());
    ADD_FAILURE();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.txt:2"), std::string::npos) << e.what();
  }
  std::ofstream(dir / "path.txt") << "0 1\n1 2\n2 3\n";
  const Topology path = graph("{topology: {edge_list: {file: path.txt}}}", 4, (dir / "s.yaml").string());
  EXPECT_EQ(path.num_edges(), 3u);
  EXPECT_EQ(check_doubly_stochastic(path.mixing, path.neighbours, 1e-12), "");
}

TEST(Topology, MixingMatrixThatIsNotDoublyStochasticIsAnInputError) {
  const auto dir = std::filesystem::temp_directory_path() / "fedsim_topology_test";
  std::filesystem::create_directories(dir);
  // Rows sum to 1, columns do not (row-stochastic only).
  std::ofstream(dir / "w_rows.txt") << "0.5 0.5 0\n0.5 0.25 0.25\n0.5 0 0.5\n";
  std::ofstream(dir / "w_ok.txt") << "0.5 0.25 0.25\n0.25 0.5 0.25\n0.25 0.25 0.5\n";
  std::ofstream(dir / "w_offgraph.txt") << "0.5 0.5 0\n0.5 0 0.5\n0 0.5 0.5\n";
  const std::string file = (dir / "s.yaml").string();
  try {
    graph("{topology: complete, mixing: {file: w_rows.txt}}", 3, file);
    ADD_FAILURE();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("column 0 sums to 1.5"), std::string::npos) << e.what();
  }
  EXPECT_EQ(graph("{topology: complete, mixing: {file: w_ok.txt}}", 3, file).mixing(0, 1), 0.25);
  // On the path 0-1-2, W_02 must be 0.
  std::ofstream(dir / "path3.txt") << "0 1\n1 2\n";
  std::ofstream(dir / "w_uses_02.txt") << "0.5 0.25 0.25\n0.25 0.5 0.25\n0.25 0.25 0.5\n";
  EXPECT_THROW(graph("{topology: {edge_list: {file: path3.txt}}, mixing: {file: w_uses_02.txt}}", 3, file),
               InputError);
  EXPECT_NO_THROW(graph("{topology: {edge_list: {file: path3.txt}}, mixing: {file: w_offgraph.txt}}", 3, file));
}

TEST(Gossip, PreservesTheAverageToFloatRounding) {
  // In exact arithmetic 1^T W = 1^T keeps the average; in float each output
  // is rounded once (relative 2^-24), so the average moves by at most about
  // 6e-8 of the largest magnitude per round. Tolerance: 1e-6 relative after 100 rounds.
  const Topology t = graph("{topology: {erdos_renyi: {p: 0.3}}}", 16);
  arma::arma_rng::set_seed(3);
  std::vector<arma::fvec> x(16);
  for (auto& v : x) v = arma::randn<arma::fvec>(500);
  arma::vec mean0(500, arma::fill::zeros);
  for (const auto& v : x) mean0 += arma::conv_to<arma::vec>::from(v);
  mean0 /= 16.0;
  const double scale = arma::abs(mean0).max() + 3.0;
  std::vector<arma::fvec> y;
  double spread0 = 0.0;
  for (const auto& v : x) spread0 += arma::accu(arma::square(arma::conv_to<arma::vec>::from(v) - mean0));
  for (int round = 0; round < 100; ++round) {
    gossip_mix(t, x, y);
    x.swap(y);
  }
  arma::vec mean(500, arma::fill::zeros);
  double spread = 0.0;
  for (const auto& v : x) mean += arma::conv_to<arma::vec>::from(v);
  mean /= 16.0;
  for (const auto& v : x) spread += arma::accu(arma::square(arma::conv_to<arma::vec>::from(v) - mean));
  EXPECT_LT(arma::abs(mean - mean0).max(), 1e-6 * scale);
  EXPECT_LT(spread, 1e-6 * spread0);  // and it reaches consensus
}

TEST(ChocoGossip, KeepsTheAverageWithLossyMessagesAndReachesConsensus) {
  // QSGD-compressed differences to the public copies: W symmetric keeps the
  // average exactly in exact arithmetic; float32 rounding of the n outputs
  // moves it by about 1e-7 per round: tolerance 1e-5 of the largest
  // magnitude after 300 rounds.
  const Topology t = graph("{topology: {torus: {rows: 3}}}", 12);
  const PipelineSpec spec =
      PipelineSpec::parse(Config::parse_string("uplink: [{qsgd: {levels: 15}}]", "q.yaml"), "uplink");
  const std::size_t d = 200;
  std::vector<std::unique_ptr<Compressor>> codecs;
  for (std::size_t i = 0; i < 12; ++i) codecs.push_back(spec.make(d, {Layer{"all", 0, d}}, i));
  arma::arma_rng::set_seed(11);
  std::vector<arma::fvec> x(12), copies(12, arma::fvec(d, arma::fill::zeros)), decoded(12, arma::fvec(d));
  for (auto& v : x) v = arma::randn<arma::fvec>(d);
  const auto average = [&] {
    arma::vec m(d, arma::fill::zeros);
    for (const auto& v : x) m += arma::conv_to<arma::vec>::from(v);
    return arma::vec(m / 12.0);
  };
  const auto spread = [&](const arma::vec& m) {
    double s = 0.0;
    for (const auto& v : x) s += arma::accu(arma::square(arma::conv_to<arma::vec>::from(v) - m));
    return s / 12.0;
  };
  const arma::vec mean0 = average();
  const double spread0 = spread(mean0);
  Rng rng(5);
  Bytes bytes;
  for (int round = 0; round < 300; ++round) {
    for (std::size_t i = 0; i < 12; ++i) {
      const arma::fvec difference = x[i] - copies[i];
      bytes.clear();
      codecs[i]->encode({difference.memptr(), d}, rng, bytes, {decoded[i].memptr(), d});
    }
    choco_mix(t, 0.3, decoded, copies, x);
  }
  const arma::vec mean = average();
  EXPECT_LT(arma::abs(mean - mean0).max(), 1e-5 * (3.0 + arma::abs(mean0).max()));
  EXPECT_LT(spread(mean), 1e-4 * spread0);
}

TEST(ChocoGossip, CompressedDecentralizedRunSendsFewerBytes) {
  const std::string base =
      "data: {source: synthetic_classification, train_samples: 600, test_samples: 100, dim: 10, classes: 2}\n"
      "model: {name: softmax_regression}\nclients: 6\nclients_per_round: 6\nrounds: 30\nbatch_size: 8\n"
      "learning_rate: 0.2\noutput: {progress: false}\n";
  const Scenario sp = parse_scenario(base + "algorithm: {name: dpsvrg, topology: ring}\n", "p.yaml");
  const Scenario sc = parse_scenario(base + "algorithm: {name: dpsvrg, topology: ring, gossip: {choco: {gamma: 0.4}}}\n"
                                            "uplink: [{qsgd: {levels: 7, coding: fixed}}]\n", "c.yaml");
  Simulation plain(sp), choco(sc);
  const RunSummary p = plain.run(), c = choco.run();
  EXPECT_LT(c.bytes_up * 3, p.bytes_up);
  EXPECT_LT(c.rounds.back().objective, c.rounds.front().objective);
  EXPECT_LT(c.rounds.back().objective, p.rounds.back().objective + 0.05);
}

const std::string kDecentralized =
    "data: {source: synthetic_classification, train_samples: 600, test_samples: 100, dim: 10, classes: 2, "
    "separation: 1}\n"
    "partition: {scheme: dirichlet, alpha: 0.5}\n"
    "model: {name: softmax_regression, init_scale: 0.1}\n"
    "clients: 6\nclients_per_round: 6\nrounds: 10\nlearning_rate: 0.5\nweight_decay: 0.1\n"
    "output: {progress: false}\n";

TEST(Dpsvrg, WithFullGradientsFollowsTheDeterministicRecursion) {
  // batch_size 0: v_i = grad f_i(x_i) - grad f_i(xs_i) + grad f_i(xs_i) = grad f_i(x_i),
  // so x_{k+1} = prox_{alpha h}(W x_k - alpha grad F(x_k)) whatever the snapshots.
  // Replayed in double here; float32 in the run: tolerance 1e-5 (relative to 1 + |x|).
  const Scenario sc = parse_scenario(
      kDecentralized + "batch_size: 0\nalgorithm: {name: dpsvrg, topology: ring, snapshot_period: 3, l1: 0.01}\n",
      "dpsvrg.yaml");
  Simulation sim(sc);
  const auto model = ModelRegistry::instance().create("", "softmax_regression", Config(), ModelInput{10, 2});
  const Topology t = graph("{topology: ring}", 6);
  std::vector<arma::vec> x(6, arma::conv_to<arma::vec>::from(sim.model_params()));
  const double alpha = 0.5, l1 = 0.01, wd = 0.1;
  std::size_t rounds = 0;
  sim.run([&](const RoundMetrics& m) {
    std::vector<arma::vec> next(6);
    for (std::uint32_t i = 0; i < 6; ++i) {
      arma::vec mixed = t.mixing(i, i) * x[i];
      for (std::uint32_t j : t.neighbours[i]) mixed += t.mixing(i, j) * x[j];
      arma::fvec g;
      model->loss_and_gradient(arma::conv_to<arma::fvec>::from(x[i]), sim.data().train, sim.client_data(i), g);
      arma::vec z = mixed - alpha * (arma::conv_to<arma::vec>::from(g) + wd * x[i]);
      next[i] = arma::sign(z) % arma::clamp(arma::abs(z) - alpha * l1, 0.0, arma::datum::inf);
    }
    x = next;
    arma::vec mean(x[0].n_elem, arma::fill::zeros);
    for (const auto& v : x) mean += v;
    mean /= 6.0;
    double distance = 0.0;
    for (const auto& v : x) distance += arma::accu(arma::square(v - mean));
    distance /= 6.0;
    const double err = arma::abs(mean - arma::conv_to<arma::vec>::from(sim.model_params())).max();
    EXPECT_LT(err, 1e-5 * (1.0 + arma::abs(mean).max())) << "iteration " << m.round;
    EXPECT_NEAR(m.consensus_distance, distance, 1e-5 * (1.0 + distance)) << "iteration " << m.round;
    ++rounds;
  });
  EXPECT_EQ(rounds, 10u);
}

TEST(Decentralized, GossipIsChargedPerEdgeAndDeterministic) {
  const std::string yaml = kDecentralized + "batch_size: 8\nalgorithm: {name: dspg, topology: ring, l1: 0.01}\n";
  const Scenario a = parse_scenario(yaml + "threads: 1\n", "a.yaml");
  const Scenario b = parse_scenario(yaml + "threads: 2\n", "b.yaml");
  Simulation sa(a), sb(b);
  const RunSummary ra = sa.run(), rb = sb.run();
  EXPECT_TRUE(arma::all(sa.model_params() == sb.model_params()));
  for (std::size_t k = 0; k < ra.rounds.size(); ++k) {
    const RoundMetrics& m = ra.rounds[k];
    // A ring of 6: 12 directed copies of the nodes' messages (float32 models
    // and a few bytes of framing) each way.
    EXPECT_EQ(m.bytes_up, m.bytes_down);
    EXPECT_GT(m.bytes_up, 12 * 4 * sa.num_params());
    EXPECT_LT(m.bytes_up, 12 * (4 * sa.num_params() + 40));
    EXPECT_GT(m.energy.tx_j, 0.0);
    EXPECT_GT(m.round_time_s, 0.0);
    EXPECT_EQ(m.objective, rb.rounds[k].objective);
    EXPECT_GE(m.consensus_distance, 0.0);
  }
}

void expect_input_error(const std::string& yaml, const std::string& needle) {
  try {
    const Scenario sc = parse_scenario(yaml, "bad.yaml");
    Simulation sim(sc);
    sim.run();
    ADD_FAILURE() << "accepted:\n" << yaml;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Decentralized, BadKeysAreClearErrors) {
  const std::string base = "data: {source: synthetic_classification, train_samples: 300, test_samples: 50, dim: 5, "
                           "classes: 2}\nclients: 6\nrounds: 2\noutput: {progress: false}\n";
  expect_input_error(base + "clients_per_round: 3\nalgorithm: {name: dspg}\n", "clients_per_round");
  expect_input_error(base + "clients_per_round: 6\nalgorithm: {name: dspg}\nuplink: [qsgd]\n", "choco");
  expect_input_error(base + "clients_per_round: 6\nalgorithm: {name: dspg, gossip: {choco: {gamma: 0}}}\n", "gamma");
  expect_input_error(base + "clients_per_round: 6\nalgorithm: {name: dspg, gossip: {push_sum: {}}}\n", "push_sum");
  expect_input_error(base + "clients_per_round: 6\nalgorithm: {name: dspg}\nserver: {policy: wait_all}\n", "policy");
  expect_input_error(base + "clients_per_round: 6\nserver: {policy: gossip}\n", "decentralized algorithm");
  expect_input_error(base + "clients_per_round: 6\nalgorithm: {name: dpsvrg, topology: {erdos_renyi: {p: 0}}}\n",
                     "connected");
  expect_input_error(base + "clients_per_round: 6\nalgorithm: {name: dpsvrg, topology: star}\n", "star");
  expect_input_error(base + "clients_per_round: 6\nalgorithm: {name: dpsvrg, snapshot_period: 0}\n", "snapshot_period");
  expect_input_error(base + "clients_per_round: 6\nalgorithm: {name: dspg, snapshot_period: 5}\n", "snapshot_period");
}

}  // namespace
}  // namespace fedsim
