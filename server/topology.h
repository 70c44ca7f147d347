// Communication graphs of decentralized learning (no server) and their
// mixing matrices.
//
// `algorithm.topology` names a graph over the n clients (nodes 0 .. n-1):
//   ring                       i -- i+1 (mod n)
//   torus: {rows: r}           an r x (n / r) grid with wrap-around (default
//                              r: the largest divisor of n not above sqrt n)
//   complete                   every pair
//   erdos_renyi: {p: 0.3}      every pair independently with probability p
//                              (drawn from the scenario seed)
//   edge_list: {file: F}       one "i j" pair per line (0-based, '#' starts a
//                              comment), F relative to the scenario file
// A name alone or `{name: {settings}}`. The graph must be connected (checked:
// an error names a node the first one cannot reach).
//
// `algorithm.mixing`: `metropolis_hastings` (default; W_ij = 1 / (1 +
// max(d_i, d_j)) on edges, W_ii = 1 - sum_j W_ij: symmetric and doubly
// stochastic by construction) or `{file: F}`, a dense n x n matrix (rows of
// whitespace-separated numbers), which must be non-negative, zero off the
// graph's edges and doubly stochastic to 1e-9 (checked, with the row or
// column that is not).
#pragma once

#include <armadillo>
#include <cstdint>
#include <string>
#include <vector>

#include "core/base/config.h"

namespace fedsim {

struct Topology {
  std::string name;
  std::size_t nodes = 0;
  std::vector<std::vector<std::uint32_t>> neighbours;  // sorted, no self loops
  arma::mat mixing;                                    // W, n x n
  std::size_t num_edges() const;
};

// Reads `topology` and `mixing` from `algorithm` (the scenario's
// `algorithm:` map; `scenario_file` locates relative files). Throws
// InputError (file:line: key) on unknown names, bad settings, unreadable or
// malformed files, a disconnected graph or a mixing matrix that is not
// doubly stochastic.
Topology build_topology(const Config& algorithm, std::size_t nodes, std::uint64_t seed, const std::string& scenario_file);

// Metropolis-Hastings weights of a graph.
arma::mat metropolis_hastings(const std::vector<std::vector<std::uint32_t>>& neighbours);

// Empty when W is square of size n, non-negative, zero off the edges and
// diagonal, and its rows and columns sum to 1 within `tolerance`; else what is wrong.
std::string check_doubly_stochastic(const arma::mat& w, const std::vector<std::vector<std::uint32_t>>& neighbours,
                                    double tolerance = 1e-9);

}  // namespace fedsim
