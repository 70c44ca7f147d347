#include "server/decentralized.h"

#include <cmath>
#include <limits>

namespace fedsim {

namespace {
constexpr std::int64_t kMaxNodes = 4096;  // W is a dense n x n matrix of doubles (128 MiB at 4096)
}  // namespace

DecentralizedAlgorithm::DecentralizedAlgorithm(const Config& settings, bool variance_reduced) : config_(settings) {
  settings_.variance_reduced = variance_reduced;
  settings_.l1 = settings.get_double("l1", 0.0, 0.0, 1e6);
  if (variance_reduced)
    settings_.snapshot_period = static_cast<std::size_t>(settings.get_int("snapshot_period", 10, 1, 1'000'000'000));
  settings_.inverse_sqrt_step =
      settings.get_choice("step_schedule", variance_reduced ? "constant" : "inverse_sqrt",
                          {"constant", "inverse_sqrt"}) == "inverse_sqrt";
  if (settings.has("gossip") && settings.raw("gossip").IsMap()) {
    const Config gossip = settings.child("gossip");
    const std::vector<std::string> keys = gossip.keys();
    if (keys.size() != 1 || keys[0] != "choco")
      settings.fail("gossip", "plain, or {choco: {gamma: g}}", keys.empty() ? "an empty map" : "'" + keys[0] + "'");
    settings_.choco = true;
    const Config choco = gossip.child("choco");
    settings_.gamma = choco.get_double("gamma", 0.5, 0.0, 1.0);
    if (!(settings_.gamma > 0.0)) choco.fail("gamma", "a consensus step in (0, 1]", "0");
  } else {
    const std::string scheme = settings.get_choice("gossip", "plain", {"plain", "choco"});
    settings_.choco = scheme == "choco";
  }
}

void DecentralizedAlgorithm::check(const AlgorithmCheck& s) const {
  const std::int64_t n = s.root.get_int("clients", 1, 10'000'000);
  if (n > kMaxNodes)
    s.root.fail("clients", "at most " + std::to_string(kMaxNodes) + " clients for a decentralized run (the mixing "
                "matrix is dense)", std::to_string(n));
  const std::int64_t r = s.root.get_int("clients_per_round", 1, 10'000'000);
  if (r != n)
    s.root.fail("clients_per_round", "clients (" + std::to_string(n) + "): every node of a decentralized run takes "
                "part in every iteration", std::to_string(r));
  if (!settings_.choco && !s.uplink.is_plain_float32())
    s.root.fail("uplink", "float32 for plain gossip (it sends whole models; compress with algorithm.gossip: "
                "{choco: {gamma: g}}, which keeps the network average)", "'" + s.uplink.describe() + "'");
  const auto seed = static_cast<std::uint64_t>(s.root.get_int("seed", 1, 0, std::numeric_limits<std::int64_t>::max()));
  topology(static_cast<std::size_t>(n), seed, s.root.file());
}

void gossip_mix(const Topology& t, std::span<const arma::fvec> in, std::vector<arma::fvec>& out) {
  const std::size_t n = t.nodes;
  out.resize(n);
  const std::size_t d = in.empty() ? 0 : in[0].n_elem;
  arma::vec acc(d);
  for (std::size_t i = 0; i < n; ++i) {
    acc = t.mixing(i, i) * arma::conv_to<arma::vec>::from(in[i]);
    for (std::uint32_t j : t.neighbours[i]) acc += t.mixing(i, j) * arma::conv_to<arma::vec>::from(in[j]);
    out[i] = arma::conv_to<arma::fvec>::from(acc);
  }
}

void choco_mix(const Topology& t, double gamma, std::span<const arma::fvec> decoded,
               std::vector<arma::fvec>& public_copies, std::vector<arma::fvec>& x) {
  for (std::size_t i = 0; i < t.nodes; ++i) public_copies[i] += decoded[i];
  std::vector<arma::fvec> mixed;
  gossip_mix(t, public_copies, mixed);
  const float g = static_cast<float>(gamma);
  for (std::size_t i = 0; i < t.nodes; ++i) x[i] += g * (mixed[i] - public_copies[i]);
}

void soft_threshold(arma::fvec& x, double t) {
  if (t <= 0.0) return;
  const float tf = static_cast<float>(t);
  for (float& v : x) {
    const float shrunk = std::abs(v) - tf;
    v = shrunk > 0.0f ? std::copysign(shrunk, v) : 0.0f;
  }
}

namespace {

FEDSIM_REGISTER(
    AlgorithmRegistry, "dspg",
    [](const Config& c) -> std::unique_ptr<Algorithm> { return std::make_unique<DecentralizedAlgorithm>(c, false); },
    "DSPG: decentralized proximal SGD on a graph, no server (topology, mixing, l1)");
FEDSIM_REGISTER(
    AlgorithmRegistry, "dpsvrg",
    [](const Config& c) -> std::unique_ptr<Algorithm> { return std::make_unique<DecentralizedAlgorithm>(c, true); },
    "DPSVRG: decentralized proximal SVRG, snapshot every snapshot_period iterations, no server");

}  // namespace
}  // namespace fedsim
