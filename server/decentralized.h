// Decentralized learning without a server: n nodes (the scenario's clients)
// on a graph (server/topology.h), each with its local data f_i and its own
// model x_i, mixing with their neighbours through a doubly stochastic W.
// Every node takes part in every iteration; an iteration is one metrics row.
//
// DSPG (decentralized proximal stochastic gradient):
//   x_i <- prox_{alpha h}( sum_j W_ij x_j - alpha grad f_{i,B}(x_i) )
// DPSVRG (decentralized proximal stochastic variance-reduced gradient): every
// S iterations (k = 0, S, 2S, ...) node i takes a snapshot xs_i = x_i and its
// full local gradient mu_i = grad f_i(xs_i); in between
//   v_i = grad f_{i,B}(x_i) - grad f_{i,B}(xs_i) + mu_i
//   x_i <- prox_{alpha h}( sum_j W_ij x_j - alpha v_i )
// h = lambda ||x||_1 (`l1`), whose prox is soft-thresholding by alpha lambda.
// Claim (DPSVRG paper): O(1/T) for convex f_i and non-smooth h, against
// O(1/sqrt T) for DSPG, whose stochastic gradients need a diminishing step.
//
// Keys (`algorithm:`): name dspg / dpsvrg, `topology` and `mixing` (see
// server/topology.h), `l1` lambda >= 0 (0), `snapshot_period` S >= 1 (dpsvrg
// only, default 10), `step_schedule`: constant (alpha = learning_rate) or
// inverse_sqrt (alpha_k = learning_rate / sqrt(k), k = 1, 2, ...); default
// inverse_sqrt for dspg, constant for dpsvrg. B: batch_size samples drawn
// uniformly with replacement from the node's data (0: its whole data, so
// DPSVRG's v_i is its full gradient). The gradient includes weight_decay x.
// `gossip`: plain (default; the models themselves, which needs the float32
// uplink: lossy compression of the models would move the network average) or
// {choco: {gamma: 0.5}}: CHOCO-gossip (Koloskova, Stich, Jaggi, ICML 2019).
// Node i keeps a public copy xhat_i (zero at first) that it and its
// neighbours hold alike; after its proximal step to x_i it sends
// q_i = Q(x_i - xhat_i) through the uplink pipeline (any stages), everyone
// adds the decoded q_i to xhat_i, and x_i <- x_i + gamma sum_j W_ij (xhat_j - xhat_i).
// As W is symmetric the last step keeps the average of the x_i exactly in
// exact arithmetic, whatever Q. gamma in (0, 1].
// Needs clients_per_round = clients, at most 4096 of them (W is dense).
//
// Gossip messages: node i serializes x_i as an UpdateUp through its codec
// link (round = iteration) once and every neighbour receives those bytes; the
// network and device models charge node i its degree times the message up
// (one copy per edge), its neighbours' messages down, and its gradient MACs.
// An iteration ends when the slowest node is done. The round reports the
// average model xbar (test accuracy and loss, sparsity), the consensus
// distance (1/n) sum_i ||x_i - xbar||^2 and the objective
// F(xbar) = mean training loss at xbar + lambda ||xbar||_1 (over all
// training samples: the mean of the f_i for equal shares).
#pragma once

#include <armadillo>
#include <span>
#include <string>
#include <vector>

#include "server/algorithm.h"
#include "server/topology.h"

namespace fedsim {

struct DecentralizedSettings {
  bool variance_reduced = false;  // dpsvrg
  std::size_t snapshot_period = 10;
  double l1 = 0.0;
  bool inverse_sqrt_step = false;
  bool choco = false;  // gossip: choco
  double gamma = 0.5;  // CHOCO's consensus step
};

class DecentralizedAlgorithm final : public Algorithm {
 public:
  DecentralizedAlgorithm(const Config& settings, bool variance_reduced);

  UpdateContent update_content() const override { return UpdateContent::kWeights; }
  std::string describe_updates() const override { return "gossiped models"; }
  std::string default_aggregator() const override { return "mean"; }
  std::string policy() const override { return "gossip"; }
  void check(const AlgorithmCheck& scenario) const override;

  const DecentralizedSettings& settings() const { return settings_; }
  // The graph and mixing matrix for `nodes` clients (validated in check()).
  Topology topology(std::size_t nodes, std::uint64_t seed, const std::string& scenario_file) const {
    return build_topology(config_, nodes, seed, scenario_file);
  }

 private:
  Config config_;
  DecentralizedSettings settings_;
};

// out_i = sum_j W_ij in_j over i's neighbours and itself, accumulated in
// double in neighbour order: one gossip round. Preserves the average of the
// inputs (W doubly stochastic) up to float rounding of the outputs.
void gossip_mix(const Topology& topology, std::span<const arma::fvec> in, std::vector<arma::fvec>& out);

// CHOCO-gossip's exchange, once every node i has sent q_i (`decoded`, what
// its neighbours decoded): xhat_i += q_i, then x_i += gamma ((W xhat)_i - xhat_i).
// Keeps the average of the x_i (W symmetric) up to float rounding.
void choco_mix(const Topology& topology, double gamma, std::span<const arma::fvec> decoded,
               std::vector<arma::fvec>& public_copies, std::vector<arma::fvec>& x);

// prox of t ||.||_1: soft-thresholding, exact zeros where |x_i| <= t.
void soft_threshold(arma::fvec& x, double t);

}  // namespace fedsim
