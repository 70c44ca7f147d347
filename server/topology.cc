#include "server/topology.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "core/base/errors.h"
#include "core/base/rng.h"

namespace fedsim {

namespace {

constexpr std::uint64_t kTopologyPurpose = 0x746f706f6cULL;  // "topol"

using Edges = std::set<std::pair<std::uint32_t, std::uint32_t>>;

void add_edge(Edges& edges, std::uint32_t a, std::uint32_t b) {
  if (a == b) return;
  edges.insert({std::min(a, b), std::max(a, b)});
}

std::string resolve(const std::string& scenario_file, const std::string& file) {
  const std::filesystem::path p(file);
  if (p.is_absolute()) return file;
  return (std::filesystem::path(scenario_file).parent_path() / p).string();
}

Edges read_edge_list(const Config& settings, const std::string& path, std::size_t n) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) settings.fail("file", "an edge list file", "'" + path + "' (no such file)");
  std::ifstream in(path);
  if (!in) settings.fail("file", "a readable edge list file", "'" + path + "' (cannot open)");
  Edges edges;
  std::string line;
  for (std::size_t line_no = 1; std::getline(in, line); ++line_no) {
    if (const auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream s(line);
    long long a = 0, b = 0;
    if (!(s >> a)) continue;  // blank or comment
    std::string rest;
    if (!(s >> b) || (s >> rest) || a < 0 || b < 0 || a >= static_cast<long long>(n) ||
        b >= static_cast<long long>(n) || a == b)
      throw InputError(path + ":" + std::to_string(line_no) + ": expected two different node numbers in [0, " +
                       std::to_string(n) + ") (algorithm.topology.edge_list), found '" + line + "'");
    add_edge(edges, static_cast<std::uint32_t>(a), static_cast<std::uint32_t>(b));
  }
  return edges;
}

arma::mat read_matrix(const Config& settings, const std::string& path, std::size_t n) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    settings.fail("file", "a mixing matrix file", "'" + path + "' (no such file)");
  std::ifstream in(path);
  if (!in) settings.fail("file", "a readable mixing matrix file", "'" + path + "' (cannot open)");
  arma::mat w(n, n, arma::fill::zeros);
  std::string line;
  std::size_t row = 0;
  for (std::size_t line_no = 1; std::getline(in, line); ++line_no) {
    if (const auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream s(line);
    std::vector<double> values;
    double v;
    while (s >> v) values.push_back(v);
    if (!s.eof())
      throw InputError(path + ":" + std::to_string(line_no) + ": expected numbers (algorithm.mixing.file), found '" +
                       line + "'");
    if (values.empty()) continue;
    if (values.size() != n || row >= n)
      throw InputError(path + ":" + std::to_string(line_no) + ": expected " + std::to_string(n) +
                       " rows of " + std::to_string(n) + " numbers (one per client), found a row of " +
                       std::to_string(values.size()) + (row >= n ? " after the last row" : ""));
    for (std::size_t j = 0; j < n; ++j) w(row, j) = values[j];
    ++row;
  }
  if (row != n)
    throw InputError(path + ": expected " + std::to_string(n) + " rows (algorithm.mixing.file), found " +
                     std::to_string(row));
  return w;
}

// A node the first one cannot reach, or n when the graph is connected.
std::size_t unreachable(const std::vector<std::vector<std::uint32_t>>& nb) {
  std::vector<bool> seen(nb.size(), false);
  std::vector<std::uint32_t> stack{0};
  seen[0] = true;
  while (!stack.empty()) {
    const std::uint32_t v = stack.back();
    stack.pop_back();
    for (std::uint32_t u : nb[v])
      if (!seen[u]) seen[u] = true, stack.push_back(u);
  }
  for (std::size_t i = 0; i < nb.size(); ++i)
    if (!seen[i]) return i;
  return nb.size();
}

}  // namespace

std::size_t Topology::num_edges() const {
  std::size_t degrees = 0;
  for (const auto& nb : neighbours) degrees += nb.size();
  return degrees / 2;
}

arma::mat metropolis_hastings(const std::vector<std::vector<std::uint32_t>>& nb) {
  const std::size_t n = nb.size();
  arma::mat w(n, n, arma::fill::zeros);
  for (std::size_t i = 0; i < n; ++i) {
    double off = 0.0;
    for (std::uint32_t j : nb[i]) {
      w(i, j) = 1.0 / (1.0 + static_cast<double>(std::max(nb[i].size(), nb[j].size())));
      off += w(i, j);
    }
    w(i, i) = 1.0 - off;
  }
  return w;
}

std::string check_doubly_stochastic(const arma::mat& w, const std::vector<std::vector<std::uint32_t>>& nb,
                                    double tolerance) {
  const std::size_t n = nb.size();
  if (w.n_rows != n || w.n_cols != n) return "not " + std::to_string(n) + " x " + std::to_string(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<bool> edge(n, false);
    edge[i] = true;
    for (std::uint32_t j : nb[i]) edge[j] = true;
    for (std::size_t j = 0; j < n; ++j) {
      if (!std::isfinite(w(i, j)) || w(i, j) < 0.0)
        return "entry (" + std::to_string(i) + ", " + std::to_string(j) + ") is negative or not finite";
      if (!edge[j] && w(i, j) != 0.0)
        return "entry (" + std::to_string(i) + ", " + std::to_string(j) + ") is not zero but " +
               std::to_string(i) + " and " + std::to_string(j) + " are not neighbours";
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    const double row = arma::accu(w.row(i)), col = arma::accu(w.col(i));
    std::ostringstream s;
    s.precision(17);
    if (std::abs(row - 1.0) > tolerance) {
      s << "row " << i << " sums to " << row << ", not 1";
      return s.str();
    }
    if (std::abs(col - 1.0) > tolerance) {
      s << "column " << i << " sums to " << col << ", not 1";
      return s.str();
    }
  }
  return "";
}

Topology build_topology(const Config& algorithm, std::size_t n, std::uint64_t seed, const std::string& scenario_file) {
  Topology t;
  t.nodes = n;
  // `topology: name` or `topology: {name: {settings}}`.
  Config settings;
  if (!algorithm.has("topology")) {
    t.name = "ring";
  } else if (algorithm.raw("topology").IsMap()) {
    const Config topology = algorithm.child("topology");
    const std::vector<std::string> keys = topology.keys();
    if (keys.size() != 1)
      algorithm.fail("topology", "a topology name, or one {name: {settings}}", std::to_string(keys.size()) + " keys");
    t.name = keys[0];
    settings = topology.child(t.name);
  } else {
    t.name = algorithm.get_string("topology");
  }
  Edges edges;
  if (t.name == "ring") {
    for (std::uint32_t i = 0; i < n; ++i) add_edge(edges, i, static_cast<std::uint32_t>((i + 1) % n));
  } else if (t.name == "complete") {
    for (std::uint32_t i = 0; i < n; ++i)
      for (std::uint32_t j = i + 1; j < n; ++j) add_edge(edges, i, j);
  } else if (t.name == "torus") {
    std::size_t fallback = 1;
    for (std::size_t r = 1; r * r <= n; ++r)
      if (n % r == 0) fallback = r;
    const std::size_t rows = static_cast<std::size_t>(settings.get_int("rows", static_cast<std::int64_t>(fallback), 1,
                                                                       static_cast<std::int64_t>(n)));
    if (n % rows != 0)
      settings.fail("rows", "a divisor of clients (" + std::to_string(n) + ")", std::to_string(rows));
    const std::size_t cols = n / rows;
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c = 0; c < cols; ++c) {
        const auto id = [&](std::size_t rr, std::size_t cc) { return static_cast<std::uint32_t>(rr * cols + cc); };
        add_edge(edges, id(r, c), id(r, (c + 1) % cols));
        add_edge(edges, id(r, c), id((r + 1) % rows, c));
      }
  } else if (t.name == "erdos_renyi") {
    const double p = settings.get_double("p", 0.0, 1.0);
    Rng rng = Rng::derive(seed, {kTopologyPurpose});
    for (std::uint32_t i = 0; i < n; ++i)
      for (std::uint32_t j = i + 1; j < n; ++j)
        if (rng.bernoulli(p)) add_edge(edges, i, j);
  } else if (t.name == "edge_list") {
    edges = read_edge_list(settings, resolve(scenario_file, settings.get_string("file")), n);
  } else {
    algorithm.fail("topology", "one of: complete, edge_list, erdos_renyi, ring, torus", "'" + t.name + "'");
  }
  t.neighbours.assign(n, {});
  for (const auto& [a, b] : edges) {
    t.neighbours[a].push_back(b);
    t.neighbours[b].push_back(a);
  }
  for (auto& nb : t.neighbours) std::sort(nb.begin(), nb.end());
  if (n > 1) {
    if (const std::size_t lost = unreachable(t.neighbours); lost < n)
      algorithm.fail("topology", "a connected graph over the " + std::to_string(n) + " clients",
                     "'" + t.name + "' with " + std::to_string(edges.size()) + " edges, in which node " +
                         std::to_string(lost) + " cannot be reached from node 0");
  }

  if (algorithm.has("mixing") && algorithm.raw("mixing").IsMap()) {
    const Config mixing = algorithm.child("mixing");
    const std::string path = resolve(scenario_file, mixing.get_string("file"));
    t.mixing = read_matrix(mixing, path, n);
    if (const std::string wrong = check_doubly_stochastic(t.mixing, t.neighbours); !wrong.empty())
      mixing.fail("file", "a doubly stochastic mixing matrix over the topology's edges", "'" + path + "': " + wrong);
  } else {
    const std::string name = algorithm.get_choice("mixing", "metropolis_hastings", {"metropolis_hastings"});
    (void)name;
    t.mixing = metropolis_hastings(t.neighbours);
    if (const std::string wrong = check_doubly_stochastic(t.mixing, t.neighbours, 1e-12); !wrong.empty())
      throw std::logic_error("Metropolis-Hastings weights not doubly stochastic: " + wrong);
  }
  return t;
}

}  // namespace fedsim
